"""An OCI registry for charts, run here: the CNCF distribution registry (built by
ci/install-tools.sh) on loopback, with its storage in a directory of the test's own, and helm
with a home of its own. The fixtures over these are in conftest.py (oci_registry, helm_home,
published_chart); tests/chart/test_publish.py and tests/cli/test_wheel.py use them."""

from __future__ import annotations

import os
import socket
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from helpers import CHART, skip_or_fail

from cs_cluster.helm import cache_dir, find_helm


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


@contextmanager
def running_registry(directory: Path) -> Iterator[str]:
    """A registry of our own on loopback, storing under `directory`; its address (HOST:PORT)."""
    binary = registry_binary()
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


def helm_environment(home: Path) -> dict[str, str]:
    """Helm's config, cache and registry logins in `home`, and no cluster."""
    return {**os.environ, "HOME": str(home), "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_CACHE_HOME": str(home / "cache"), "HELM_DATA_HOME": str(home / "data"),
            "HELM_REGISTRY_CONFIG": str(home / "registry.json"), "KUBECONFIG": str(home / "no-cluster")}


def helm(major: int, *arguments: str | Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([find_helm(major), *map(str, arguments)], capture_output=True, text=True, check=False,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def chart_version() -> str:
    return str(yaml.safe_load((CHART / "Chart.yaml").read_text())["version"])


def publish_chart(registry: str, env: dict[str, str], out: Path) -> str:
    """The chart packaged and pushed with Helm 4, as a release publishes it; its oci:// reference."""
    version = chart_version()
    helm(4, "package", CHART, "--destination", out, env=env)
    package = out / f"cs-workers-{version}.tgz"
    with tarfile.open(package) as archive:
        names = set(archive.getnames())
    # What Helm and Artifact Hub read travels with the package.
    assert {f"cs-workers/{name}" for name in ("Chart.yaml", "README.md", "CHANGELOG.md", "values.yaml",
                                              "values.schema.json", "files/value-keys.json")} <= names
    pushed = helm(4, "push", package, f"oci://{registry}/charts", "--plain-http", env=env)
    assert f"Pushed: {registry}/charts/cs-workers:{version}" in pushed.stdout + pushed.stderr
    return f"oci://{registry}/charts/cs-workers"
