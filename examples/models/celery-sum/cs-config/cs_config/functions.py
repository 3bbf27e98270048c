"""cs-examples/Celery-Sum: the four functions every Compute Studio model defines.

Inputs follow C/S's (ParamTools') shape: each parameter has a title, description, type,
a `value` list of `{"value": v}` entries and validators; an adjustment is
`{"sum": {"a": [{"value": 3}]}}` (a bare value, `{"a": 3}`, is accepted too).
"""

from __future__ import annotations

import time
from typing import Any

VERSION = "1.0.0"
SECTION = "sum"

META_PARAMETERS: dict[str, dict[str, Any]] = {
    "precision": {
        "title": "Precision",
        "description": "Number of decimal digits the sum is rounded to.",
        "type": "int",
        "value": [{"value": 2}],
        "validators": {"range": {"min": 0, "max": 10}},
    }
}

MODEL_PARAMETERS: dict[str, dict[str, Any]] = {
    "a": {
        "title": "A",
        "description": "First term.",
        "type": "float",
        "value": [{"value": 1.0}],
        "validators": {"range": {"min": -1e9, "max": 1e9}},
    },
    "b": {
        "title": "B",
        "description": "Second term.",
        "type": "float",
        "value": [{"value": 2.0}],
        "validators": {"range": {"min": -1e9, "max": 1e9}},
    },
    "sleep": {
        "title": "Sleep",
        "description": "Seconds run_model waits before answering (to try time limits).",
        "type": "float",
        "value": [{"value": 0.0}],
        "validators": {"range": {"min": 0, "max": 3600}},
    },
    "fail": {
        "title": "Fail",
        "description": "When true, run_model raises an error (to try failure handling).",
        "type": "bool",
        "value": [{"value": False}],
        "validators": {},
    },
}


def _value(raw: Any) -> Any:
    """A ParamTools value list `[{"value": v}]` or a bare value -> v."""
    if isinstance(raw, list) and raw and isinstance(raw[0], dict) and "value" in raw[0]:
        return raw[0]["value"]
    return raw


def _settings(defaults: dict[str, dict[str, Any]], given: dict[str, Any]) -> dict[str, Any]:
    values = {name: spec["value"][0]["value"] for name, spec in defaults.items()}
    values.update({name: _value(raw) for name, raw in given.items() if name in defaults})
    return values


def get_version() -> str:
    return VERSION


def get_inputs(meta_param_dict: dict[str, Any]) -> dict[str, Any]:
    meta = _settings(META_PARAMETERS, meta_param_dict)
    meta_parameters = {name: dict(spec, value=[{"value": meta[name]}]) for name, spec in META_PARAMETERS.items()}
    return {"meta_parameters": meta_parameters, "model_parameters": {SECTION: MODEL_PARAMETERS}}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate_inputs(
    meta_param_dict: dict[str, Any], adjustment: dict[str, Any], errors_warnings: dict[str, Any]
) -> dict[str, Any]:
    errors: dict[str, list[str]] = {}
    section = adjustment.get(SECTION, {})
    if not isinstance(section, dict):
        errors[SECTION] = [f"section {SECTION!r} must be an object"]
        section = {}
    for name, raw in section.items():
        if name not in MODEL_PARAMETERS:
            errors[name] = [f"unknown parameter {name!r}"]
            continue
        value = _value(raw)
        spec = MODEL_PARAMETERS[name]
        if spec["type"] == "bool":
            if not isinstance(value, bool):
                errors[name] = [f"{name} must be true or false, got {value!r}"]
        elif not _is_number(value):
            errors[name] = [f"{name} must be a number, got {value!r}"]
        else:
            bounds = spec["validators"]["range"]
            if not bounds["min"] <= value <= bounds["max"]:
                errors[name] = [f"{name} {value} is outside [{bounds['min']}, {bounds['max']}]"]
    errors_warnings = dict(errors_warnings)
    errors_warnings[SECTION] = {"errors": errors, "warnings": {}}
    return {"errors_warnings": errors_warnings}


def run_model(meta_param_dict: dict[str, Any], adjustment: dict[str, Any]) -> dict[str, Any]:
    meta = _settings(META_PARAMETERS, meta_param_dict)
    params = _settings(MODEL_PARAMETERS, adjustment.get(SECTION, {}))
    if params["sleep"]:
        time.sleep(float(params["sleep"]))
    if params["fail"]:
        raise RuntimeError("run_model failed on purpose: the adjustment set fail to true")
    total = round(float(params["a"]) + float(params["b"]), int(meta["precision"]))
    table = (
        "<table><tr><th>a</th><th>b</th><th>a + b</th></tr>"
        f"<tr><td>{params['a']}</td><td>{params['b']}</td><td>{total}</td></tr></table>"
    )
    csv = f"a,b,sum\n{params['a']},{params['b']},{total}\n"
    return {
        "renderable": [{"media_type": "table", "title": "Sum", "data": table}],
        "downloadable": [{"media_type": "CSV", "title": "sum", "data": csv}],
    }
