"""Publishing (issue 14): `helm package` and `helm push` to an OCI registry (the CNCF distribution
registry, pinned, run here on loopback), then `helm install --dry-run` with Helm 4 and `helm template`
with Helm 3 from `oci://`, and what they render is what the chart directory renders."""

from __future__ import annotations

import os
import socket
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import CHART, model, skip_or_fail, values_with

from cs_cluster.helm import cache_dir, find_helm
from cs_cluster.render import parse_manifests


def registry_binary() -> str:
    for candidate in (os.environ.get("CS_REGISTRY_BINARY"), str(cache_dir() / "bin" / "registry")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    skip_or_fail("the CNCF distribution registry is not built: run `bash ci/install-tools.sh` (needs Go)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A registry of our own on loopback, with its storage in a temporary directory; its address."""
    binary = registry_binary()
    directory = tmp_path_factory.mktemp("registry")
    address = f"127.0.0.1:{free_port()}"
    config = directory / "config.yml"
    config.write_text(yaml.safe_dump({
        "version": 0.1, "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(directory / "data")}},
        "http": {"addr": address},
    }))
    log = (directory / "registry.log").open("w")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://{address}/v2/", timeout=2) as answer:
                    assert answer.status == 200
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the registry did not start: {(directory / 'registry.log').read_text()[-2000:]}")
                time.sleep(0.2)
        yield address
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Helm's config, cache and registry logins in a directory of the test's own."""
    home = tmp_path_factory.mktemp("helm-home")
    return {**os.environ, "HOME": str(home), "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_CACHE_HOME": str(home / "cache"), "HELM_DATA_HOME": str(home / "data"),
            "HELM_REGISTRY_CONFIG": str(home / "registry.json"), "KUBECONFIG": str(home / "no-cluster")}


def helm(major: int, *arguments: str | Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([find_helm(major), *map(str, arguments)], capture_output=True, text=True, check=False,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def published(registry: str, helm_home: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    """The chart packaged and pushed with Helm 4; its oci:// reference."""
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    out = tmp_path_factory.mktemp("package")
    helm(4, "package", CHART, "--destination", out, env=helm_home)
    package = out / f"cs-workers-{version}.tgz"
    with tarfile.open(package) as archive:
        names = set(archive.getnames())
    # What Helm and Artifact Hub read travels with the package.
    assert {f"cs-workers/{name}" for name in ("Chart.yaml", "README.md", "CHANGELOG.md", "values.yaml",
                                              "values.schema.json", "files/value-keys.json")} <= names
    pushed = helm(4, "push", package, f"oci://{registry}/charts", "--plain-http", env=helm_home)
    assert f"Pushed: {registry}/charts/cs-workers:{version}" in pushed.stdout + pushed.stderr
    return f"oci://{registry}/charts/cs-workers"


VALUES = values_with(model("PSLmodels", "Tax-Brain"), model("PSLmodels", "OG-USA", "dask"),
                     redis={"auth": {"existingSecret": "redis-password"}},
                     gateway={"auth": {"existingSecret": "gateway-token"}})


def comparable(manifests: str) -> list[dict]:
    """The objects, without the models' Redis passwords (generated on every render)."""
    return [{**o, "data": dict.fromkeys(o.get("data") or {})} if o["kind"] == "Secret" else o
            for o in parse_manifests(manifests)]


def test_oci_round_trip(published: str, helm_home: dict[str, str], tmp_path: Path) -> None:
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(VALUES))
    local = helm(4, "template", "cs-workers", CHART, "--namespace", "cs", "-f", values, env=helm_home).stdout
    # Helm 3 templates from oci://, Helm 4 installs (dry run, no cluster needed) from it.
    helm3 = helm(3, "template", "cs-workers", published, "--version", version, "--plain-http", "--namespace", "cs",
                 "-f", values, env=helm_home).stdout
    helm4 = helm(4, "install", "cs-workers", published, "--version", version, "--plain-http", "--namespace", "cs",
                 "--dry-run=client", "-f", values, env=helm_home).stdout
    hooks, rest = helm4.split("HOOKS:", 1)[1].split("MANIFEST:", 1)
    manifest, notes = rest.split("NOTES:", 1)
    assert comparable(helm3) == comparable(local)
    # An install puts the `helm test` pods (hooks) apart from the manifest.
    assert sorted(map(repr, comparable(hooks + "\n---\n" + manifest))) == sorted(map(repr, comparable(local)))
    assert f"cs-workers {version} is deployed as release cs-workers in namespace cs." in notes
    # What `helm show` reads from the registry: the README, and Chart.yaml with Artifact Hub's annotations.
    readme = helm(4, "show", "readme", published, "--version", version, "--plain-http", env=helm_home).stdout
    assert readme.strip() == (CHART / "README.md").read_text().strip()
    shown = yaml.safe_load(helm(3, "show", "chart", published, "--version", version, "--plain-http",
                                env=helm_home).stdout)
    assert shown["version"] == version and "artifacthub.io/changes" in shown["annotations"]

