"""`cs-cluster status` on the real node: the gateway asked over a real port-forward (API server,
kubelet, containerd) with the token read from its Secret, the tags our containers run, and a sim
seen queued or running and then as the last result, delivered to the stand-in webserver."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from helpers import cs_cluster
from node_support import GATEWAY_TOKEN, SESSION_TAG, Release

pytestmark = pytest.mark.node


def status(release: Release, *options: str) -> tuple[int, Any, str]:
    result = cs_cluster("status", "--release", release.name, "--namespace", release.kube.namespace, "--output",
                        "json", *options, env=release.node_env.env, timeout=120)
    assert result.stderr == "", result.stderr
    return result.returncode, json.loads(result.stdout), result.stdout


def celery_sum(found: Any) -> Any:
    return next(model for model in found["models"] if model["name"] == "cs-examples/Celery-Sum")


def test_status_of_the_release_on_the_real_node(release: Release) -> None:
    code, found, text = status(release)
    assert code == 0, text
    assert found["gateway"]["detail"].startswith("/load answered by pod cs-gateway-"), found["gateway"]
    assert (found["redis"]["healthy"], found["gateway"]["healthy"]) == (True, True)
    for model in found["models"]:
        assert model["healthy"] and model["tags"] == [SESSION_TAG], model
        assert model["load"]["queued"] == model["load"]["running"] == {"inputs": 0, "sim": 0}, model
    assert GATEWAY_TOKEN not in text

    job = release.submit("Celery-Sum", {"sum": {"a": 1, "b": 2, "sleep": 6}})
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        load = celery_sum(status(release)[1])["load"]
        seen.append((load["queued"]["sim"], load["running"]["sim"]))
        if seen[-1] == (0, 1):
            break
        time.sleep(0.5)
    assert seen[-1] == (0, 1), seen
    assert release.wait_result(job).body["status"] == "SUCCESS"
    deadline = time.monotonic() + 30
    while (last := celery_sum(status(release)[1])["load"]["last_result"]) is None or last["job_id"] != job:
        assert time.monotonic() < deadline, last
        time.sleep(0.5)
    assert (last["status"], last["kind"]) == ("SUCCESS", "outputs")
