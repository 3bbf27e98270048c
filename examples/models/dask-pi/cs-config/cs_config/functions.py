"""cs-examples/Dask-Pi: a Compute Studio model that fans its work out over Dask.

run_model runs on a Dask worker (the cs-workers runtime submits it there), so it reaches
the cluster with `distributed.get_client()`; `_count_inside` runs once per chunk, on
whichever workers the scheduler picks, and reports its worker's address.
"""

from __future__ import annotations

import random
import time
from typing import Any

from distributed import get_client, get_worker

VERSION = "1.0.0"
SECTION = "pi"

MODEL_PARAMETERS: dict[str, dict[str, Any]] = {
    "n_chunks": {
        "title": "Chunks",
        "description": "Number of Dask tasks the samples are split into.",
        "type": "int",
        "value": [{"value": 8}],
        "validators": {"range": {"min": 1, "max": 1000}},
    },
    "samples_per_chunk": {
        "title": "Samples per chunk",
        "description": "Random points drawn by each task.",
        "type": "int",
        "value": [{"value": 200_000}],
        "validators": {"range": {"min": 1, "max": 100_000_000}},
    },
    "sleep_per_chunk": {
        "title": "Sleep per chunk",
        "description": "Seconds each task waits before counting (to try long sims and deploys under them).",
        "type": "float",
        "value": [{"value": 0.0}],
        "validators": {"range": {"min": 0, "max": 3600}},
    },
    "seed": {
        "title": "Seed",
        "description": "Seed of the first chunk; chunk i uses seed + i.",
        "type": "int",
        "value": [{"value": 0}],
        "validators": {"range": {"min": 0, "max": 2**31 - 1}},
    },
}


def _value(raw: Any) -> Any:
    """A ParamTools value list `[{"value": v}]` or a bare value -> v."""
    if isinstance(raw, list) and raw and isinstance(raw[0], dict) and "value" in raw[0]:
        return raw[0]["value"]
    return raw


def _params(adjustment: dict[str, Any]) -> dict[str, Any]:
    values = {name: spec["value"][0]["value"] for name, spec in MODEL_PARAMETERS.items()}
    section = adjustment.get(SECTION, {})
    values.update({name: _value(raw) for name, raw in section.items() if name in MODEL_PARAMETERS})
    return values


def get_version() -> str:
    return VERSION


def get_inputs(meta_param_dict: dict[str, Any]) -> dict[str, Any]:
    return {"meta_parameters": {}, "model_parameters": {SECTION: MODEL_PARAMETERS}}


def validate_inputs(
    meta_param_dict: dict[str, Any], adjustment: dict[str, Any], errors_warnings: dict[str, Any]
) -> dict[str, Any]:
    errors: dict[str, list[str]] = {}
    for name, raw in adjustment.get(SECTION, {}).items():
        spec = MODEL_PARAMETERS.get(name)
        value = _value(raw)
        if spec is None:
            errors[name] = [f"unknown parameter {name!r}"]
        elif spec["type"] == "int" and (not isinstance(value, int) or isinstance(value, bool)):
            errors[name] = [f"{name} must be an integer, got {value!r}"]
        elif not isinstance(value, (int, float)) or isinstance(value, bool):
            errors[name] = [f"{name} must be a number, got {value!r}"]
        elif not spec["validators"]["range"]["min"] <= value <= spec["validators"]["range"]["max"]:
            errors[name] = [f"{name} {value} is out of range"]
    errors_warnings = dict(errors_warnings)
    errors_warnings[SECTION] = {"errors": errors, "warnings": {}}
    return {"errors_warnings": errors_warnings}


def _count_inside(seed: int, samples: int, sleep: float = 0.0) -> tuple[int, str]:
    """Points of the unit square inside the quarter circle, and who counted them."""
    if sleep:
        time.sleep(sleep)
    rng = random.Random(seed)
    inside = 0
    for _ in range(samples):
        x, y = rng.random(), rng.random()
        if x * x + y * y <= 1.0:
            inside += 1
    return inside, get_worker().address


def run_model(meta_param_dict: dict[str, Any], adjustment: dict[str, Any]) -> dict[str, Any]:
    params = _params(adjustment)
    n_chunks, samples, seed = int(params["n_chunks"]), int(params["samples_per_chunk"]), int(params["seed"])
    sleep = float(params["sleep_per_chunk"])
    client = get_client()
    futures = client.map(_count_inside, [seed + i for i in range(n_chunks)], [samples] * n_chunks,
                         [sleep] * n_chunks, pure=False)
    counts = client.gather(futures)
    total_inside = sum(inside for inside, _ in counts)
    estimate = 4.0 * total_inside / (n_chunks * samples)
    workers = sorted({address for _, address in counts})
    rows = "\n".join(f"{i},{address},{samples},{inside}" for i, (inside, address) in enumerate(counts))
    return {
        "renderable": [
            {
                "media_type": "table",
                "title": "Estimate of pi",
                "data": (
                    "<table><tr><th>estimate</th><th>samples</th><th>workers</th></tr>"
                    f"<tr><td>{estimate:.6f}</td><td>{n_chunks * samples}</td><td>{len(workers)}</td></tr></table>"
                ),
            }
        ],
        "downloadable": [
            {"media_type": "CSV", "title": "chunks", "data": f"chunk,worker,samples,inside\n{rows}\n"},
        ],
    }
