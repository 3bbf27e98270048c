"""Without the k8s-yaml-json helper (a pip install on a machine without Go), manifests are read
with PyYAML: the same objects for what the chart renders, and bad YAML is still one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import EXAMPLE_CONFIG

from cs_cluster import Cluster, manifests
from cs_cluster.errors import ManifestError
from cs_cluster.helm import find_helm


def without_helper(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CS_K8S_YAML_JSON", raising=False)
    monkeypatch.setenv("CS_WORKERS_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("PATH", os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                               if not (Path(p) / manifests.READER).exists()))


def test_both_readers_give_the_same_objects_for_a_render(example_cluster: Cluster, monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    rendered = example_cluster.template()
    assert manifests.find_reader() is not None, "the helper is built by ci/install-tools.sh"
    with_helper = manifests.read_documents(rendered)
    without_helper(monkeypatch, tmp_path)
    assert manifests.find_reader() is None
    assert manifests.read_documents(rendered) == with_helper
    assert len([d for d in with_helper if d]) > 20


def test_bad_yaml_is_one_line_without_the_helper(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    without_helper(monkeypatch, tmp_path)
    with pytest.raises(ManifestError, match=r"^the rendered manifests are not valid YAML: ") as raised:
        manifests.read_documents("a: 1\n---\nb: [unclosed\n")
    assert "\n" not in str(raised.value)


def test_template_works_without_the_helper(tmp_path: Path) -> None:
    env = {**os.environ, "CS_WORKERS_CACHE": str(tmp_path / "empty-cache")}
    env.pop("CS_K8S_YAML_JSON", None)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                  if not (Path(p) / manifests.READER).exists())
    env["CS_HELM"] = find_helm(4)  # found before the cache and PATH were emptied of the helper
    result = subprocess.run([sys.executable, "-m", "cs_cluster", "template", "--config", str(EXAMPLE_CONFIG),
                             "--tag", "v1", "--project", "p"], capture_output=True, text=True, env=env, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert "all valid" in result.stderr and "kind: Deployment" in result.stdout
