"""The model's side of the contract: C/S's `cs_config.functions`.

Every C/S model ships a `cs-config/` folder with a `cs_config` package whose `functions`
module defines get_version, get_inputs, validate_inputs and run_model. This module finds
those four functions and checks that what they return has the shape C/S expects, so a
model that breaks the contract gets a FAIL envelope that says how.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Final

from cs_runtime.envelope import JsonObject, ensure_json
from cs_runtime.errors import ModelContractError

FUNCTIONS_MODULE: Final = "cs_config.functions"
REQUIRED_FUNCTIONS: Final = ("get_version", "get_inputs", "validate_inputs", "run_model")
OUTPUT_ITEM_KEYS: Final = ("media_type", "title", "data")


@dataclass(frozen=True)
class ModelFunctions:
    """The four functions of a model's cs_config.functions."""

    module_name: str
    get_version: Callable[[], Any]
    get_inputs: Callable[[JsonObject], Any]
    validate_inputs: Callable[[JsonObject, JsonObject, JsonObject], Any]
    run_model: Callable[[JsonObject, JsonObject], Any]

    @classmethod
    def from_module(cls, module: ModuleType) -> ModelFunctions:
        missing = [name for name in REQUIRED_FUNCTIONS if not callable(getattr(module, name, None))]
        if missing:
            raise ModelContractError(
                f"{module.__name__} does not define {', '.join(missing)} "
                f"(a C/S model defines {', '.join(REQUIRED_FUNCTIONS)})"
            )
        return cls(
            module_name=module.__name__,
            get_version=module.get_version,
            get_inputs=module.get_inputs,
            validate_inputs=module.validate_inputs,
            run_model=module.run_model,
        )


def isolated(functions: ModelFunctions, model_state: Any = None) -> ModelFunctions:
    """The same four functions, each called in a forked child of the calling process
    (isolation.call_isolated), so what a call changes in its process dies with it; `model_state`
    (an isolation.ProcessState) is what the model's import set up, replayed in each child."""
    from functools import partial

    from cs_runtime.isolation import call_isolated

    def run_isolated(function: Callable[..., Any]) -> Callable[..., Any]:
        return partial(call_isolated, function, model_state=model_state)

    return ModelFunctions(
        module_name=functions.module_name,
        get_version=run_isolated(functions.get_version),
        get_inputs=run_isolated(functions.get_inputs),
        validate_inputs=run_isolated(functions.validate_inputs),
        run_model=run_isolated(functions.run_model),
    )


def load_model_functions(module_name: str = FUNCTIONS_MODULE) -> ModelFunctions:
    """Import the model's functions module (pip-installed in the image, on PYTHONPATH in
    local mode)."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelContractError(
            f"cannot import {module_name} ({exc}); install the model's cs-config folder "
            "(pip install ./cs-config) or put it on PYTHONPATH"
        ) from exc
    return ModelFunctions.from_module(module)


def check_version(value: object) -> str:
    """get_version() must return a string such as "1.0.0"."""
    if not isinstance(value, str):
        raise ModelContractError(f"get_version() must return a str, got {type(value).__name__}")
    return value


def check_inputs(value: object) -> JsonObject:
    """get_inputs() must return `{meta_parameters, model_parameters}`."""
    obj = _object(value, "get_inputs()")
    for key in ("meta_parameters", "model_parameters"):
        if not isinstance(obj.get(key), Mapping):
            raise ModelContractError(f"get_inputs() must return an object with {key!r} (an object)")
    return obj


def check_validation(value: object) -> JsonObject:
    """validate_inputs() must return `{errors_warnings, custom_adjustment?}`."""
    obj = _object(value, "validate_inputs()")
    if not isinstance(obj.get("errors_warnings"), Mapping):
        raise ModelContractError("validate_inputs() must return an object with 'errors_warnings' (an object)")
    return obj


def check_outputs(value: object) -> JsonObject:
    """run_model() must return `{renderable: [...], downloadable: [...]}`, each item
    `{media_type, title, data}`; only those two lists go on, as `outputs`."""
    obj = _object(value, "run_model()")
    outputs: JsonObject = {}
    for group in ("renderable", "downloadable"):
        items = obj.get(group)
        if not isinstance(items, list):
            raise ModelContractError(f"run_model() must return an object with {group!r} (a list)")
        for index, item in enumerate(items):
            if not isinstance(item, Mapping) or any(key not in item for key in OUTPUT_ITEM_KEYS):
                raise ModelContractError(
                    f"run_model() {group}[{index}] must be an object with {', '.join(OUTPUT_ITEM_KEYS)}"
                )
        outputs[group] = items
    ensure_json(outputs, "run_model()'s outputs")
    return outputs


def _object(value: object, what: str) -> JsonObject:
    if not isinstance(value, Mapping):
        raise ModelContractError(f"{what} must return an object (dict), got {type(value).__name__}")
    return dict(value)
