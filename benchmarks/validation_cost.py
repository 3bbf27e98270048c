"""Where `cs-cluster template`'s validation spends its time, against how it was done before.

`cs_cluster.render.validate_objects` checks each object with jsonschema-rs (compiled) against
kubernetes-validate's strict schema files (issue 15). Before, it used jsonschema (pure Python),
one validator per (kind, apiVersion, version) built once; before that, it called
`kubernetes_validate.validate`, which read and parsed two JSON files for every object. The second
is rebuilt here from the same files and registry and timed on the same objects.
"""

from __future__ import annotations

import cProfile
import functools
import pstats
import re
import time
from collections import defaultdict
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs installed; only used for a what-if
from harness import Table, fmt_ratio, fmt_seconds
from kubernetes_validate.utils import all_versions, major_minor, schema_contents
from referencing import Registry, Resource

from cs_cluster.render import DEFAULT_KUBERNETES_VERSIONS, validate_objects

# Validate every object when there are at most this many; beyond, a sample of each kind.
VALIDATE_ALL_UP_TO = 200
SAMPLE_PER_KIND = 10
Objects = list[dict[str, Any]]


def full_version(version: str) -> str:
    """kubernetes_validate names versions like 1.33.0."""
    return version if version.count(".") == 2 else f"{version}.0"


# -- today's cost, estimated for large renders ---------------------------------------------------
def objects_to_validate(objects: Objects) -> tuple[dict[str, Objects], dict[str, int]]:
    """The objects to time, by kind, and how many objects of each kind the render has."""
    by_kind: dict[str, Objects] = defaultdict(list)
    for obj in objects:
        by_kind[str(obj.get("kind"))].append(obj)
    counts = {kind: len(items) for kind, items in by_kind.items()}
    if len(objects) > VALIDATE_ALL_UP_TO:
        by_kind = defaultdict(list, {kind: items[:SAMPLE_PER_KIND] for kind, items in by_kind.items()})
    return by_kind, counts


def estimate_validation_seconds(objects: Objects) -> tuple[float, bool]:
    """In-process cost of `validate_objects` on these objects for the default versions.

    Exact when the render is small; otherwise each kind's mean cost times its count (the cost
    differs by kind: a Deployment's schema is much larger than a ServiceAccount's).
    Returns (seconds, whether it was estimated from a sample).
    """
    validate_objects(objects[:1], DEFAULT_KUBERNETES_VERSIONS)  # warm-up: imports kubernetes_validate
    sample, counts = objects_to_validate(objects)
    total = 0.0
    for kind, items in sample.items():
        started = time.perf_counter()
        validate_objects(items, DEFAULT_KUBERNETES_VERSIONS)
        total += (time.perf_counter() - started) / len(items) * counts[kind]
    return total, len(objects) > VALIDATE_ALL_UP_TO


# -- the what-if: one validator per kind and version ---------------------------------------------
@functools.cache
def cached_validator(kind: str, api_version: str, version: str) -> Any:
    """The validator kubernetes_validate builds on every call (same files, same registry), built once."""
    schema_version = [v for v in all_versions() if major_minor(v) <= major_minor(version)][-1]
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    directory = f"kubernetes-json-schema/v{schema_version}-local-strict"
    schema = schema_contents(f"{directory}/{kind.lower()}-{group}.json", version)
    definitions = schema_contents(f"{directory}/_definitions.json", version)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def validate_with_cache(objects: Objects) -> None:
    for obj in objects:
        for version in DEFAULT_KUBERNETES_VERSIONS:
            cached_validator(obj["kind"], obj["apiVersion"], full_version(version)).validate(obj)


# -- measuring -----------------------------------------------------------------------------------
def schema_loading_share(objects: Objects) -> float:
    """Share of validate_objects' time spent in kubernetes_validate's schema_contents (read + parse)."""
    profiler = cProfile.Profile()
    profiler.runcall(validate_objects, objects, DEFAULT_KUBERNETES_VERSIONS)
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    loading = sum(row[3] for (_, _, name), row in stats.items() if name == "schema_contents")
    total = max(row[3] for row in stats.values())
    return float(loading / total)


def validation_table(objects: Objects, largest_models: int, largest_estimate: float) -> Table:
    validations = len(objects) * len(DEFAULT_KUBERNETES_VERSIONS)
    validate_objects(objects[:1], DEFAULT_KUBERNETES_VERSIONS)  # warm-up: imports
    started = time.perf_counter()
    validate_objects(objects, DEFAULT_KUBERNETES_VERSIONS)
    today = (time.perf_counter() - started) / validations
    share = schema_loading_share(objects)
    started = time.perf_counter()
    validate_with_cache(objects)  # first pass builds the validators: a one-off per kind and version
    building = time.perf_counter() - started
    started = time.perf_counter()
    validate_with_cache(objects)
    cached = (time.perf_counter() - started) / validations
    table = Table(f"Validation: where its time goes ({len(objects)} objects x {len(DEFAULT_KUBERNETES_VERSIONS)} "
                  "Kubernetes versions)", ["what", "per object and version", "note"])
    table.add("`validate_objects` (jsonschema-rs, and image references)", fmt_seconds(today),
              "the compiled validators are built once per kind and version")
    table.add("of which reading + parsing schema JSON", f"{share:.0%}",
              "cProfile: kubernetes_validate's schema_contents")
    table.add("jsonschema, one validator per kind and version, reused (before issue 15)", fmt_seconds(cached),
              f"{fmt_ratio(cached / today)} the time of jsonschema-rs; building them took {fmt_seconds(building)}")
    table.note(f"at {largest_models} models: {fmt_seconds(largest_estimate)} of validation in-process "
               f"(jsonschema would take about {fmt_seconds(largest_estimate * cached / today)}).")
    return table
