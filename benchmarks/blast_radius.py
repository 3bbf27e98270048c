"""Benchmark 2: how many workloads an upgrade rolls, against re-rendering everything (C/S 0.16).

A workload rolls its pods when its pod template changes, so we render the chart before and after
(`cs_cluster.render_chart`) and compare `.pod_templates()`. Not a timing: a count.

Scenarios, on a worker_config of 50 models (half Celery, half Dask):
- one-model tag bump: `Cluster(..., models=[name], previous=<values before>)`;
- a BUILD_NUM-driven rebuild: one model's `env.BUILD_NUM` is bumped in the config; the models
  whose build arguments changed are the ones to build, and only they get the new tag (`--models`);
- C/S 0.16: the same BUILD_NUM change, but every model built and tagged anew.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import RunSettings, Table, verdict, write_worker_config

from cs_cluster import Cluster, render_chart
from cs_cluster.config import ModelConfig, load_worker_config
from cs_cluster.render import LABEL_ALIASES, RenderedChart

NEW_TAG = "v2"
PROJECT = "bench"
# A runtime base image that exists already, so `build` lists only the model images it builds.
RUNTIME_IMAGE = "gcr.io/bench/cs-workers-runtime:v1"


@dataclass(frozen=True)
class Outcome:
    """What one upgrade did to the cluster."""

    scenario: str
    retagged: int
    images_built: int
    changed: set[str]
    workloads: int
    rolled_models: set[str]
    expected: set[str]
    target_models: set[str]
    baseline: bool = False  # the alternative compared with, not something cs-cluster does


def render(values: dict[str, Any]) -> RenderedChart:
    # Not validated: pod templates are what we compare, and validation would multiply the run
    # time (the render benchmark measures it); the chart's own tests validate these renders.
    return render_chart(values, validate=False)


def workload_owner(chart: RenderedChart) -> dict[str, str]:
    """Each workload ('Kind/name') -> its model's slug, or its component for shared ones."""
    owners = {}
    for obj in chart.objects:
        key = f"{obj.get('kind')}/{obj['metadata']['name']}"
        labels = obj["metadata"].get("labels") or {}
        owners[key] = labels.get(LABEL_ALIASES["model"]) or labels.get(LABEL_ALIASES["component"], "?")
    return owners


def changed_pod_templates(before: RenderedChart, after: RenderedChart) -> set[str]:
    old, new = before.pod_templates(), after.pod_templates()
    return {key for key in old.keys() | new.keys() if old.get(key) != new.get(key)}


def models_with_new_build_arguments(old: list[ModelConfig], new: list[ModelConfig]) -> list[str]:
    """The models a rebuild must build: new ones, and those whose build `env` (BUILD_NUM, ...) changed."""
    previous = {model.slug: model.env for model in old}
    return [model.name for model in new if previous.get(model.slug) != model.env]


def model_images_built(cluster: Cluster) -> int:
    """The `docker build` commands `cs-cluster build --dry-run` would run for model images (those
    with an OWNER build argument; a full build also builds shared images, not counted here)."""
    with contextlib.redirect_stdout(io.StringIO()):
        commands = cluster.build(dry_run=True, runtime_image=RUNTIME_IMAGE)
    return sum(1 for command in commands
               if command[:2] == ["docker", "build"] and any(word.startswith("OWNER=") for word in command))


def outcome(scenario: str, cluster: Cluster, baseline: RenderedChart, expected_models: set[str],
            is_baseline: bool = False) -> Outcome:
    after = render(cluster.values())
    owners = workload_owner(after)
    changed = changed_pod_templates(baseline, after)
    expected = {key for key in after.pod_templates() if owners[key] in expected_models}
    return Outcome(scenario, len(cluster.selected_models()), model_images_built(cluster), changed,
                   len(after.pod_templates()), {owners[key] for key in changed}, expected, expected_models,
                   is_baseline)


def scenarios(models: int, directory: Path, log: Callable[[str], None]) -> list[Outcome]:
    celery_target, dask_target = models // 2 - 1, models // 2  # one of each kind, from the middle
    config = write_worker_config(directory / "worker_config.yaml", models)
    before = Cluster(config, tag="v1", project=PROJECT, previous=None, values_file=directory / "values.yaml")
    previous = before.write_values()
    log(f"blast-radius: rendering the {models}-model cluster before and after 3 upgrades")
    baseline = render(before.values())
    models_before = load_worker_config(config)

    tag_bump = Cluster(config, tag=NEW_TAG, project=PROJECT, models=[models_before[celery_target].name],
                       previous=previous)
    rebuilt_config = write_worker_config(directory / "worker_config.next.yaml", models, {dask_target: 1})
    to_build = models_with_new_build_arguments(models_before, load_worker_config(rebuilt_config))
    rebuild = Cluster(rebuilt_config, tag=NEW_TAG, project=PROJECT, models=to_build, previous=previous)
    everything = Cluster(rebuilt_config, tag=NEW_TAG, project=PROJECT, previous=None,
                         values_file=directory / "unused.yaml")
    return [
        outcome(f"one-model tag bump ({models_before[celery_target].title}, Celery)", tag_bump, baseline,
                {models_before[celery_target].slug}),
        outcome(f"BUILD_NUM bump, rebuild with --models ({models_before[dask_target].title}, Dask)", rebuild, baseline,
                {models_before[dask_target].slug}),
        outcome("same BUILD_NUM bump, C/S 0.16 (new tag for every model)", everything, baseline,
                {models_before[dask_target].slug}, is_baseline=True),
    ]


def table_of(outcomes: list[Outcome], models: int) -> Table:
    table = Table(f"Upgrade blast radius ({models} models)",
                  ["scenario", "models retagged", "model images built", "workloads whose pod template changed",
                   "models whose pods roll", "target: only that model's workloads", "result"])
    for item in outcomes:
        met = item.changed == item.expected
        others = item.rolled_models - item.target_models
        detail = "" if met else f"{len(item.changed - item.expected)} workloads of {len(others)} other models roll"
        result = f"baseline: {detail}" if item.baseline else verdict(met, detail)
        table.add(item.scenario, item.retagged, item.images_built, f"{len(item.changed)} of {item.workloads}",
                  len(item.rolled_models), f"{len(item.expected)} workloads", result)
    table.note("A Celery model has 2 workloads (io and sim worker), a Dask model 4 (plus scheduler and "
               "Dask workers); the gateway and Redis are workloads too.")
    return table


def run(settings: RunSettings, log: Callable[[str], None]) -> list[Table]:
    models = 6 if settings.quick else 50
    with tempfile.TemporaryDirectory(prefix="cs-bench-blast-") as temporary:
        return [table_of(scenarios(models, Path(temporary), log), models)]
