"""An apply that leaves the cluster and the files consistent, on the control plane:

- a failed apply goes back to the last good revision (helm 3 --atomic, helm 4
  --rollback-on-failure) unless --no-atomic, and the values file keeps what runs;
- `cs-cluster rollback [REVISION]` rolls the release back and restores the values file and the
  secrets file that revision was applied from, kept in the release's own history;
- `--helm-arg` reaches helm.
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import CHART, EXAMPLE_CONFIG, cs_cluster, write_config
from kube_support import Kube

from cs_cluster import Cluster
from cs_cluster.helm import find_helm

pytestmark = pytest.mark.cluster
RELEASE = "cs"


def example(api_key: str = "one", extra: tuple[dict[str, Any], ...] = ()) -> list[dict[str, Any]]:
    models = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    for entry in models:
        entry["repo_url"] = str(EXAMPLE_CONFIG.parent / entry["repo_url"])
    models[0]["secrets"] = {"API_KEY": api_key}
    return [*models, *extra]


def cli(kube: Kube, tmp_path: Path, *arguments: str | Path, major: int = 4) -> subprocess.CompletedProcess[str]:
    return cs_cluster(*arguments, "--release", RELEASE, "--namespace", kube.namespace,
                      "--values-file", tmp_path / "values.yaml", env={**kube.env, "CS_HELM": find_helm(major)},
                      timeout=600)


def apply(kube: Kube, tmp_path: Path, config: Path, tag: str, *options: str, major: int = 4
          ) -> subprocess.CompletedProcess[str]:
    return cli(kube, tmp_path, "apply", "--config", config, "--tag", tag, "--project", "cs-test", "--timeout", "3m",
               *options, major=major)


def history(kube: Kube, major: int = 4) -> list[dict[str, Any]]:
    return list(yaml.safe_load(kube.helm(major, "history", RELEASE, "-o", "yaml").stdout))


def images(kube: Kube) -> dict[str, str]:
    return {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["image"].rsplit(":", 1)[1]
            for d in kube.get("deployments")}


def files(tmp_path: Path) -> dict[str, bytes]:
    return {name: (tmp_path / name).read_bytes() for name in ("values.yaml", "values.secrets.yaml")
            if (tmp_path / name).exists()}


@pytest.mark.parametrize("major", [3, 4], ids=["helm3", "helm4"])
@pytest.mark.parametrize("atomic", [True, False], ids=["atomic", "no-atomic"])
def test_a_failed_apply_goes_back_to_the_last_good_revision(kube: Kube, tmp_path: Path, major: int,
                                                            atomic: bool) -> None:
    first = apply(kube, tmp_path, write_config(tmp_path, example()), "v1", major=major)
    assert first.returncode == 0, first.stderr
    deployed, running = files(tmp_path), images(kube)
    # A quota of the Deployments there are: the API server refuses a new model's in mid-upgrade,
    # after helm has recorded the new revision (the dry run before it cannot know).
    kube.kubectl("create", "quota", "deployments", f"--hard=count/deployments.apps={len(running)}")
    added = {"owner": "cs-tests", "title": "Added", "cluster_type": "single-core"}
    config = write_config(tmp_path, example("two", (added,)), "next.yaml")
    failed = apply(kube, tmp_path, config, "v2", "--models", "Added", *([] if atomic else ["--no-atomic"]),
                   major=major)
    assert failed.returncode == 1 and "helm failed" in failed.stderr, failed.stderr
    assert files(tmp_path) == deployed
    revisions = history(kube, major)
    assert len(revisions) == (3 if atomic else 2), revisions
    if atomic:
        assert revisions[-1]["status"] == "deployed" and "Rollback to 1" in revisions[-1]["description"]
        assert images(kube) == running
    else:
        assert revisions[-1]["status"] == "failed"


def test_a_conflict_the_dry_run_finds_changes_nothing(kube: Kube, tmp_path: Path) -> None:
    assert apply(kube, tmp_path, write_config(tmp_path, example()), "v1").returncode == 0
    deployed = files(tmp_path)
    kube.kubectl("create", "deployment", f"{RELEASE}-cstests-blocked-io", "--image=registry.k8s.io/pause:3.10")
    blocked = {"owner": "cs-tests", "title": "Blocked", "cluster_type": "single-core"}
    failed = apply(kube, tmp_path, write_config(tmp_path, example("two", (blocked,)), "next.yaml"), "v2")
    assert failed.returncode == 1 and failed.stderr.count("\n") == 1, failed.stderr
    assert "cannot be imported into the current release" in failed.stderr
    assert "in a dry run, before the upgrade: nothing was changed" in failed.stderr
    assert len(history(kube)) == 1 and files(tmp_path) == deployed


def secret_value(kube: Kube) -> str:
    secret = kube.get("secrets", "compute.studio/model=csexamples-celerysum")[0]
    return base64.b64decode(secret["data"]["API_KEY"]).decode()


@pytest.mark.parametrize("major", [3, 4], ids=["helm3", "helm4"])
def test_rollback_restores_the_values_files_of_the_revision(kube: Kube, tmp_path: Path, major: int) -> None:
    assert apply(kube, tmp_path, write_config(tmp_path, example("one")), "v1", major=major).returncode == 0
    first = files(tmp_path)
    bumped = apply(kube, tmp_path, write_config(tmp_path, example("two"), "next.yaml"), "v2", "--models", "Celery-Sum",
                   major=major)
    assert bumped.returncode == 0, bumped.stderr
    second = files(tmp_path)
    assert first != second and set(first) == set(second) == {"values.yaml", "values.secrets.yaml"}

    back = cli(kube, tmp_path, "rollback", major=major)  # the newest earlier revision that ran: 1
    assert back.returncode == 0, back.stderr
    assert f"rolled back release {RELEASE} to revision 1 (now revision 3)" in back.stderr
    assert files(tmp_path) == first
    assert (tmp_path / "values.secrets.yaml").stat().st_mode & 0o777 == 0o600
    assert images(kube)[f"{RELEASE}-csexamples-celerysum-sim"] == "v1" and secret_value(kube) == "one"

    forward = cli(kube, tmp_path, "rollback", "2", major=major)
    assert forward.returncode == 0, forward.stderr
    assert files(tmp_path) == second
    assert images(kube)[f"{RELEASE}-csexamples-celerysum-sim"] == "v2" and secret_value(kube) == "two"
    assert [r["revision"] for r in history(kube, major)] == [1, 2, 3, 4]

    missing = cli(kube, tmp_path, "rollback", "9", major=major)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1, missing.stderr
    assert "has no revision 9" in missing.stderr
    assert files(tmp_path) == second and len(history(kube, major)) == 4


def test_rollback_refuses_a_revision_it_cannot_restore_the_files_of(kube: Kube, tmp_path: Path) -> None:
    values = tmp_path / "plain.yaml"
    Cluster(EXAMPLE_CONFIG, tag="v1", project="cs-test", previous=None).write_values(values)
    kube.helm(4, "install", RELEASE, str(CHART), "-f", str(values), "--wait", "--timeout", "3m")  # revision 1
    assert apply(kube, tmp_path, write_config(tmp_path, example()), "v2").returncode == 0  # 2
    kube.helm(4, "upgrade", RELEASE, str(CHART), "--reset-then-reuse-values", "--wait", "--timeout", "3m",
              "--set", "models.csexamples-daskpi.image.tag=v9")  # 3, by plain helm: its kept file says v2
    kept = files(tmp_path)

    for revision, words in (("1", "revision 1 of release cs holds no values file"),
                            ("3", "ran model csexamples-daskpi with tag v9, but the values file kept with it says v2")):
        refused = cli(kube, tmp_path, "rollback", revision)
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.count("\n") == 1 and words in refused.stderr and "--no-values-file" in refused.stderr
        assert len(history(kube)) == 3 and files(tmp_path) == kept

    alone = cs_cluster("rollback", "1", "--no-values-file", "--release", RELEASE, "--namespace", kube.namespace,
                       env={**kube.env, "CS_HELM": find_helm(4)}, timeout=600)
    assert alone.returncode == 0, alone.stderr
    assert history(kube)[-1]["description"] == "Rollback to 1" and files(tmp_path) == kept


@pytest.mark.parametrize(("arguments", "check"), [
    (["--helm-arg=--description=applied by the test"],
     lambda revisions: revisions[-1]["description"] == "applied by the test"),
    (["--helm-arg=--history-max", "--helm-arg=2"], lambda revisions: [r["revision"] for r in revisions] == [2, 3]),
], ids=["description", "history-max"])
def test_helm_args_reach_helm(kube: Kube, tmp_path: Path, arguments: list[str], check: Any) -> None:
    config = write_config(tmp_path, example())
    for tag in ("v1", "v2", "v3"):
        applied = apply(kube, tmp_path, config, tag, "--no-wait", *arguments)
        assert applied.returncode == 0, applied.stderr
    assert check(history(kube)), history(kube)
