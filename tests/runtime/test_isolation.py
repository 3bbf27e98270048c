"""Model calls in a forked child (cs_runtime.isolation), in this process: what the child changes
stays there, answers and failures come back, and a model's import-time settings are the model's."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import pytest

from cs_runtime.errors import ModelRunError
from cs_runtime.isolation import call_isolated, guarded_import


def change_everything(value: int) -> dict[str, Any]:
    warnings.filterwarnings("error")
    os.environ["CS_TESTS_ISOLATION"] = "changed"
    os.chdir("/")
    return {"doubled": value * 2, "pid": os.getpid()}


def test_a_call_answers_from_a_child_and_its_changes_stay_there() -> None:
    before = (list(warnings.filters), dict(os.environ), os.getcwd())
    answer = call_isolated(change_everything, 21)
    assert answer["doubled"] == 42 and answer["pid"] != os.getpid()
    assert (list(warnings.filters), dict(os.environ), os.getcwd()) == before


def fail() -> None:
    raise ValueError("the model's own error")


def leave() -> None:
    os._exit(3)


def unpicklable() -> Any:
    return (item for item in range(3))


@pytest.mark.parametrize(
    ("function", "message"),
    [(fail, "ValueError: the model's own error"), (leave, "ended without an answer (exit status 3)"),
     (unpicklable, "cannot be passed back to the worker")],
    ids=["raises", "exits", "unpicklable"],
)
def test_failures_come_back_as_model_run_errors(function: Any, message: str) -> None:
    with pytest.raises(ModelRunError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call_isolated(function)


def model_sees() -> dict[str, Any]:
    return {"error filter": any(entry[0] == "error" for entry in warnings.filters),
            "environment": os.environ.get("CS_TESTS_IMPORT"), "cwd": os.getcwd()}


def test_import_time_settings_stay_the_models(tmp_path: Path) -> None:
    """What the model's import sets up, the runtime does not keep, and every call of the model
    gets again."""
    before = (list(warnings.filters), dict(os.environ), os.getcwd())
    with guarded_import() as model_state:
        warnings.filterwarnings("error")
        os.environ["CS_TESTS_IMPORT"] = "set at import"
        os.chdir(tmp_path)
    assert (list(warnings.filters), dict(os.environ), os.getcwd()) == before
    assert call_isolated(model_sees, model_state=model_state[0]) == {
        "error filter": True, "environment": "set at import", "cwd": str(tmp_path)}
    assert call_isolated(model_sees)["environment"] is None
