"""What each of the four tasks does, apart from Celery: model call in, envelope out.

worker_app.py registers these under the contract's task names; keeping them free of Celery
keeps the envelope rules in one readable place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cs_runtime.envelope import Envelope, JsonObject, run_in_envelope
from cs_runtime.errors import BadRequestError
from cs_runtime.model import (
    ModelFunctions,
    check_inputs,
    check_outputs,
    check_validation,
    check_version,
)

# Runs run_model(meta_param_dict, adjustment) for job `job_id`: in this process for Celery
# models, on the model's Dask cluster for Dask models (see dask_runner.py).
SimRunner = Callable[[str, JsonObject, JsonObject], Any]


def object_argument(value: object, name: str) -> JsonObject:
    """Task arguments arrive as JSON; the model functions expect objects (dicts)."""
    if not isinstance(value, Mapping):
        raise BadRequestError(f"{name} must be a JSON object, got {type(value).__name__}")
    return dict(value)


def inputs_get(functions: ModelFunctions, meta_param_dict: object) -> Envelope:
    """`{status, meta_parameters, model_parameters, meta}` from get_inputs."""
    return run_in_envelope(
        lambda: check_inputs(functions.get_inputs(object_argument(meta_param_dict, "meta_param_dict")))
    )


def inputs_version(functions: ModelFunctions) -> Envelope:
    """`{status, version, meta}` from get_version."""
    return run_in_envelope(lambda: {"version": check_version(functions.get_version())})


def inputs_parse(
    functions: ModelFunctions,
    job_id: str,
    meta_param_dict: object,
    adjustment: object,
    errors_warnings: object,
) -> Envelope:
    """`{job_id, status, errors_warnings, custom_adjustment?, meta}` from validate_inputs."""
    envelope = run_in_envelope(
        lambda: check_validation(
            functions.validate_inputs(
                object_argument(meta_param_dict, "meta_param_dict"),
                object_argument(adjustment, "adjustment"),
                object_argument(errors_warnings, "errors_warnings"),
            )
        )
    )
    envelope["job_id"] = job_id
    return envelope


def sim(
    functions: ModelFunctions,
    run_model: SimRunner,
    job_id: str,
    meta_param_dict: object,
    adjustment: object,
) -> Envelope:
    """`{job_id, status, model_version, outputs: {renderable, downloadable}, meta}`."""

    def work() -> JsonObject:
        outputs = check_outputs(
            run_model(
                job_id,
                object_argument(meta_param_dict, "meta_param_dict"),
                object_argument(adjustment, "adjustment"),
            )
        )
        # Asked after the run, as C/S did: the version that produced these outputs.
        return {"model_version": check_version(functions.get_version()), "outputs": outputs}

    envelope = run_in_envelope(work)
    envelope["job_id"] = job_id
    return envelope


def local_runner(functions: ModelFunctions) -> SimRunner:
    """Run the model in the sim worker itself (Celery models)."""

    def run(job_id: str, meta_param_dict: JsonObject, adjustment: JsonObject) -> Any:
        return functions.run_model(meta_param_dict, adjustment)

    return run
