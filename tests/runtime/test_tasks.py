"""Task bodies and envelopes, in-process, with the real Celery-Sum model functions."""

from __future__ import annotations

import importlib.util
import json
import types
from typing import Any

import pytest

from cs_runtime import tasks
from cs_runtime.envelope import FAIL, SUCCESS, run_in_envelope
from cs_runtime.errors import ModelContractError
from cs_runtime.model import ModelFunctions, load_model_functions

from .support import CELERY_SUM_CONFIG


@pytest.fixture(scope="module")
def celery_sum() -> ModelFunctions:
    """Celery-Sum's functions module, loaded under a private name so that this process's
    `cs_config` (the Dask tests put Dask-Pi's there) is left alone."""
    path = CELERY_SUM_CONFIG / "cs_config" / "functions.py"
    spec = importlib.util.spec_from_file_location("celery_sum_functions", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return ModelFunctions.from_module(module)


def fake_model(**functions: Any) -> ModelFunctions:
    """A model module built from the given functions (the rest return valid values)."""
    module = types.ModuleType("broken_model")
    module.get_version = lambda: "0.1"  # type: ignore[attr-defined]
    module.get_inputs = lambda mp: {"meta_parameters": {}, "model_parameters": {}}  # type: ignore[attr-defined]
    module.validate_inputs = lambda mp, adj, ew: {"errors_warnings": ew}  # type: ignore[attr-defined]
    module.run_model = lambda mp, adj: {"renderable": [], "downloadable": []}  # type: ignore[attr-defined]
    for name, function in functions.items():
        setattr(module, name, function)
    return ModelFunctions.from_module(module)


def test_inputs_get_is_flattened_into_the_envelope(celery_sum: ModelFunctions) -> None:
    envelope = tasks.inputs_get(celery_sum, {"precision": 4})
    assert envelope["status"] == SUCCESS
    assert envelope["meta_parameters"]["precision"]["value"] == [{"value": 4}]
    assert set(envelope["model_parameters"]["sum"]) == {"a", "b", "sleep", "fail"}
    assert len(envelope["meta"]["task_times"]) == 1 and envelope["meta"]["task_times"][0] >= 0
    json.dumps(envelope)


def test_inputs_version(celery_sum: ModelFunctions) -> None:
    envelope = tasks.inputs_version(celery_sum)
    assert (envelope["status"], envelope["version"]) == (SUCCESS, "1.0.0")


def test_inputs_parse_reports_the_models_errors(celery_sum: ModelFunctions) -> None:
    ew: dict[str, Any] = {"API": {"errors": {}, "warnings": {}}}
    envelope = tasks.inputs_parse(celery_sum, "job-1", {}, {"sum": {"a": [{"value": "x"}], "b": 3}}, ew)
    assert envelope["status"] == SUCCESS
    assert envelope["job_id"] == "job-1"
    assert envelope["errors_warnings"]["sum"]["errors"] == {"a": ["a must be a number, got 'x'"]}
    assert envelope["errors_warnings"]["API"] == ew["API"]


def test_sim_success_and_failure(celery_sum: ModelFunctions) -> None:
    runner = tasks.local_runner(celery_sum)
    ok = tasks.sim(celery_sum, runner, "job-2", {"precision": 1}, {"sum": {"a": 1.25, "b": 2}})
    assert ok["status"] == SUCCESS and ok["model_version"] == "1.0.0" and ok["job_id"] == "job-2"
    assert ok["outputs"]["downloadable"][0]["data"] == "a,b,sum\n1.25,2,3.2\n"
    assert "traceback" not in ok

    failed = tasks.sim(celery_sum, runner, "job-3", {}, {"sum": {"fail": True}})
    assert failed["status"] == FAIL and failed["job_id"] == "job-3"
    assert "RuntimeError: run_model failed on purpose" in failed["traceback"]
    assert "outputs" not in failed and failed["meta"]["task_times"]


@pytest.mark.parametrize(
    ("functions", "message"),
    [
        ({"get_inputs": lambda mp: [1, 2]}, "get_inputs() must return an object"),
        ({"get_inputs": lambda mp: {"meta_parameters": {}}}, "'model_parameters'"),
        ({"get_version": lambda: 1}, "get_version() must return a str"),
        ({"run_model": lambda mp, adj: {"renderable": []}}, "'downloadable' (a list)"),
        ({"run_model": lambda mp, adj: {"renderable": [{"title": "t"}], "downloadable": []}}, "renderable[0]"),
        (
            {
                "run_model": lambda mp, adj: {
                    "renderable": [],
                    "downloadable": [{"media_type": "PNG", "title": "p", "data": b"\x89PNG"}],
                }
            },
            "must be JSON-serializable",
        ),
    ],
)
def test_model_contract_violations_fail_with_a_clear_message(functions: dict[str, Any], message: str) -> None:
    model = fake_model(**functions)
    envelopes = [
        tasks.inputs_get(model, {}),
        tasks.inputs_version(model),
        tasks.sim(model, tasks.local_runner(model), "j", {}, {}),
    ]
    failed = [e for e in envelopes if e["status"] == FAIL]
    assert failed, "the broken function should make its task FAIL"
    for envelope in failed:
        assert "cs_runtime.errors.ModelContractError" in envelope["traceback"]
        assert message in envelope["traceback"]
        assert envelope["meta"]["task_times"]


def test_task_arguments_must_be_objects(celery_sum: ModelFunctions) -> None:
    envelope = tasks.inputs_get(celery_sum, ["not", "an", "object"])
    assert envelope["status"] == FAIL and "meta_param_dict must be a JSON object" in envelope["traceback"]


def test_envelope_keeps_model_meta_and_sets_task_times() -> None:
    envelope = run_in_envelope(lambda: {"meta": {"note": "kept"}, "value": 1})
    assert envelope["meta"]["note"] == "kept" and len(envelope["meta"]["task_times"]) == 1


def test_missing_model_or_function_is_reported() -> None:
    with pytest.raises(ModelContractError, match=r"cannot import no_such_model\.functions"):
        load_model_functions("no_such_model.functions")
    with pytest.raises(ModelContractError, match="does not define get_version, get_inputs, validate_inputs, run_model"):
        ModelFunctions.from_module(types.ModuleType("empty"))
