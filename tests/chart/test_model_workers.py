"""Per-model Celery workers: model-io and model-sim Deployments, secrets, placement."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import container, env_of, model, values_with

from cs_cluster import RenderedChart, render_chart
from cs_cluster.errors import ToolError


def worker_command(workload: dict) -> list[str]:
    return container(workload)["command"]


@pytest.mark.parametrize("cluster_type", ["celery", "dask"])
def test_io_worker_takes_the_inputs_queue_one_at_a_time(cluster_type: str) -> None:
    chart = render_chart(values_with(model("PSLmodels", "OG-USA", cluster_type)))
    io = chart.one("Deployment", component="model-io", model="pslmodels-ogusa")
    assert io["metadata"]["name"] == "release-pslmodels-ogusa-io"
    command = worker_command(io)
    assert command[:4] == ["celery", "--app", "cs_runtime.worker:app", "worker"]
    assert command[command.index("--queues") + 1] == "pslmodels_ogusa_inputs_queue"
    assert command[command.index("--concurrency") + 1] == "1"
    assert command[command.index("--prefetch-multiplier") + 1] == "1"
    assert io["spec"]["replicas"] == 1
    assert container(io)["resources"] == {"requests": {"cpu": "700m", "memory": "250M", "ephemeral-storage": "128Mi"},
                                          "limits": {"cpu": "1", "memory": "700M", "ephemeral-storage": "2Gi"}}
    env = env_of(io)
    assert (env["OWNER"], env["TITLE"], env["CS_WORKER_ROLE"]) == ("PSLmodels", "OG-USA", "io")
    assert env["CS_CLUSTER_TYPE"] == cluster_type
    assert container(io)["image"] == "gcr.io/cs-test/pslmodels_ogusa_tasks:v1"


def test_celery_sim_worker_has_the_model_replicas_and_resources_merged_key_by_key() -> None:
    entry = model("PSLmodels", "Tax-Brain", replicas=3, simTimeLimit=900,
                  resources={"requests": {"memory": "4G"}, "limits": {"cpu": 2, "memory": "6G"}})
    chart = render_chart(values_with(entry))
    sim = chart.one("Deployment", component="model-sim", model="pslmodels-taxbrain")
    assert sim["spec"]["replicas"] == 3
    command = worker_command(sim)
    assert command[command.index("--queues") + 1] == "pslmodels_taxbrain_queue"
    # requests.cpu comes from the default (1), the rest from the model.
    assert container(sim)["resources"] == {"requests": {"cpu": "1", "memory": "4G", "ephemeral-storage": "256Mi"},
                                           "limits": {"cpu": 2, "memory": "6G", "ephemeral-storage": "9Gi"}}
    env = env_of(sim)
    assert env["SIM_TIME_LIMIT"] == "900"
    assert env["CS_WORKER_ROLE"] == "sim"
    assert "DASK_SCHEDULER_ADDRESS" not in env


def test_dask_sim_pod_is_a_small_driver_pointed_at_the_model_scheduler() -> None:
    entry = model("PSLmodels", "OG-USA", "dask", replicas=4,
                  resources={"requests": {"cpu": 2, "memory": "7G"}, "limits": {"cpu": 2, "memory": "7G"}})
    chart = render_chart(values_with(entry))
    sim = chart.one("Deployment", component="model-sim", model="pslmodels-ogusa")
    # replicas counts Dask workers; one driver hands sims to the cluster.
    assert sim["spec"]["replicas"] == 1
    assert chart.one("Deployment", component="dask-worker")["spec"]["replicas"] == 4
    assert env_of(sim)["DASK_SCHEDULER_ADDRESS"] == "tcp://release-pslmodels-ogusa-dask-scheduler:8786"
    assert container(sim)["resources"]["requests"] == {"cpu": "250m", "memory": "256M", "ephemeral-storage": "256Mi"}
    # The model's resources go to its Dask workers instead.
    worker = chart.one("Deployment", component="dask-worker", model="pslmodels-ogusa")
    assert container(worker)["resources"]["limits"] == {"cpu": 2, "memory": "7G", "ephemeral-storage": "9Gi"}


def test_worker_secret_reaches_workers_only_by_secret_key_ref() -> None:
    chart = render_chart(values_with(model("a", "b"), workerSecret={"values": {"COMP_URL": "https://web",
                                                                                "COMP_API_TOKEN": "t0ken"}}))
    secret = chart.one("Secret", name="release-worker-secret")
    assert set(secret["data"]) == {"COMP_URL", "COMP_API_TOKEN"}
    for role in ("model-io", "model-sim"):
        env = env_of(chart.one("Deployment", component=role))
        for name in ("COMP_URL", "COMP_API_TOKEN", "BUCKET"):
            assert env[name]["secretKeyRef"]["name"] == "release-worker-secret"
    assert "t0ken" not in chart.manifests.replace(secret["data"]["COMP_API_TOKEN"], "")


def test_worker_secret_existing_secret() -> None:
    chart = render_chart(values_with(model("a", "b"), workerSecret={"existingSecret": "cs-credentials"}))
    assert not chart.find("Secret", name="release-worker-secret")
    env = env_of(chart.one("Deployment", component="model-sim"))
    assert env["COMP_API_TOKEN"]["secretKeyRef"]["name"] == "cs-credentials"


def test_model_secrets_become_a_secret_used_through_env_from() -> None:
    entry = model("a", "b", "dask", secrets={"values": {"API_KEY": "s3cret-value", "OTHER": "x"}})
    chart = render_chart(values_with(entry))
    secret = chart.one("Secret", name="release-a-b-secrets")
    assert set(secret["data"]) == {"API_KEY", "OTHER"}
    assert "s3cret-value" not in chart.manifests
    for component in ("model-io", "model-sim", "dask-worker"):
        workload = chart.one("Deployment", component=component, model="a-b")
        assert container(workload)["envFrom"] == [{"secretRef": {"name": "release-a-b-secrets", "optional": True}}]
        assert "API_KEY" not in env_of(workload)
    assert not [o for o in chart.find("ConfigMap") if "s3cret" in str(o)]


def test_model_without_secret_values_renders_the_same_pod_templates() -> None:
    """Upgrading without the secrets file must not roll pods (the Secret is optional)."""
    with_secrets = render_chart(values_with(model("a", "b", secrets={"values": {"K": "v"}})))
    without = render_chart(values_with(model("a", "b")))
    assert not without.find("Secret", name="release-a-b-secrets")
    assert with_secrets.pod_templates() == without.pod_templates()


def test_model_existing_secret() -> None:
    chart = render_chart(values_with(model("a", "b", secrets={"existingSecret": "a-b-keys"})))
    assert not chart.find("Secret", model="a-b")
    io = chart.one("Deployment", component="model-io", model="a-b")
    assert container(io)["envFrom"] == [{"secretRef": {"name": "a-b-keys"}}]


@pytest.mark.parametrize("sizes", [["small"], ["small", "medium"]])
def test_node_size_becomes_node_affinity_on_sim_pods(sizes: list[str]) -> None:
    chart = render_chart(values_with(model("a", "b", nodeSize=sizes), model("c", "d", "dask", nodeSize=sizes)))
    expected = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "size", "operator": "In", "values": sizes}]}]}}}
    for component, slug in (("model-sim", "a-b"), ("model-sim", "c-d"), ("dask-worker", "c-d")):
        pod = chart.one("Deployment", component=component, model=slug)["spec"]["template"]["spec"]
        assert pod["affinity"] == expected
    for component in ("model-io", "dask-scheduler"):
        for workload in chart.find("Deployment", component=component):
            assert "affinity" not in workload["spec"]["template"]["spec"]


def test_dask_driver_replicas_can_be_raised() -> None:
    chart = render_chart(values_with(model("a", "b", "dask", replicas=3, sim={"replicas": 2})))
    assert chart.one("Deployment", component="model-sim")["spec"]["replicas"] == 2
    assert chart.one("Deployment", component="dask-worker")["spec"]["replicas"] == 3


def test_per_component_placement_and_resource_overrides() -> None:
    toleration = {"key": "dedicated", "operator": "Equal", "value": "models", "effect": "NoSchedule"}
    entry = model("a", "b", "dask",
                  io={"replicas": 2, "nodeSelector": {"pool": "io"}, "resources": {"limits": {"memory": "1G"}}},
                  daskScheduler={"tolerations": [toleration]},
                  daskWorker={"nodeSelector": {"pool": "compute"}})
    chart = render_chart(values_with(entry, modelDefaults={"sim": {"tolerations": [toleration]}}))
    io = chart.one("Deployment", component="model-io")
    assert io["spec"]["replicas"] == 2
    assert io["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "io"}
    assert container(io)["resources"]["limits"] == {"cpu": "1", "memory": "1G", "ephemeral-storage": "2Gi"}
    scheduler = chart.one("Deployment", component="dask-scheduler")
    assert scheduler["spec"]["template"]["spec"]["tolerations"] == [toleration]
    worker = chart.one("Deployment", component="dask-worker")
    assert worker["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "compute"}
    assert worker["spec"]["template"]["spec"]["tolerations"] == [toleration]


def test_image_repository_override_and_registry() -> None:
    chart = render_chart(values_with(model("a", "b", image={"tag": 5, "repository": "quay.io/x/y"}),
                                     model("c", "d"), modelImages={"registry": "", "project": "me"}))
    assert container(chart.one("Deployment", component="model-io", model="a-b"))["image"] == "quay.io/x/y:5"
    assert container(chart.one("Deployment", component="model-io", model="c-d"))["image"] == "me/c_d_tasks:v1"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"models": {"a-b": model("a", "b")}}, "set modelImages.project"),
        (values_with(model("a", "b", image={"tag": ""})), "image.tag is empty"),
    ],
)
def test_missing_image_settings_fail_the_render(values: dict, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        render_chart(values)


def sim_worker_env(chart: RenderedChart, slug: str) -> dict[str, str]:
    """The plain env of a model's sim worker, plus a stand-in for the password it gets from a Secret."""
    sim = container(chart.one("Deployment", component="model-sim", model=slug))
    return {**{item["name"]: item["value"] for item in sim["env"] if "value" in item}, "REDIS_PASSWORD": "x"}


@pytest.mark.parametrize(("visibility", "sim_time_limit"), [(600, 600), (600, 601), (600, 7200)],
                         ids=["equal", "one-above", "far-above"])
def test_visibility_timeout_not_above_a_sim_time_limit_is_refused(visibility: int, sim_time_limit: int) -> None:
    """README: the visibility timeout must exceed every model's sim time limit, or Redis hands the
    running sim to a second worker; the chart refuses, naming the model (equality included)."""
    values = values_with(model("a", "b", simTimeLimit=sim_time_limit), model("c", "d", simTimeLimit=10),
                         celery={"visibilityTimeout": visibility})
    with pytest.raises(ToolError, match=r"models\.a-b: .*celery\.visibilityTimeout"):
        render_chart(values, validate=False)


@pytest.mark.parametrize("sim_time_limit", [1, 600, 7200])
def test_chart_refuses_a_visibility_timeout_exactly_where_the_workers_would_not_start(sim_time_limit: int) -> None:
    """The rule's source is the runtime (cs_runtime.settings.WorkerSettings): a worker refuses to
    start unless the visibility timeout is above its longest hard time limit. The chart must
    refuse the same values, no more and no less: at the limit refused, one second above accepted."""
    from cs_runtime.errors import ConfigError
    from cs_runtime.settings import WorkerSettings

    entry = model("a", "b", simTimeLimit=sim_time_limit)
    env = sim_worker_env(render_chart(values_with(entry, celery={"visibilityTimeout": 10**6}), validate=False), "a-b")
    hard = WorkerSettings.from_env({k: v for k, v in env.items() if k != "CELERY_VISIBILITY_TIMEOUT"}) \
        .longest_hard_time_limit()
    at_limit, above = math.floor(hard), math.floor(hard) + 1
    with pytest.raises(ConfigError, match="CELERY_VISIBILITY_TIMEOUT"):
        WorkerSettings.from_env({**env, "CELERY_VISIBILITY_TIMEOUT": str(at_limit)})
    with pytest.raises(ToolError, match=r"models\.a-b: .*celery\.visibilityTimeout"):
        render_chart(values_with(entry, celery={"visibilityTimeout": at_limit}), validate=False)
    accepted = render_chart(values_with(entry, celery={"visibilityTimeout": above}), validate=False)
    assert WorkerSettings.from_env(sim_worker_env(accepted, "a-b")).visibility_timeout == above


@pytest.mark.parametrize(("sim_time_limit", "cap", "grace"), [(900, 3660, 960), (3600, 3660, 3660),
                                                             (7000, 3660, 3660), (30, 3660, 90), (900, 500, 500)],
                         ids=["limit+60", "at-cap", "capped", "short", "lower-cap"])
def test_sim_pods_get_their_time_limit_plus_a_minute_to_finish(sim_time_limit: int, cap: int, grace: int) -> None:
    """Celery's warm shutdown finishes the running sim on SIGTERM; the kubelet's grace period
    must let it: simTimeLimit + 60 s, capped by modelDefaults.maxSimGracePeriodSeconds."""
    chart = render_chart(values_with(model("a", "b", simTimeLimit=sim_time_limit),
                                     model("c", "d", "dask", simTimeLimit=sim_time_limit),
                                     modelDefaults={"maxSimGracePeriodSeconds": cap},
                                     celery={"visibilityTimeout": 100000}), validate=False)
    for slug in ("a-b", "c-d"):
        sim = chart.one("Deployment", component="model-sim", model=slug)
        assert sim["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == grace, slug
        io = chart.one("Deployment", component="model-io", model=slug)
        assert io["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 60, slug


def test_a_drain_takes_one_sim_pod_and_one_dask_worker_of_a_model_at_a_time() -> None:
    chart = render_chart(values_with(model("a", "b", replicas=3), model("c", "d", "dask", replicas=4)))
    budgets = chart.find("PodDisruptionBudget")
    guarded = sorted((b["metadata"]["labels"]["app.kubernetes.io/component"],
                      b["metadata"]["labels"]["compute.studio/model"]) for b in budgets)
    assert guarded == [("dask-worker", "c-d"), ("model-sim", "a-b"), ("model-sim", "c-d")]
    for budget in budgets:
        labels = budget["metadata"]["labels"]
        # A pod that is not Ready (a crash-looping model) never blocks a drain.
        assert budget["spec"] == {"maxUnavailable": 1, "selector": budget["spec"]["selector"],
                                  "unhealthyPodEvictionPolicy": "AlwaysAllow"}
        workload = chart.one("Deployment", component=labels["app.kubernetes.io/component"],
                             model=labels["compute.studio/model"])
        # The budget selects exactly that workload's pods: not another model's, not the io pods.
        assert budget["spec"]["selector"] == workload["spec"]["selector"]
        pod_labels = workload["spec"]["template"]["metadata"]["labels"]
        for other in chart.find("Deployment"):
            if other is workload:
                continue
            other_labels = other["spec"]["template"]["metadata"]["labels"]
            assert not all(other_labels.get(k) == v for k, v in budget["spec"]["selector"]["matchLabels"].items()), \
                (budget["metadata"]["name"], other["metadata"]["name"])
        assert all(pod_labels.get(k) == v for k, v in budget["spec"]["selector"]["matchLabels"].items())


def test_budgets_leave_out_the_eviction_policy_where_kubernetes_lacks_it() -> None:
    """unhealthyPodEvictionPolicy exists from Kubernetes 1.27 (beta, on by default); older API
    servers would drop it or, with strict field validation, refuse the object."""
    values = values_with(model("a", "b"), model("c", "d", "dask"))
    old = render_chart(values, kubernetes_versions=["1.26"], validate=False)
    assert [b["spec"].get("unhealthyPodEvictionPolicy") for b in old.find("PodDisruptionBudget")] == [None] * 3
    strict = render_chart({**values, "podDisruptionBudget": {"unhealthyPodEvictionPolicy": "IfHealthyBudget"}})
    assert {b["spec"]["unhealthyPodEvictionPolicy"] for b in strict.find("PodDisruptionBudget")} == {"IfHealthyBudget"}


def remapped(value: str, mounts: dict[str, Path]) -> str:
    """A container path as the same file under this test's stand-in for the volume mounted there."""
    for mount_path, directory in mounts.items():
        if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
            return str(directory) + value[len(mount_path.rstrip("/")):]
    return value


@pytest.mark.parametrize("cluster_type", ["celery", "dask"])
def test_worker_probes_read_the_heartbeat_file_the_worker_writes(cluster_type: str, tmp_path: Path) -> None:
    """The worker touches CS_HEARTBEAT_FILE (cs_runtime.settings reads it: the source); the root
    file system is read-only, so it must be on a writable volume; and every probe the chart
    renders, run for real with the container's env, must pass after that beat and fail before."""
    from cs_runtime.heartbeat import beat
    from cs_runtime.settings import WorkerSettings

    chart = render_chart(values_with(model("a", "b", cluster_type)))
    for component in ("model-io", "model-sim"):
        workload = chart.one("Deployment", component=component)
        worker = container(workload)
        pod = workload["spec"]["template"]["spec"]
        assert worker["securityContext"]["readOnlyRootFilesystem"] is True
        empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        mounts = {m["mountPath"]: tmp_path / component / m["name"] for m in worker["volumeMounts"]
                  if m["name"] in empty_dirs and not m.get("readOnly")}  # fmt: skip
        assert mounts, "no writable volume in the worker container"
        for directory in mounts.values():
            directory.mkdir(parents=True)
        plain_env = {item["name"]: item["value"] for item in worker["env"] if "value" in item}
        settings = WorkerSettings.from_env({**plain_env, "REDIS_PASSWORD": "x"})
        assert settings.heartbeat_file is not None
        written = remapped(str(settings.heartbeat_file), mounts)
        assert written != str(settings.heartbeat_file), \
            f"{settings.heartbeat_file} is on the read-only root file system, not on a writable volume"
        env = {**os.environ, **{name: remapped(value, mounts) for name, value in plain_env.items()}}
        probes = {kind: worker[kind]["exec"]["command"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
        assert len(probes) == 3
        for kind, command in probes.items():
            argv = [sys.executable if word == "python" else remapped(word, mounts) for word in command]
            before = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
            assert before.returncode == 1 and "no heartbeat yet" in before.stderr, (component, kind, before.stderr)
        beat(Path(written))
        for kind, command in probes.items():
            argv = [sys.executable if word == "python" else remapped(word, mounts) for word in command]
            after = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
            assert after.returncode == 0, (component, kind, after.stderr)


@pytest.mark.parametrize(("cluster_type", "component"), [("celery", "model-sim"), ("dask", "dask-worker")])
def test_replicas_zero_renders_zero(cluster_type: str, component: str) -> None:
    """A model scaled to nothing stays at nothing: 0 is a count, not a missing value."""
    chart = render_chart(values_with(model("a", "b", cluster_type, replicas=0)))
    assert chart.one("Deployment", component=component, model="a-b")["spec"]["replicas"] == 0


@pytest.mark.parametrize("owner", ["0123", "1e3", "0x1F", "yes"])
def test_a_model_key_that_reads_as_a_number_stays_text(owner: str) -> None:
    """The model's key reaches the runtime as the characters of its slug (its Redis key prefix,
    its queues), never as the number YAML would read it as."""
    from cs_cluster.names import model_slug

    key = model_slug(owner, owner).replace("-", "_")
    chart = render_chart(values_with(model(owner, owner)))
    worker = chart.one("Deployment", component="model-sim", model=key.replace("_", "-"))
    assert env_of(worker)["CS_REDIS_KEY_PREFIX"] == f"{key}:"
