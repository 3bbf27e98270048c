"""On the control plane: the values file `apply` keeps, and upgrades that reuse a release's values.

- `cs-cluster apply` writes its values file only once the release succeeded (issue 10, item 11);
- `helm upgrade --reuse-values` from a release of an older chart that lacks defaults of this one
  fails with the chart's own message, and `--reset-then-reuse-values` (the README's advice)
  upgrades (item 14).
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import CHART, EXAMPLE_CONFIG, REPO, cs_cluster, skip_or_fail
from kube_support import Kube

from cs_cluster import Cluster
from cs_cluster.helm import find_helm
from cs_cluster.schema import value_keys_json

pytestmark = pytest.mark.cluster
RELEASE = "cs"


def missing_keys(old: Any, new: Any, path: str = "") -> list[str]:
    """Keys of the key tree `new` that `old` lacks."""
    if not isinstance(new, dict):
        return []
    found = []
    for key, subtree in new.items():
        where = f"{path}.{key}" if path else key
        if not isinstance(old, dict) or key not in old:
            found.append(where)
        else:
            found += missing_keys(old[key], subtree, where)
    return found


def older_chart_lacking_defaults(tmp_path: Path) -> tuple[Path, list[str]]:
    """The chart at the newest commit whose values.yaml lacks keys this chart's has, and those keys."""
    log = subprocess.run(["git", "-C", str(REPO), "log", "--format=%H", "--", "charts/cs-workers/values.yaml"],
                         capture_output=True, text=True, check=False)
    current = json.loads((CHART / "files" / "value-keys.json").read_text())
    for commit in log.stdout.split():
        shown = subprocess.run(["git", "-C", str(REPO), "show", f"{commit}:charts/cs-workers/values.yaml"],
                               capture_output=True, text=True, check=False)
        if shown.returncode != 0:
            continue
        directory = tmp_path / commit
        directory.mkdir()
        (directory / "values.yaml").write_text(shown.stdout)
        lacking = missing_keys(json.loads(value_keys_json(directory)), current)
        if lacking:
            archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", commit, "charts/cs-workers"],
                                     capture_output=True, check=True)
            with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
                tar.extractall(directory, filter="data")
            return directory / "charts" / "cs-workers", lacking
    skip_or_fail("no commit in this clone has a chart whose defaults lack keys of the current one "
                 "(a shallow clone: fetch more history)")


def images(kube: Kube) -> dict[str, str]:
    return {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["image"]
            for d in kube.get("deployments")}


@pytest.mark.parametrize("major", [3, 4], ids=["helm3", "helm4"])
def test_reuse_values_from_an_older_chart_fails_clearly_and_reset_then_reuse_upgrades(
    kube: Kube, tmp_path: Path, major: int
) -> None:
    old_chart, lacking = older_chart_lacking_defaults(tmp_path)
    values = tmp_path / "values.yaml"
    Cluster(EXAMPLE_CONFIG, tag="v1", project="cs-test", previous=None).write_values(values)
    kube.helm(major, "install", RELEASE, str(old_chart), "-f", str(values), "--wait", "--timeout", "4m")
    bump = ["--set", "models.csexamples-celerysum.image.tag=v2", "--wait", "--timeout", "4m"]

    reused = kube.helm(major, "upgrade", RELEASE, str(CHART), "--reuse-values", *bump, check=False)
    assert reused.returncode != 0
    assert "reflect" not in reused.stderr, reused.stderr
    assert "values lack " in reused.stderr and "--reset-then-reuse-values" in reused.stderr, reused.stderr
    assert any(f"values lack {key}," in reused.stderr for key in lacking), (lacking, reused.stderr)

    before = images(kube)
    upgraded = kube.helm(major, "upgrade", RELEASE, str(CHART), "--reset-then-reuse-values", *bump, check=False)
    assert upgraded.returncode == 0, upgraded.stderr
    after = images(kube)
    assert {name for name in after if after[name] != before.get(name)} == {
        f"{RELEASE}-csexamples-celerysum-io", f"{RELEASE}-csexamples-celerysum-sim"}
    assert after[f"{RELEASE}-csexamples-celerysum-sim"].endswith(":v2")
    # The release now holds this chart's defaults as well as the user's values.
    computed = yaml.safe_load(kube.helm(major, "get", "values", RELEASE, "--all", "-o", "yaml").stdout)
    assert not missing_keys(computed, json.loads((CHART / "files" / "value-keys.json").read_text()))
    assert computed["models"]["csexamples-daskpi"]["image"]["tag"] == "v1"


def test_apply_writes_the_values_file_only_once_the_release_succeeded(kube: Kube, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"

    def apply(config: Path, tag: str) -> subprocess.CompletedProcess[str]:
        # Without the capacity check, whose dry run would find the conflict below before the upgrade.
        return cs_cluster("apply", "--config", config, "--tag", tag, "--project", "cs-test", "--release", RELEASE,
                          "--namespace", kube.namespace, "--values-file", values, "--timeout", "4m",
                          "--skip-capacity-check", env={**kube.env, "CS_HELM": find_helm(4)}, timeout=600)

    first = apply(EXAMPLE_CONFIG, "v1")
    assert first.returncode == 0, first.stderr
    deployed = values.read_bytes()
    # A new model whose Deployment name is taken by an object the release does not own: helm fails.
    config = tmp_path / "worker_config.yaml"
    config.write_text(EXAMPLE_CONFIG.read_text() + "- {owner: cs-tests, title: Blocked}\n")
    kube.kubectl("create", "deployment", f"{RELEASE}-cstests-blocked-io", "--image=registry.k8s.io/pause:3.10")
    failed = apply(config, "v2")
    assert failed.returncode == 1 and "helm failed" in failed.stderr, failed.stderr
    assert values.read_bytes() == deployed
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".values")) == []
    # Once the way is clear, the same apply succeeds and the file names what is deployed.
    kube.kubectl("delete", "deployment", f"{RELEASE}-cstests-blocked-io")
    fixed = apply(config, "v2")
    assert fixed.returncode == 0, fixed.stderr
    tags = {slug: m["image"]["tag"] for slug, m in yaml.safe_load(values.read_text())["models"].items()}
    assert tags == {"csexamples-celerysum": "v2", "csexamples-daskpi": "v2", "cstests-blocked": "v2"}
