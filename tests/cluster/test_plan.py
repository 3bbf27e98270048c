"""`cs-cluster plan` against a live release on the control plane, each prediction then checked
by applying the same change: the Deployments the plan says roll are exactly those that get a new
ReplicaSet, and the plan itself changes nothing (no revision, no file, no ReplicaSet)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import CHART, EXAMPLE_CONFIG, cs_cluster, write_config
from kube_support import Kube

from cs_cluster.helm import find_helm

pytestmark = pytest.mark.cluster
RELEASE = "cs"


def example_with(changes: dict[str, dict[str, Any]], removed: tuple[str, ...] = (),
                 added: tuple[dict[str, Any], ...] = ()) -> list[dict[str, Any]]:
    """The example config, each model's entry updated by `changes[title]`."""
    models = [m for m in yaml.safe_load(EXAMPLE_CONFIG.read_text()) if m["title"] not in removed]
    for entry in models:
        entry["repo_url"] = str(EXAMPLE_CONFIG.parent / entry["repo_url"])
        entry.update(changes.get(entry["title"], {}))
    return [*models, *added]


def command(kube: Kube, tmp_path: Path, name: str, config: Path, tag: str, *options: str,
            major: int = 4) -> subprocess.CompletedProcess[str]:
    return cs_cluster(name, "--config", config, "--tag", tag, "--project", "cs-test", "--release", RELEASE,
                      "--namespace", kube.namespace, "--values-file", tmp_path / "values.yaml", *options,
                      env={**kube.env, "CS_HELM": find_helm(major)}, timeout=600)


def replica_sets(kube: Kube) -> dict[str, set[str]]:
    owned: dict[str, set[str]] = {}
    for replica_set in kube.get("replicasets"):
        owned.setdefault(replica_set["metadata"]["ownerReferences"][0]["name"], set()).add(
            replica_set["metadata"]["name"])
    return owned


def revisions(kube: Kube, major: int) -> list[int]:
    return [r["revision"] for r in yaml.safe_load(kube.helm(major, "history", RELEASE, "-o", "yaml").stdout)]


ADDED = {"owner": "cs-tests", "title": "Added", "cluster_type": "single-core"}
CASES: dict[str, dict[str, Any]] = {
    "no-op": dict(config=example_with({}), code=0, lines=[], rolls=set()),
    "one-model tag bump": dict(
        config=example_with({}), options=["--models", "Celery-Sum"], tag="v2", code=2,
        lines=["~ cs-examples/Celery-Sum: pods roll (model-io, model-sim): image tag v1 -> v2"],
        rolls={"cs-csexamples-celerysum-io", "cs-csexamples-celerysum-sim"}),
    "resources": dict(
        config=example_with({"Celery-Sum": {"resources": {"requests": {"cpu": 1, "memory": "256M"},
                                                          "limits": {"cpu": 1, "memory": "1G"}}}}), code=2,
        lines=["~ cs-examples/Celery-Sum: pods roll (model-sim): model-sim limits.memory 512M -> 1G; "
               "model-sim requests.cpu 500m -> 1"],
        rolls={"cs-csexamples-celerysum-sim"}),
    "replicas only": dict(
        config=example_with({"Dask-Pi": {"replicas": 3}}), code=2,
        lines=["~ cs-examples/Dask-Pi: no pods roll: dask-worker replicas 2 -> 3"], rolls=set()),
    "placement": dict(
        config=example_with({"Celery-Sum": {"affinity": {"size": ["small", "medium"]}}}), code=2,
        lines=["~ cs-examples/Celery-Sum: pods roll (model-sim): model-sim placement any node -> "
               "size in (small, medium)"],
        rolls={"cs-csexamples-celerysum-sim"}),
    "a model added, one removed": dict(
        config=example_with({}, removed=("Dask-Pi",), added=(ADDED,)), options=["--models", "Added"], code=2,
        lines=["- cs-examples/Dask-Pi: destroy (dask-scheduler, dask-worker, model-io, model-sim)",
               "+ cs-tests/Added: create (model-io, model-sim)",
               "- dask-scheduler (shared): destroy", "- dask-worker (shared): destroy",
               "~ gateway (shared): no pods roll: ConfigMap/cs-gateway-routes routes.json changed",
               "~ redis (shared): no pods roll: secret cs-redis-users key csexamples_daskpi removed; "
               "secret cs-redis-users key cstests_added added"],
        rolls=set()),
}


@pytest.mark.parametrize(("case", "major"), [*[(case, 4) for case in CASES], ("one-model tag bump", 3)],
                         ids=[*CASES, "one-model tag bump, helm3"])
def test_plan_predicts_the_apply(kube: Kube, tmp_path: Path, case: str, major: int) -> None:
    spec = CASES[case]
    installed = command(kube, tmp_path, "apply", write_config(tmp_path, example_with({}), "first.yaml"), "v1",
                        major=major)
    assert installed.returncode == 0, installed.stderr
    config = write_config(tmp_path, spec["config"], "next.yaml")
    options, tag = spec.get("options", []), spec.get("tag", "v1")
    before = (revisions(kube, major), (tmp_path / "values.yaml").read_bytes(), replica_sets(kube))

    text = command(kube, tmp_path, "plan", config, tag, *options, major=major)
    assert text.returncode == spec["code"], text.stderr
    lines = text.stdout.splitlines()
    chart_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    assert lines[0] == f"Comparing with release {RELEASE} revision 1 (deployed, cs-workers-{chart_version}) in " \
                       f"namespace {kube.namespace}."
    assert [line for line in lines if line[:2] in ("~ ", "+ ", "- ")] == spec["lines"]
    assert lines[-1].startswith("No changes" if spec["code"] == 0 else "Plan: "), lines[-1]
    assert not [line for line in lines if line.startswith("! ")], text.stdout
    as_json = command(kube, tmp_path, "plan", config, tag, *options, "--output", "json", major=major)
    assert as_json.returncode == spec["code"], as_json.stderr
    found = json.loads(as_json.stdout)
    predicted = {name.split("/", 1)[1] for part in found["models"] + found["shared"]
                 for name in part["rolling_workloads"]}
    assert predicted == spec["rolls"]
    assert found["capacity"]["checked"] is True and found["capacity"]["findings"] == []
    # The plans changed nothing.
    assert (revisions(kube, major), (tmp_path / "values.yaml").read_bytes(), replica_sets(kube)) == before

    applied = command(kube, tmp_path, "apply", config, tag, *options, major=major)
    assert applied.returncode == 0, applied.stderr
    after = replica_sets(kube)
    rolled = {name for name in before[2] if after.get(name, set()) - before[2][name]}
    assert rolled == spec["rolls"]
    # Once applied, the same plan has nothing left to do.
    again = command(kube, tmp_path, "plan", config, tag, *options, major=major)
    assert again.returncode == 0, again.stdout + again.stderr
