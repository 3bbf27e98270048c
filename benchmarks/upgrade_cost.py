"""Benchmark 7: what a one-model update and a no-op `cs-cluster apply` cost as the models grow.

On the local control plane (`ci/cluster`: a real API server, kwok nodes), for each size a
release of N tiny Celery models is installed with `cs-cluster apply`, then a no-op apply (the
same values) and a one-model apply (`--models Model-0000 --tag vK`) alternate. For each command:
its wall time, the API requests it made (counted by `api_counter`, in front of the real API
server, so other sessions' requests on the shared control plane are not counted), and the size
of the release record Helm stores (the Secret `sh.helm.release.v1.<release>.v<revision>`, which
the API server refuses above 1 MiB). A bare `helm template` of the same values is timed beside
them: the render every upgrade starts with.

Tiny models, and no pods: the namespace has a ResourceQuota of 0 pods, so 500 models' Deployments
exist without taking any of the 550 pod slots the kwok nodes share with other sessions' tests (the
chart renders a Celery model's `replicas: 0` as 1). So applies run with `--no-wait`: Helm renders,
diffs and applies every object and stores the release, and does not then watch pods become ready,
which kwok makes instant anyway.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from api_counter import RequestCounter
from harness import (
    CHART,
    REPO,
    RunSettings,
    Table,
    fmt_seconds,
    linear_fit,
    load_text,
    median,
    seconds_taken,
    tool_version,
)

from cs_cluster import helm

FULL_SIZES = (10, 100, 500)
QUICK_SIZES = (2, 4)
RECORD_LIMIT = 1024 * 1024  # the API server's limit on one object's data (etcd's request limit is near it)
WRITE_VERBS = ("create", "update", "patch", "delete")
RELEASE = "cs"


@dataclass
class SizeResult:
    models: int
    objects: int
    install: float
    noop: list[float] = field(default_factory=list)
    one_model: list[float] = field(default_factory=list)
    noop_requests: list[dict[str, int]] = field(default_factory=list)
    one_requests: list[dict[str, int]] = field(default_factory=list)
    record_bytes: int = 0
    template: list[float] = field(default_factory=list)
    helm_upgrade: list[float] = field(default_factory=list)
    helm_requests: list[dict[str, int]] = field(default_factory=list)


def kubeconfig() -> str:
    """The control plane's kubeconfig: $KUBECONFIG (ci/test.sh exports it), else `ci/cluster env`."""
    if os.environ.get("KUBECONFIG"):
        return os.environ["KUBECONFIG"]
    result = subprocess.run(["bash", str(REPO / "ci" / "cluster"), "env"], capture_output=True, text=True,
                            check=False, timeout=60)
    for line in result.stdout.splitlines():
        if line.startswith("export KUBECONFIG="):
            return line.split("=", 1)[1].strip().strip("'\"")
    raise RuntimeError("no control plane: run `bash ci/cluster up` (the upgrade benchmark needs one)")


def tiny_config(path: Path, models: int) -> Path:
    entries = [{"owner": f"Owner{i:04d}", "title": f"Model-{i:04d}", "branch": "main",
                "repo_url": f"https://example.com/m{i}", "cluster_type": "single-core", "replicas": 0,
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                              "limits": {"cpu": "100m", "memory": "64Mi"}}} for i in range(models)]
    path.write_text(yaml.safe_dump(entries, sort_keys=False))
    return path


def kubectl(config: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["kubectl", "--kubeconfig", config, *arguments], capture_output=True, text=True,
                            check=False, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(arguments)} failed: {result.stderr.strip()[-300:]}")
    return result


def record_bytes(config: str, namespace: str) -> int:
    """Bytes of the newest revision's release record: the Secret's one data value (what the limit counts)."""
    secrets = json.loads(kubectl(config, "--namespace", namespace, "get", "secrets", "-l",
                                 f"owner=helm,name={RELEASE}", "-o", "json").stdout)["items"]
    newest = max(secrets, key=lambda s: int(s["metadata"]["labels"]["version"]))
    return sum(len(base64.b64decode(value)) for value in newest["data"].values())


def measure_size(models: int, repetitions: int, config: str, directory: Path,
                 log: Callable[[str], None]) -> SizeResult:
    namespace = f"bench-upgrade-{uuid.uuid4().hex[:6]}"
    worker_config = tiny_config(directory / f"worker_config_{models}.yaml", models)
    values_file = directory / f"values_{models}.yaml"
    overlay = directory / "tiny.yaml"
    overlay.write_text(yaml.safe_dump({"modelDefaults": {"io": {"replicas": 0}}}))
    helm4 = helm.find_helm(4)

    def apply(counter: RequestCounter, tag: str, *extra: str, bare_helm: bool = False) -> tuple[float, dict[str, int]]:
        command = [sys.executable, "-m", "cs_cluster", "apply", "--config", str(worker_config), "--tag", tag,
                   "--project", "bench", "--release", RELEASE, "--namespace", namespace,
                   "--values-file", str(values_file), "-f", str(overlay), "--no-wait", *extra]
        if bare_helm:  # helm alone, on the values file cs-cluster wrote: the floor of an apply
            command = [helm4, "upgrade", RELEASE, str(CHART), "--namespace", namespace, "-f", str(values_file),
                       "-f", str(overlay), "--reset-then-reuse-values"]
        environment = {**os.environ, "KUBECONFIG": counter.kubeconfig, "CS_HELM": helm4}
        counter.reset()
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, env=environment, check=False, timeout=1200)
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"cs-cluster apply failed at {models} models: {result.stderr.strip()[-500:]}")
        counts: dict[str, int] = {}
        for (verb, _), number in counter.snapshot().items():
            counts[verb] = counts.get(verb, 0) + number
        return elapsed, counts

    log(f"upgrade: {models} models in namespace {namespace}: install")
    kubectl(config, "create", "namespace", namespace)
    try:
        kubectl(config, "--namespace", namespace, "create", "quota", "no-pods", "--hard=pods=0")
        with RequestCounter(config) as counter:
            install, _ = apply(counter, "v1")
            result = SizeResult(models, 0, install)
            for repetition in range(repetitions):
                # Alternate which goes first, so neither always follows the other.
                steps = [("noop", "v1"), ("one", f"v{repetition + 2}")]
                for kind, tag in steps if repetition % 2 == 0 else steps[::-1]:
                    if kind == "noop":
                        # Model-0001 keeps its tag: the values, and so the release, do not change.
                        seconds, counts = apply(counter, "v1", "--models", "Model-0001")
                        result.noop.append(seconds)
                        result.noop_requests.append(counts)
                    else:
                        seconds, counts = apply(counter, tag, "--models", "Model-0000")
                        result.one_model.append(seconds)
                        result.one_requests.append(counts)
                    log(f"upgrade: {models} models, {kind}: {seconds:.1f} s, {sum(counts.values())} requests")
                seconds, counts = apply(counter, "v1", bare_helm=True)
                result.helm_upgrade.append(seconds)
                result.helm_requests.append(counts)
                result.template.append(seconds_taken(lambda: helm.run_helm(
                    ["template", RELEASE, str(CHART), "--namespace", namespace, "-f", str(values_file),
                     "-f", str(overlay)], helm=helm4)))
            result.record_bytes = record_bytes(config, namespace)
            manifest = subprocess.run([helm4, "get", "manifest", RELEASE, "--namespace", namespace],
                                      capture_output=True, text=True, check=True, timeout=300,
                                      env={**os.environ, "KUBECONFIG": config}).stdout
            result.objects = manifest.count("\nkind: ")
    finally:
        subprocess.run(["kubectl", "--kubeconfig", config, "delete", "namespace", namespace, "--wait=false"],
                       capture_output=True, check=False, timeout=120)
    return result


def requests_cell(samples: list[dict[str, int]]) -> str:
    totals = [sum(counts.values()) for counts in samples]
    writes = [sum(counts.get(verb, 0) for verb in WRITE_VERBS) for counts in samples]
    return f"{median(totals):.0f} ({median(writes):.0f} writes)"


def run(settings: RunSettings, log: Callable[[str], None]) -> list[Table]:
    try:
        config = kubeconfig()
    except RuntimeError as error:
        # As the cluster tests do: a developer who asked to go without the control plane is told.
        if os.environ.get("CS_SKIP_CLUSTER_TESTS") == "1" and os.environ.get("CI") != "true":
            table = Table("Upgrade cost vs models", ["skipped"])
            table.add(f"{error} (CS_SKIP_CLUSTER_TESTS=1)")
            return [table]
        raise
    sizes = QUICK_SIZES if settings.quick else FULL_SIZES
    repetitions = 1 if settings.quick else 2
    results: list[SizeResult] = []
    with tempfile.TemporaryDirectory(prefix="cs-bench-upgrade-") as temporary:
        for models in sizes:
            results.append(measure_size(models, repetitions, config, Path(temporary), log))
    helm_name = tool_version([helm.find_helm(4), "version", "--short"])
    table = Table(f"Upgrade cost vs models (cs-cluster apply, helm {helm_name}, control plane with kwok nodes)",
                  ["models", "objects", "install", "no-op apply", "one-model apply (--models)",
                   "API requests: no-op", "API requests: one model", "bare helm upgrade (same values)",
                   "its API requests", "bare helm template", "release record"])
    for result in results:
        table.add(result.models, result.objects, fmt_seconds(result.install), fmt_seconds(median(result.noop)),
                  fmt_seconds(median(result.one_model)), requests_cell(result.noop_requests),
                  requests_cell(result.one_requests), fmt_seconds(median(result.helm_upgrade)),
                  requests_cell(result.helm_requests), fmt_seconds(median(result.template)),
                  f"{result.record_bytes / 1024:.0f} KiB")
    sizes_run = [r.models for r in results]
    slope, intercept = linear_fit(sizes_run, [float(r.record_bytes) for r in results])
    one_slope, one_intercept = linear_fit(sizes_run, [median(r.one_model) for r in results])
    request_slope, request_intercept = linear_fit(
        sizes_run, [median([float(sum(c.values())) for c in r.one_requests]) for r in results])
    table.note(f"times: median of {repetitions} runs each (no-op and one-model alternating); requests: counted "
               "between cs-cluster and the API server, median, writes = create/update/patch/delete.")
    table.note(f"one-model apply: least-squares {fmt_seconds(one_slope)} per model + {fmt_seconds(one_intercept)}; "
               f"API requests {request_slope:.2f} per model + {request_intercept:.0f}.")
    if slope > 0:
        table.note(f"release record: {slope / 1024:.2f} KiB per model + {intercept / 1024:.0f} KiB; the 1 MiB limit "
                   f"is reached at about {(RECORD_LIMIT - intercept) / slope:.0f} models (linear extrapolation).")
    table.note(f"load average after: {load_text()}")
    return [table]
