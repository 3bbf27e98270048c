"""Autoscaling on the real node: KEDA started beside it (`ci/cluster up --real-node --keda`), the
example installed with autoscaling on, and what the live cluster says about replicas, pods and
their CPU requests. Shared by tests/node/test_scale_to_zero.py and benchmarks/cold_start.py."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from helpers import REPO, skip_or_fail
from node_support import NodeEnvironment, Release

from cs_cluster.quantities import parse_quantity

# The example's models, by slug, and the Deployments KEDA scales to zero for each.
CELERY_SLUG = "csexamples-celerysum"
DASK_SLUG = "csexamples-daskpi"
SCALED_TO_ZERO = {CELERY_SLUG: ("model-sim",), DASK_SLUG: ("model-sim", "dask-worker", "dask-scheduler")}


def start_keda(node_env: NodeEnvironment | None = None) -> dict[str, str]:
    """KEDA on the cluster: started by ci/cluster (built once, cached; the real node too when it is
    not up), or on kind installed with its own Helm chart by the workflow (`node_env` given). Fails
    (skips only when a developer asks) when it cannot be. The variables `ci/cluster up` printed."""
    if os.environ.get("CS_NODE_ENV_FROM_ENVIRONMENT") == "1" and node_env is not None:
        served = subprocess.run(["kubectl", "api-versions"], capture_output=True, text=True, check=False,
                                env=node_env.env, timeout=60).stdout.split()
        if "keda.sh/v1alpha1" not in served:
            skip_or_fail("the cluster does not serve keda.sh/v1alpha1: install KEDA (README, 'Autoscaling')",
                         skip_variable="CS_SKIP_NODE_TESTS")
        return dict(node_env.variables)
    # Builds KEDA the first time (ci/test.sh starts that build in the background early).
    result = subprocess.run(["bash", str(REPO / "ci" / "cluster"), "up", "--real-node", "--keda"],
                            capture_output=True, text=True, check=False, timeout=5400)
    if result.returncode != 0:
        log = "\n".join(result.stderr.strip().splitlines()[-60:])
        skip_or_fail(f"KEDA could not start (ci/cluster up --real-node --keda exited {result.returncode}):\n{log}",
                     skip_variable="CS_SKIP_NODE_TESTS")
    found: dict[str, str] = {}
    for line in result.stdout.splitlines():
        if line.startswith("export ") and "=" in line:
            name, _, value = line[len("export "):].partition("=")
            found[name] = shlex.split(value)[0] if value else ""
    return found


def autoscaling_values(directory: Path, cooldown: int, polling: int, **models: dict[str, Any]) -> Path:
    """A values file turning autoscaling on for every model, with these seconds, and model settings."""
    path = directory / "autoscaling.yaml"
    path.write_text(yaml.safe_dump({
        "modelDefaults": {"autoscaling": {"enabled": True, "cooldownPeriod": cooldown, "pollingInterval": polling}},
        "models": models,
    }))
    return path


def replicas(release: Release, slug: str, component: str) -> int:
    """The replicas a model's Deployment asks for now (what KEDA or its HPA set)."""
    (deployment,) = release.kube.get("deployments", f"app.kubernetes.io/instance={release.name},"
                                     f"app.kubernetes.io/component={component},compute.studio/model={slug}")
    return int(deployment["spec"].get("replicas", 1))


def pods_of(release: Release, slug: str, component: str) -> list[dict[str, Any]]:
    """A model's pods of one component, terminating ones included."""
    return release.pods(f"app.kubernetes.io/component={component},compute.studio/model={slug}")


def at_zero(release: Release, slug: str) -> bool:
    """No replica asked for and no pod left (terminating ones included) of what scales to zero."""
    return all(replicas(release, slug, component) == 0 and not pods_of(release, slug, component)
               for component in SCALED_TO_ZERO[slug])


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 1.0) -> float:
    """Poll `condition` until it holds; the monotonic time it first did. AssertionError at `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(interval)
    return time.monotonic()


def cpu_requests(release: Release) -> dict[str, float]:
    """CPU requested by the release's live pods (not yet deleted), in CPUs, summed per component
    (and model), as the scheduler counts them: each pod's containers plus its init containers' peak."""
    found: dict[str, float] = {}
    for pod in release.pods():
        if pod["metadata"].get("deletionTimestamp") or pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            continue
        spec = pod["spec"]
        running = sum(float(parse_quantity(c.get("resources", {}).get("requests", {}).get("cpu", "0")))
                      for c in spec["containers"])
        init = max((float(parse_quantity(c.get("resources", {}).get("requests", {}).get("cpu", "0")))
                    for c in spec.get("initContainers", [])), default=0.0)
        labels = pod["metadata"]["labels"]
        key = "/".join(filter(None, (labels["app.kubernetes.io/component"], labels.get("compute.studio/model"))))
        found[key] = found.get(key, 0.0) + max(running, init)
    return found


def gateway_load(release: Release, title: str, owner: str = "cs-examples") -> dict[str, Any]:
    """The model's load as KEDA reads it (GET /<owner>/<title>/load)."""
    import requests
    from node_support import GATEWAY_TOKEN

    answer = requests.get(f"{release.gateway_url}/{owner}/{title}/load",
                          headers={"Authorization": f"Bearer {GATEWAY_TOKEN}"}, timeout=30)
    answer.raise_for_status()
    load: dict[str, Any] = answer.json()
    return load


def scaled_objects_ready(release: Release) -> bool:
    """Every ScaledObject of the release Ready (KEDA made its HPA and reads its trigger)."""
    found = json.loads(release.kube.kubectl("get", "scaledobjects.keda.sh", "-o", "json").stdout)["items"]
    return bool(found) and all(
        any(c["type"] == "Ready" and c["status"] == "True" for c in o.get("status", {}).get("conditions", []))
        for o in found)
