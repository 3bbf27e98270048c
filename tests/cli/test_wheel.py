"""The package where users install it (issue 11): the sdist and the wheel built as a release builds
them (PyPA's `build`), the wheel pip-installed with its real dependencies into a fresh virtual
environment in a temporary directory, and the commands run there from a directory outside the
repository: `--version`, `values`, `template` and `render_chart()` with the chart inside the
package and with one named by `--chart` (a directory, a packaged .tgz, an oci:// reference),
`apply` as far as helm, and `local up` before and after the `local` extra.

The dependencies are real and installed by pip, cached in ~/.cache/cs-workers/wheelhouse (this
machine's PyPI mirror sends nothing pip's own HTTP cache keeps): resolved against PyPI at most a
day ago (`pip download`, which fetches only what the wheelhouse lacks), then installed from there.
"""

from __future__ import annotations

import email.parser
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomllib
import yaml
from helpers import CHART, REPO, model, skip_or_fail, values_with, without_secret_values
from oci_support import helm
from runtime.support import RecordingWebserver, free_port, wait_until

from cs_cluster import Cluster, render_chart
from cs_cluster.helm import cache_dir, find_helm

pytestmark = pytest.mark.slow

WHEELHOUSE = cache_dir() / "wheelhouse"
# How long a resolution against PyPI stands: new releases of the dependencies are tried within a day.
WHEELHOUSE_FRESH_SECONDS = 24 * 3600
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
RUNTIME_PYPROJECT = tomllib.loads((REPO / "images" / "runtime" / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
CHART_META = yaml.safe_load((CHART / "Chart.yaml").read_text())
CONFIG = "examples/worker_config.yaml"  # relative to the work directory, which holds a copy
TOKEN, GATEWAY_TOKEN = "wheel-api-token-71", "wheel-gateway-token-72"


def run(command: Sequence[str | Path], *, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(part) for part in command], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout, check=False)


def succeeded(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{result.args}: exit {result.returncode}\n{result.stderr[-3000:]}"
    return result


@dataclass
class Dist:
    wheel: Path
    sdist: Path
    runtime_wheel: Path

    @property
    def directory(self) -> Path:
        return self.wheel.parent


@dataclass
class Installed:
    """The wheel installed in a virtual environment of its own; commands run in `work`."""

    venv: Path
    work: Path
    env: dict[str, str]
    dist: Dist

    def cs_cluster(self, *arguments: str | Path, env: dict[str, str] | None = None,
                   timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run([self.venv / "bin" / "cs-cluster", *arguments], cwd=self.work, env={**self.env, **(env or {})},
                   timeout=timeout)

    def python(self, code: str) -> subprocess.CompletedProcess[str]:
        return run([self.venv / "bin" / "python", "-c", code], cwd=self.work, env=self.env)

    def pip_install(self, *requirements: str) -> None:
        """Install from the wheelhouse when it was resolved against PyPI within a day and holds
        everything; else resolve against PyPI, download what it lacks, and install from there."""
        pip = [self.venv / "bin" / "python", "-m", "pip", "--disable-pip-version-check"]
        install = [*pip, "install", "--no-index", "--find-links", self.dist.directory, "--find-links", WHEELHOUSE,
                   *requirements]
        stamp = WHEELHOUSE / f".resolved-{sys.version_info.major}.{sys.version_info.minor}"
        fresh = stamp.exists() and time.time() - stamp.stat().st_mtime < WHEELHOUSE_FRESH_SECONDS
        if fresh and run(install, env=self.env).returncode == 0:
            return
        WHEELHOUSE.mkdir(parents=True, exist_ok=True)
        succeeded(run([*pip, "download", "--dest", WHEELHOUSE, "--find-links", self.dist.directory, *requirements],
                      env=self.env))
        for own in WHEELHOUSE.glob("cs_workers*"):  # ours come from this build's dist only
            own.unlink()
        succeeded(run(install, env=self.env))
        stamp.touch()


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    """cs-workers' sdist, and its wheel built from that sdist (as `python -m build` does), and the
    runtime's wheel, from this working tree."""
    if run([sys.executable, "-m", "build", "--version"]).returncode != 0:
        skip_or_fail("PyPA's build is not installed: run `bash ci/setup.sh` (the test extra has it)")
    out = tmp_path_factory.mktemp("dist")
    succeeded(run([sys.executable, "-m", "build", "--outdir", out, REPO]))
    succeeded(run([sys.executable, "-m", "build", "--wheel", "--outdir", out, REPO / "images" / "runtime"]))
    (wheel,) = out.glob("cs_workers-*.whl")
    (sdist,) = out.glob("cs_workers-*.tar.gz")
    (runtime_wheel,) = out.glob("cs_workers_runtime-*.whl")
    return Dist(wheel, sdist, runtime_wheel)


@pytest.fixture(scope="module")
def installed(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("installed")
    assert not root.resolve().is_relative_to(REPO), "the test must run outside the repository"
    venv, work = root / "venv", root / "work"
    succeeded(run([sys.executable, "-m", "venv", venv]))
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    # Copies of the example config and models: nothing is read from the repository.
    shutil.copytree(REPO / "examples", work / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    repo_venv_bin = (REPO / ".venv" / "bin").resolve()
    path = [str(venv / "bin"), *(part for part in os.environ["PATH"].split(os.pathsep)
                                 if part and Path(part).resolve() != repo_venv_bin)]
    env = {key: value for key, value in os.environ.items()
           if key not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "CS_CHART"}}
    env.update(PATH=os.pathsep.join(path), CS_HELM=find_helm())
    result = Installed(venv, work, env, dist)
    result.pip_install(str(dist.wheel))
    return result


def chart_files() -> dict[str, bytes]:
    """The chart as the build sees it: its files in the working tree, less what git ignores."""
    listed = run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", "."], cwd=CHART)
    return {name: (CHART / name).read_bytes() for name in succeeded(listed).stdout.splitlines()
            if (CHART / name).is_file()}


def test_the_wheel_carries_the_chart_and_the_metadata_users_expect(dist: Dist) -> None:
    prefix = "cs_cluster/charts/cs-workers/"
    with zipfile.ZipFile(dist.wheel) as wheel:
        names = set(wheel.namelist())
        packaged = {name[len(prefix):]: wheel.read(name) for name in names if name.startswith(prefix)}
        info = f"cs_workers-{VERSION}.dist-info"
        metadata = email.parser.Parser().parsestr(wheel.read(f"{info}/METADATA").decode())
        license_text = wheel.read(f"{info}/licenses/LICENSE").decode()
    assert packaged == chart_files()  # the chart, whole and unchanged, and nothing else
    assert {"cs_cluster/py.typed", "cs_cluster/chart.py"} <= names
    assert metadata["Version"] == VERSION
    # The license declared is the license shipped, and the chart's own.
    assert metadata["License-Expression"] == "MIT" == CHART_META["annotations"]["artifacthub.io/license"]
    assert license_text.startswith("MIT License\n") and "Permission is hereby granted, free of charge" in license_text
    urls = dict(value.split(", ", 1) for value in metadata.get_all("Project-URL"))
    assert urls == {"Homepage": CHART_META["home"], "Source": CHART_META["sources"][0]}
    assert {"Typing :: Typed", "Programming Language :: Python :: 3"} <= set(metadata.get_all("Classifier"))
    # `local` brings the runtime of this same checkout.
    runtime = f"cs-workers-runtime=={RUNTIME_PYPROJECT['project']['version']}"
    assert any(requirement.startswith(runtime) and 'extra == "local"' in requirement
               for requirement in metadata.get_all("Requires-Dist")), metadata.get_all("Requires-Dist")
    with tarfile.open(dist.sdist) as sdist:
        in_sdist = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"LICENSE", "setup.py", "charts/cs-workers/Chart.yaml", "charts/cs-workers/values.schema.json"} <= in_sdist


def test_version_names_the_package_and_its_chart(installed: Installed) -> None:
    result = succeeded(installed.cs_cluster("--version"))
    packaged = next((installed.venv / "lib").glob("python3*/site-packages/cs_cluster/charts/cs-workers"))
    assert result.stdout == f"cs-cluster {VERSION} (chart cs-workers {CHART_META['version']} at {packaged})\n"


def test_values_and_template_with_the_chart_inside_the_package(installed: Installed) -> None:
    arguments = ["--config", CONFIG, "--tag", "v1", "--project", "wheel"]
    wrote = succeeded(installed.cs_cluster("values", *arguments, "-o", "values/wheel.yaml"))
    assert "wrote values/wheel.yaml" in wrote.stderr
    template = succeeded(installed.cs_cluster("template", *arguments))
    assert template.stderr.strip().endswith("all valid for Kubernetes 1.33, 1.37"), template.stderr
    # What the installed package renders is what this checkout renders for the same config.
    here = Cluster(installed.work / CONFIG, tag="v1", project="wheel", previous=None)
    assert yaml.safe_load((installed.work / "values" / "wheel.yaml").read_text()) == here.values()
    assert without_secret_values(template.stdout) == without_secret_values(here.template())


@pytest.fixture(scope="module")
def marked_chart(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A copy of the chart under a version of its own, so a render shows which chart it came from."""
    copy = tmp_path_factory.mktemp("marked") / "cs-workers"
    shutil.copytree(CHART, copy, ignore=shutil.ignore_patterns("charts", "*.tgz"))
    version = f"{CHART_META['version']}-wheel.1"
    meta = copy / "Chart.yaml"
    meta.write_text(meta.read_text().replace(f"\nversion: {CHART_META['version']}\n", f"\nversion: {version}\n"))
    assert yaml.safe_load(meta.read_text())["version"] == version
    return copy, version


@pytest.mark.parametrize("form", ["directory", "package", "oci"])
def test_a_chart_given_by_option(installed: Installed, marked_chart: tuple[Path, str], form: str,
                                 oci_registry: str, helm_home: dict[str, str], tmp_path: Path) -> None:
    copy, version = marked_chart
    chart: list[str | Path] = ["--chart", copy]
    env: dict[str, str] = {}
    if form in {"package", "oci"}:
        helm(4, "package", copy, "--destination", tmp_path, env=helm_home)
        chart = ["--chart", tmp_path / f"cs-workers-{version}.tgz"]
    if form == "oci":
        helm(4, "push", tmp_path / f"cs-workers-{version}.tgz", f"oci://{oci_registry}/charts", "--plain-http",
             env=helm_home)
        chart = ["--chart", f"oci://{oci_registry}/charts/cs-workers", "--chart-version", version, "--plain-http"]
        env = {key: helm_home[key] for key in helm_home if key.startswith("HELM_")}
    arguments = ["--config", CONFIG, "--tag", "v1", "--project", "wheel", *chart]
    succeeded(installed.cs_cluster("values", *arguments, "-o", f"values/{form}.yaml", env=env))
    template = succeeded(installed.cs_cluster("template", *arguments, env=env))
    labels = [obj["metadata"].get("labels") or {} for obj in without_secret_values(template.stdout)]
    assert {label["helm.sh/chart"] for label in labels if "helm.sh/chart" in label} == {f"cs-workers-{version}"}


def test_render_chart_in_the_installed_package(installed: Installed) -> None:
    values = values_with(model("PSLmodels", "OG-USA", "dask", replicas=3))
    code = f"""
import json, cs_cluster
from cs_cluster import render_chart
from cs_cluster.chart import default_chart
chart = render_chart({values!r})
worker = chart.one("Deployment", component="dask-worker", model="pslmodels-ogusa")
print(json.dumps({{"module": cs_cluster.__file__, "chart": str(default_chart()),
                  "objects": len(chart), "replicas": worker["spec"]["replicas"]}}))
"""
    found: dict[str, Any] = json.loads(succeeded(installed.python(code)).stdout)
    assert Path(found["module"]).is_relative_to(installed.venv) and Path(found["chart"]).is_relative_to(installed.venv)
    assert found["replicas"] == 3
    assert found["objects"] == len(render_chart(values))


KUBECONFIGS = {
    "not-yaml": "clusters: [",
    "unreachable": yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "nowhere",
        "clusters": [{"name": "nowhere", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "nobody", "user": {"token": "none"}}],
        "contexts": [{"name": "nowhere", "context": {"cluster": "nowhere", "user": "nobody"}}]}),
}


@pytest.mark.parametrize("kubeconfig", KUBECONFIGS, ids=KUBECONFIGS.keys())
@pytest.mark.parametrize("capacity_check", [True, False], ids=["capacity-check", "skip-capacity-check"])
def test_apply_gets_as_far_as_helm(installed: Installed, kubeconfig: str, capacity_check: bool,
                                   tmp_path: Path) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(KUBECONFIGS[kubeconfig])
    values_file = tmp_path / "applied.yaml"
    result = installed.cs_cluster("apply", "--config", CONFIG, "--tag", "v1", "--project", "wheel",
                                  "--values-file", values_file, *([] if capacity_check else ["--skip-capacity-check"]),
                                  env={"KUBECONFIG": str(config)})
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("cs-cluster: error: helm"), result.stderr
    if capacity_check:  # the capacity check asks helm about the release first: one line, with helm's reason
        assert result.stderr.strip() == last and "kubernetes cluster unreachable" in last, result.stderr
    else:  # helm upgrade itself ran, with the chart inside the package, its output streamed above our line
        assert "upgrade --install cs-workers " + str(installed.venv) in result.stderr
        assert "\nError: kubernetes cluster unreachable" in result.stderr
    assert not values_file.exists(), "a failed apply wrote its values file"


def test_local_up_says_what_to_install_then_runs_with_the_local_extra(installed: Installed,
                                                                       webserver: RecordingWebserver) -> None:
    port = free_port()
    arguments = ["local", "up", "--config", CONFIG, "--port", str(port), "--comp-url", webserver.url,
                 "--comp-api-token", TOKEN, "--gateway-token", GATEWAY_TOKEN]
    if succeeded(installed.python("import sys; print(sys.version_info >= (3, 11))")).stdout.strip() != "True":
        pytest.skip("the runtime needs Python 3.11")
    refused = installed.cs_cluster(*arguments)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "pip install 'cs-workers[local]'" in refused.stderr

    installed.pip_install(f"{installed.dist.wheel}[local]")
    with LocalUp(installed, arguments) as ready:
        assert f"http://127.0.0.1:{port}" in ready
        for title, adjustment, expected in (("Celery-Sum", {"sum": {"a": 40, "b": 2}}, "42"),
                                            ("Dask-Pi", {"pi": {"n_chunks": 4}}, "3.1")):
            job_id = submit(port, title, adjustment)
            put = webserver.put_for(job_id, timeout=120)
            assert put.body["status"] == "SUCCESS", put.body
            assert expected in json.dumps(put.body["outputs"]), put.body


def submit(port: int, title: str, adjustment: dict[str, Any]) -> str:
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/cs-examples/{title}/sim", method="POST",
        data=json.dumps({"meta_param_dict": {}, "adjustment": adjustment}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {GATEWAY_TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback only
        return str(json.loads(answer.read())["job_id"])


class LocalUp:
    """`cs-cluster local up` from the installed package, until its `ready` line (its output is
    read by a thread, so a hang fails the test); stopped with SIGINT (Ctrl-C), which must end it
    cleanly."""

    def __init__(self, installed: Installed, arguments: Sequence[str]) -> None:
        self.process = subprocess.Popen([str(installed.venv / "bin" / "cs-cluster"), *arguments], cwd=installed.work,
                                        env=installed.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.output: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

    def __enter__(self) -> str:
        def ready() -> str | None:
            if self.process.poll() is not None and not self.reader.is_alive():
                pytest.fail("local up ended before it was ready:\n" + "".join(self.output[-20:]))
            return next((line for line in self.output if line.startswith("ready:")), None)

        try:
            return wait_until(ready, timeout=300, what="local up's ready line", interval=0.2)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.process.kill()  # its processes' groups were ended by its own handler, or never started
            raise
        finally:
            self.reader.join(timeout=10)

    def __exit__(self, *_: object) -> None:
        code = self.stop()
        assert code == 0, f"local up exited {code} on SIGINT:\n" + "".join(self.output[-20:])
