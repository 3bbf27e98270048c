"""The custom resources the chart can render (HTTPRoute, ServiceMonitor) are judged by strict schemas
made from their projects' own CRDs (cs_cluster.crdschemas), pinned and kept in the package."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import REPO, skip_or_fail

from cs_cluster import crdschemas


def module_directory(module: str, version: str) -> Path:
    if not shutil.which("go"):
        skip_or_fail("no Go toolchain: the CRDs come from Go's module cache (ci/install-tools.sh)")
    # GOPROXY=off: from the module cache only, as a test must run offline.
    result = subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"], capture_output=True,
                            text=True, check=False, timeout=300, env={**os.environ, "GOPROXY": "off"})
    if result.returncode != 0:
        skip_or_fail(f"{module}@{version} is not in Go's module cache: run `bash ci/install-tools.sh`")
    return Path(json.loads(result.stdout)["Dir"])


@pytest.mark.parametrize("name", sorted(crdschemas.CRD_SOURCES))
def test_the_kept_schema_is_the_one_its_crd_makes(name: str) -> None:
    module, version, path = crdschemas.CRD_SOURCES[name]
    crd = yaml.safe_load((module_directory(module, version) / path).read_text())
    made = crdschemas.strict_schemas(crd)[name]
    kept = json.loads((crdschemas.DIRECTORY / name).read_text())
    assert kept == json.loads(json.dumps(made)), f"run `python -m cs_cluster.crdschemas {path}` from the module"
    # ci/install-tools.sh fetches the same pinned version, so that this test runs offline.
    assert f"{module}@{version}" in (REPO / "ci" / "install-tools.sh").read_text()


def test_strict_means_no_field_the_api_server_would_drop() -> None:
    crd = {"metadata": {"name": "things.example.org"},
           "spec": {"group": "example.org", "names": {"kind": "Thing"}, "versions": [
               {"name": "v1", "served": True, "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                   "spec": {"type": "object", "properties": {
                       "port": {"x-kubernetes-int-or-string": True},
                       "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                       "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                       "note": {"type": "string", "nullable": True}}}}}}},
               {"name": "v0", "served": False, "schema": {"openAPIV3Schema": {"type": "object"}}}]}}
    schemas = crdschemas.strict_schemas(crd)
    assert list(schemas) == ["thing-example.org-v1.json"]
    import jsonschema

    validator = jsonschema.Draft202012Validator(schemas["thing-example.org-v1.json"])
    good = {"apiVersion": "example.org/v1", "kind": "Thing", "metadata": {"name": "a"},
            "spec": {"port": "http", "free": {"any": 1}, "labels": {"a": "b"}, "note": None}}
    assert list(validator.iter_errors(good)) == []
    assert list(validator.iter_errors({**good, "spec": {"port": 80}})) == []
    for bad in ({**good, "spec": {"prot": 80}}, {**good, "kind": "Other"}, {**good, "spec": {"port": 1.5}},
                {k: v for k, v in good.items() if k != "metadata"}):
        assert list(validator.iter_errors(bad)), bad
