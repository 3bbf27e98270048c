"""`cs-cluster status`'s words and shapes, from statuses built here: the table, the JSON, the
exit statuses, the gateway answer it accepts, and the command line's one-line errors. What it
reads from a live cluster is tested on the control plane (tests/cluster/test_status.py) and in
local mode (tests/local_mode/test_local_status.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from helpers import cs_cluster

from cs_cluster.errors import ToolError
from cs_cluster.status import ClusterStatus, PartStatus, Workload, assemble, image_tag, parse_loads
from cs_cluster.status_kube import running_tags, workload_status

NOW = 1_800_000_000.0


@pytest.mark.parametrize(("image", "tag"), [
    ("gcr.io/cs-workers-dev/csexamples_celerysum_tasks:oct30.1", "oct30.1"),
    ("10.213.0.1:16446/cs-test/csexamples_daskpi_tasks:v2", "v2"),
    ("redis:7.4.2-alpine", "7.4.2-alpine"),
    ("docker.io/library/redis:7.4.2-alpine", "7.4.2-alpine"),
    ("10.213.0.1:16446/cs-test/gateway", "latest"),
    ("registry:5000/p/model:v3@sha256:" + "a" * 64, "v3"),
    ("registry:5000/p/model@sha256:" + "b" * 64, "sha256:" + "b" * 64),
])
def test_image_tag(image: str, tag: str) -> None:
    assert image_tag(image) == tag


def load_entry(slug: str, queued: tuple[int, int] = (0, 0), running: tuple[int, int] = (0, 0),
               last: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"model": slug, "queued": {"inputs": queued[0], "sim": queued[1]},
            "running": {"inputs": running[0], "sim": running[1]}, "sims": queued[1] + running[1], "last_result": last}


def workloads(**ready: int) -> list[Workload]:
    """The example's workloads, all ready unless `ready` says otherwise (by component)."""
    def make(component: str, model: str | None, desired: int, tag: str) -> Workload:
        return Workload("Deployment", f"cs-{model or component}-{component}", component, model, desired,
                        ready.get(f"{model}:{component}", desired), (tag,))

    return [make("model-io", "csexamples-celerysum", 1, "v2"), make("model-sim", "csexamples-celerysum", 1, "v2"),
            make("model-io", "csexamples-daskpi", 1, "v1"), make("model-sim", "csexamples-daskpi", 1, "v1"),
            make("dask-scheduler", "csexamples-daskpi", 1, "v1"), make("dask-worker", "csexamples-daskpi", 2, "v1"),
            make("redis", None, 1, "7.4.2-alpine"), make("gateway", None, 1, "0.1.0")]


NAMES = {"csexamples-celerysum": ("cs-examples", "Celery-Sum"), "csexamples-daskpi": ("cs-examples", "Dask-Pi")}
LOADS = {"models": [
    load_entry("csexamples-celerysum", queued=(1, 2), running=(0, 1),
               last={"job_id": "j-3", "status": "SUCCESS", "kind": "outputs", "delivered": True, "at": NOW - 125}),
    load_entry("csexamples-daskpi")]}


def report(loads: dict[str, Any] | None = LOADS, gateway_ready: bool = True, **ready: int) -> ClusterStatus:
    found, redis, gateway = assemble(workloads(**ready), NAMES, parse_loads(loads) if loads else None)
    return ClusterStatus(where="release cs in namespace cs-workers", models=found,
                         redis=PartStatus("redis", redis, answers=True, detail="its pod is Ready"),
                         gateway=PartStatus("gateway", gateway, answers=loads is not None and gateway_ready,
                                            detail="/load answered" if loads else "/load did not answer: refused"),
                         now=NOW, scope={"release": "cs", "namespace": "cs-workers"})


def test_the_table_for_people() -> None:
    assert report().lines() == [
        "Status of release cs in namespace cs-workers.",
        "MODEL                   IO   SIM  SCHEDULER  WORKERS  TAG  QUEUED     RUNNING  LAST RESULT",
        "cs-examples/Celery-Sum  1/1  1/1  -          -        v2   2 (+1 io)  1        SUCCESS sim 2m ago",
        "cs-examples/Dask-Pi     1/1  1/1  1/1        2/2      v1   0          0        -",
        "Redis: healthy (1/1 pods ready; its pod is Ready)",
        "Gateway: healthy (1/1 pods ready; /load answered)",
        "Healthy: 2 model(s), 2 healthy; Redis healthy; gateway healthy.",
    ]


def test_a_model_short_of_pods_is_named_with_its_numbers() -> None:
    status = report(**{"csexamples-daskpi:dask-worker": 1, "csexamples-daskpi:model-sim": 0})
    lines = status.lines()
    assert "cs-examples/Dask-Pi     1/1  0/1  1/1        1/2      v1   0          0        -" in lines
    assert "! cs-examples/Dask-Pi: model-sim 0/1 pods ready; dask-worker 1/2 pods ready" in lines
    assert lines[-1] == "Unhealthy: 2 model(s), 1 healthy; Redis healthy; gateway healthy."
    assert status.exit_code == 3


def test_without_the_gateway_the_load_is_unknown_not_zero() -> None:
    status = report(loads=None)
    assert status.lines()[2] == "cs-examples/Celery-Sum  1/1  1/1  -          -        v2   ?       ?        ?"
    assert status.lines()[-2] == "Gateway: UNHEALTHY (1/1 pods ready; /load did not answer: refused)"
    assert status.exit_code == 3
    assert [model["load"] for model in status.as_json()["models"]] == [None, None]


def test_a_shared_part_short_of_pods_is_unhealthy_though_it_answers() -> None:
    status = report()
    status.gateway.workload = Workload("Deployment", "cs-gateway", "gateway", None, 2, 1, ("0.1.0",))
    assert status.lines()[-2:] == ["Gateway: UNHEALTHY (1/2 pods ready; /load answered)",
                                   "Unhealthy: 2 model(s), 2 healthy; Redis healthy; gateway unhealthy."]
    assert (status.as_json()["gateway"]["healthy"], status.exit_code) == (False, 3)


def test_a_model_the_gateway_does_not_route_is_unhealthy() -> None:
    status = report(loads={"models": [load_entry("csexamples-celerysum")]})
    dask_pi = status.as_json()["models"][1]
    assert dask_pi["problems"] == ["the gateway does not route it (its /load does not list the model)"]
    assert status.exit_code == 3


def test_a_result_the_webserver_never_took_is_a_problem() -> None:
    lost = {"job_id": "j-9", "status": "FAIL", "kind": "inputs", "delivered": False, "at": NOW - 4000}
    status = report(loads={"models": [load_entry("csexamples-celerysum", last=lost), load_entry("csexamples-daskpi")]})
    lines = status.lines()
    assert lines[2].endswith("FAIL parse 1h ago, NOT DELIVERED"), lines[2]
    assert "! cs-examples/Celery-Sum: its last result (job j-9) never reached the webserver" in lines
    assert status.exit_code == 3


def test_the_json_for_scripts() -> None:
    document = report().as_json()
    assert set(document) == {"release", "namespace", "healthy", "time", "redis", "gateway", "models"}
    assert document["redis"] == {"healthy": True, "answers": True, "detail": "its pod is Ready", "ready": 1,
                                 "desired": 1, "tags": ["7.4.2-alpine"]}
    celery_sum = document["models"][0]
    assert celery_sum["pods"]["model-sim"] == {"kind": "Deployment", "name": "cs-csexamples-celerysum-model-sim",
                                               "ready": 1, "desired": 1, "updated": None, "tags": ["v2"],
                                               "stuck": None, "healthy": True}
    assert celery_sum["load"] == {"queued": {"inputs": 1, "sim": 2}, "running": {"inputs": 0, "sim": 1},
                                  "last_result": {"job_id": "j-3", "status": "SUCCESS", "kind": "outputs",
                                                  "delivered": True, "at": NOW - 125, "age_seconds": 125.0}}
    assert (celery_sum["name"], celery_sum["slug"], celery_sum["tags"]) == (
        "cs-examples/Celery-Sum", "csexamples-celerysum", ["v2"])


@pytest.mark.parametrize(("answer", "message"), [
    ([], "has no list of models"),
    ({"models": [{"queued": {}}]}, "a model entry without its slug"),
    ({"models": [{"model": "m", "queued": {"inputs": 0, "sim": 0}}]}, "for m lacks queued or running"),
    ({"models": [load_entry("m", queued=(0, -1))]}, "m queued.sim = -1, not a count"),
    ({"models": [{**load_entry("m"), "running": {"inputs": "1", "sim": 0}}]}, "m running.inputs = '1', not a count"),
    ({"models": [load_entry("m", last={"status": "SUCCESS"})]}, "last_result without its time"),
    ({"models": [load_entry("m", last={"status": "SUCCESS", "at": 1.0})]}, "last_result without 'delivered'"),
])
def test_a_gateway_answer_of_another_shape_is_named(answer: Any, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        parse_loads(answer)


def pod(name: str, image: str, *, running: bool = True, labels: dict[str, str] | None = None,
        status_image: str | None = None) -> dict[str, Any]:
    state = {"running": {}} if running else {"waiting": {"reason": "ContainerCreating"}}
    return {"metadata": {"name": name, "labels": labels or {"app": "x"}},
            "spec": {"containers": [{"name": "worker", "image": image}]},
            "status": {"containerStatuses": [{"name": "worker", "image": status_image or image, "state": state}]}}


def test_the_tag_is_what_the_running_containers_run() -> None:
    pods = [pod("a", "r/m:v1"), pod("b", "r/m:v2"), pod("c", "r/m:v3", running=False),
            pod("d", "r/m:v4", status_image="sha256:" + "c" * 64)]
    assert running_tags(pods, "worker") == ("v1", "v2", "v4")
    assert running_tags(pods, "sidecar") == ()


def test_a_workload_counts_its_own_pods_by_its_selector() -> None:
    deployment = {"kind": "Deployment",
                  "metadata": {"name": "cs-m-sim", "labels": {"app.kubernetes.io/component": "model-sim",
                                                              "compute.studio/model": "m"}},
                  "spec": {"replicas": 3, "selector": {"matchLabels": {"c": "sim"}},
                           "template": {"spec": {"containers": [{"name": "worker"}]}}},
                  "status": {"readyReplicas": 2, "updatedReplicas": 1,
                             "conditions": [{"type": "Progressing", "status": "False",
                                             "reason": "ProgressDeadlineExceeded",
                                             "message": 'ReplicaSet "cs-m-sim-7c9" has timed out progressing.'}]}}
    pods = [pod("s1", "r/m:v1", labels={"c": "sim"}), pod("s2", "r/m:v2", labels={"c": "sim"}),
            pod("io", "r/m:v9", labels={"c": "io"})]
    workload = workload_status(deployment, pods)
    assert (workload.component, workload.model, workload.ready, workload.desired, workload.updated) == (
        "model-sim", "m", 2, 3, 1)
    assert workload.tags == ("v1", "v2")
    assert workload.problem() == 'model-sim rollout stuck: ReplicaSet "cs-m-sim-7c9" has timed out progressing.'


def test_status_errors_are_one_line(tmp_path: Path) -> None:
    no_cluster = {**os.environ, "KUBECONFIG": str(tmp_path / "no-kubeconfig")}
    result = cs_cluster("status", "--release", "cs", "--namespace", "cs-workers", env=no_cluster)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith("cs-cluster: error: cannot load a kubeconfig: ")
    assert len(result.stderr.splitlines()) == 1
    bad = cs_cluster("status", "--release", "Not_A_Release", env=no_cluster)
    assert (bad.returncode, bad.stderr) == (2, "cs-cluster: error: --release 'Not_A_Release' is not a valid Helm "
                                               "release name (lowercase letters, digits, - and ., at most 53 "
                                               "characters)\n")
    timeout = cs_cluster("status", "--gateway-timeout", "0", env=no_cluster)
    assert timeout.returncode == 2 and "--gateway-timeout: 0 is not a positive number of seconds" in timeout.stderr
