"""Install, upgrade, roll back, test and uninstall on a real API server (kwok nodes)."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import yaml
from helpers import CHART, EXAMPLE_CONFIG, REPO, cs_cluster, skip_or_fail, write_config
from kube_support import Kube

from cs_cluster import Cluster
from cs_cluster.helm import find_helm

pytestmark = pytest.mark.cluster
RELEASE = "cs"


def apply(kube: Kube, tmp_path: Path, *options: str, major: int = 4, config: Path = EXAMPLE_CONFIG,
          tag: str = "v1") -> subprocess.CompletedProcess[str]:
    return cs_cluster("apply", "--config", config, "--tag", tag, "--project", "cs-test", "--release", RELEASE,
                      "--namespace", kube.namespace, "--values-file", tmp_path / "values.yaml", *options,
                      env={**kube.env, "CS_HELM": find_helm(major)}, timeout=600)


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def generations(kube: Kube) -> dict[str, int]:
    return {d["metadata"]["name"]: d["metadata"]["generation"] for d in kube.get("deployments")}


def replica_sets(kube: Kube) -> dict[str, set[str]]:
    owned: dict[str, set[str]] = {}
    for replica_set in kube.get("replicasets"):
        owner = replica_set["metadata"]["ownerReferences"][0]["name"]
        owned.setdefault(owner, set()).add(replica_set["metadata"]["name"])
    return owned


@pytest.mark.parametrize("major", [3, 4], ids=["helm3", "helm4"])
def test_apply_example_every_pod_ready_then_helm_test(kube: Kube, tmp_path: Path, major: int) -> None:
    result = apply(kube, tmp_path, "--timeout", "4m", major=major)
    assert result.returncode == 0, result.stderr
    # helm prints NOTES.txt: what was deployed (Helm 3 needs an API server for this).
    assert "Models (2):" in result.stdout and "cs-examples/Dask-Pi: dask" in result.stdout, result.stdout
    pods = kube.get("pods", f"app.kubernetes.io/instance={RELEASE}")
    # Redis, gateway, 2 io, Celery sim, Dask driver, Dask scheduler, 2 Dask workers.
    assert len(pods) == 9, [p["metadata"]["name"] for p in pods]
    assert all(ready(pod) for pod in pods), [p["metadata"]["name"] for p in pods if not ready(p)]
    claim = kube.get("pvc")[0]
    assert claim["status"]["phase"] == "Bound"
    test = kube.helm(major, "test", RELEASE, "--timeout", "3m")
    assert "Phase:          Succeeded" in test.stdout or "Phase: Succeeded" in " ".join(test.stdout.split()), \
        test.stdout
    assert test.stdout.count("Succeeded") == 3, test.stdout


def test_noop_upgrade_and_one_model_bump(kube: Kube, tmp_path: Path) -> None:
    assert apply(kube, tmp_path).returncode == 0
    before_generations, before_sets = generations(kube), replica_sets(kube)
    again = apply(kube, tmp_path)
    assert again.returncode == 0, again.stderr
    assert generations(kube) == before_generations
    bump = apply(kube, tmp_path, "--models", "Celery-Sum", tag="v2")
    assert bump.returncode == 0, bump.stderr
    after_sets = replica_sets(kube)
    changed = {name for name in after_sets if after_sets[name] != before_sets.get(name)}
    assert changed == {f"{RELEASE}-csexamples-celerysum-io", f"{RELEASE}-csexamples-celerysum-sim"}
    tags = {slug: m["image"]["tag"] for slug, m in yaml.safe_load((tmp_path / "values.yaml").read_text())[
        "models"].items()}
    assert tags == {"csexamples-celerysum": "v2", "csexamples-daskpi": "v1"}


def git(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False,
                          timeout=timeout)


def deepen_if_shallow() -> None:
    """CI checkouts are often `--depth 1`: fetch the history these tests read."""
    if git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
        fetch = git("fetch", "--quiet", "--unshallow", timeout=300)
        if fetch.returncode != 0:
            skip_or_fail(f"a shallow clone, and `git fetch --unshallow` could not fetch the history: {fetch.stderr}")


def chart_version(text: str) -> str:
    return str(yaml.safe_load(text)["version"])


def last_release() -> tuple[str, str]:
    """(commit, version) of the chart version released before the one in the working tree: the
    commit just before the version was last changed to the current one (Chart.yaml's `version`
    changes only with a CHANGELOG entry, tests/chart/test_chart_metadata.py)."""
    deepen_if_shallow()
    current = chart_version((CHART / "Chart.yaml").read_text())
    at_head = git("show", "HEAD:charts/cs-workers/Chart.yaml")
    if at_head.returncode == 0 and chart_version(at_head.stdout) != current:
        return "HEAD", chart_version(at_head.stdout)  # bumped in the working tree, not committed yet
    bumps = git("log", "--format=%H", "-G^version:", "--", "charts/cs-workers/Chart.yaml").stdout.split()
    for commit in bumps:
        before = git("show", f"{commit}~1:charts/cs-workers/Chart.yaml")
        if before.returncode == 0 and chart_version(before.stdout) != current:
            return f"{commit}~1", chart_version(before.stdout)
    skip_or_fail(f"no chart version before {current} in the history")
    raise AssertionError("unreachable")


def chart_at(revision: str, tmp_path: Path) -> Path:
    """The chart as it was at `revision`, from git."""
    deepen_if_shallow()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", revision, "charts/cs-workers"],
                             capture_output=True, check=False)
    if archive.returncode != 0:
        skip_or_fail(f"no chart at {revision}: {archive.stderr.decode().strip()}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(tmp_path / "previous", filter="data")
    return tmp_path / "previous" / "charts" / "cs-workers"


@pytest.mark.parametrize("previous", ["commit", "release"])
def test_upgrade_from_the_previous_commit_and_release_then_roll_back(kube: Kube, tmp_path: Path,
                                                                     previous: str) -> None:
    """From the commit before HEAD, and from the last released chart version (packaged with
    `helm package`, as users install it), to the working tree's chart, and back."""
    values = tmp_path / "values.yaml"
    Cluster(EXAMPLE_CONFIG, tag="v1", project="cs-test", previous=None).write_values(values)
    if previous == "commit":
        old = chart_at("HEAD~1", tmp_path)
    else:
        revision, version = last_release()
        packaged = kube.helm(4, "package", str(chart_at(revision, tmp_path)), "--destination", str(tmp_path))
        old = tmp_path / f"cs-workers-{version}.tgz"
        assert old.exists(), packaged.stdout
    kube.helm(4, "install", RELEASE, str(old), "-f", str(values), "--wait", "--timeout", "4m")
    upgrade = kube.helm(4, "upgrade", RELEASE, str(CHART), "-f", str(values), "--wait", "--timeout", "4m",
                        check=False)
    assert upgrade.returncode == 0, upgrade.stderr
    assert "immutable" not in upgrade.stderr
    rollback = kube.helm(4, "rollback", RELEASE, "1", "--wait", "--timeout", "4m", check=False)
    assert rollback.returncode == 0, rollback.stderr
    history = kube.helm(4, "history", RELEASE, "-o", "yaml")
    revisions = yaml.safe_load(history.stdout)
    assert [r["status"] for r in revisions] == ["superseded", "superseded", "deployed"]
    if previous == "release":
        assert [r["chart"] for r in revisions] == [f"cs-workers-{version}",
                                                   f"cs-workers-{chart_version((CHART / 'Chart.yaml').read_text())}",
                                                   f"cs-workers-{version}"]


def test_unschedulable_model_is_named_before_the_timeout(kube: Kube, tmp_path: Path) -> None:
    config = write_config(tmp_path, [{"owner": "big", "title": "Model", "cluster_type": "single-core",
                                      "resources": {"requests": {"cpu": 100, "memory": "1G"},
                                                    "limits": {"cpu": 100, "memory": "1G"}}}])
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "cs_cluster", "apply", "--config", str(config), "--tag", "v1", "--project", "cs-test",
         "--release", RELEASE, "--namespace", kube.namespace, "--values-file", str(tmp_path / "values.yaml"),
         # Past the capacity check, which refuses this model before helm runs (tests/cluster/test_capacity.py),
         # and without rolling back, so the pod is still there to look at.
         "--timeout", "60s", "--skip-capacity-check", "--no-atomic"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env={**kube.env, "CS_HELM": find_helm(4)})
    assert process.stderr is not None
    first_report = None
    lines = []
    for line in process.stderr:
        lines.append(line)
        if "cannot be scheduled" in line and first_report is None:
            first_report = time.monotonic() - started
    assert process.wait(timeout=120) == 1
    finished = time.monotonic() - started
    assert first_report is not None, "".join(lines)
    assert first_report < finished - 20, (first_report, finished)
    message = next(line for line in lines if "cannot be scheduled" in line)
    assert f"{RELEASE}-big-model-sim" in message and "of model big-model" in message
    assert "Insufficient cpu" in message
    # The pod stays Pending: nothing could take it.
    sim = kube.get("pods", "app.kubernetes.io/component=model-sim")
    assert sim and sim[0]["status"]["phase"] == "Pending"


def test_uninstall_keeps_only_what_is_kept_on_purpose(kube: Kube, tmp_path: Path) -> None:
    assert apply(kube, tmp_path).returncode == 0
    kube.helm(4, "uninstall", RELEASE, "--wait", "--timeout", "3m")
    kinds = "deployments,replicasets,services,configmaps,secrets,serviceaccounts,networkpolicies,pdb,pvc,pods"
    deadline = time.monotonic() + 120
    while True:
        left = sorted(f"{o['kind']}/{o['metadata']['name']}"
                      for o in kube.get(kinds, f"app.kubernetes.io/instance={RELEASE}"))
        if not any(name.startswith("Pod/") for name in left) or time.monotonic() > deadline:
            break
        time.sleep(2)
    # The Redis volume (queued work) and the two generated secrets that go with it are kept.
    assert left == [f"PersistentVolumeClaim/{RELEASE}-redis", f"Secret/{RELEASE}-gateway-token",
                    f"Secret/{RELEASE}-redis"]


def secret_data(kube: Kube) -> dict[str, dict[str, str]]:
    """The data of the release's Secrets, by name (base64 as stored)."""
    return {s["metadata"]["name"]: s["data"] for s in kube.get("secrets", f"app.kubernetes.io/instance={RELEASE}")}


def test_generated_and_given_secrets_are_kept_across_upgrades(kube: Kube, tmp_path: Path) -> None:
    """README: the Redis password and the gateway token are generated on install and kept across
    upgrades; the worker Secret is kept by an upgrade that does not give its values again."""
    secrets_file = tmp_path / "worker.secrets.yaml"
    secrets_file.write_text(yaml.safe_dump({"workerSecret": {"values": {
        "COMP_URL": "https://compute.studio", "COMP_API_TOKEN": "token-1", "BUCKET": "bucket-1"}}}))
    values = tmp_path / "values.yaml"
    Cluster(EXAMPLE_CONFIG, tag="v1", project="cs-test", previous=None).write_values(values)
    kube.helm(4, "install", RELEASE, str(CHART), "-f", str(values), "-f", str(secrets_file), "--wait",
              "--timeout", "4m")
    installed = secret_data(kube)
    expected = {f"{RELEASE}-redis", f"{RELEASE}-gateway-token", f"{RELEASE}-worker-secret"}
    assert expected <= set(installed), sorted(installed)
    assert all(installed[name] for name in expected), installed
    # A no-op upgrade through cs-cluster (no secrets file), then a one-model tag bump.
    noop = apply(kube, tmp_path)
    assert noop.returncode == 0, noop.stderr
    assert {name: secret_data(kube)[name] for name in expected} == {name: installed[name] for name in expected}
    bump = apply(kube, tmp_path, "--models", "Celery-Sum", tag="v2")
    assert bump.returncode == 0, bump.stderr
    after = secret_data(kube)
    assert {name: after[name] for name in expected} == {name: installed[name] for name in expected}
    # Both upgrades were real: two more revisions.
    history = yaml.safe_load(kube.helm(4, "history", RELEASE, "-o", "yaml").stdout)
    assert [r["revision"] for r in history] == [1, 2, 3]
