"""The images `cs-cluster build` makes, run as the chart runs them (see conftest.py and
docker_support.py): uid 10001, read-only root, the rendered commands, probes and helm test pods,
and a sim of each example model through the gateway to a stand-in webserver."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from docker_support import (
    GATEWAY_TOKEN,
    PROJECT,
    REGISTRY,
    TAG,
    WEBSERVER_PORT,
    WEBSERVER_TOKEN,
    BuiltRelease,
    Container,
    Sandbox,
    chart_redis_image,
    docker,
    image_config,
    wait_for_probes,
)
from helpers import EXAMPLE_CONFIG, REPO, cs_cluster, write_config
from runtime.support import free_port

from cs_cluster.names import model_slug

pytestmark = pytest.mark.images

COMPONENT = "app.kubernetes.io/component"
# Start order: what the others connect to first.
COMPONENTS = ["redis", "gateway", "dask-scheduler", "dask-worker", "model-io", "model-sim"]
EXAMPLE_MODELS = {"celery-sum": ("cs-examples", "Celery-Sum", {"sum": {"a": 40, "b": 2}}, "Sum"),
                  "dask-pi": ("cs-examples", "Dask-Pi", {"pi": {"n_chunks": 4}}, "Estimate of pi")}


def deployments(built: BuiltRelease, component: str | None = None) -> list[dict]:
    return [obj for obj in built.release.objects if obj["kind"] == "Deployment"
            and (component is None or obj["metadata"]["labels"].get(COMPONENT) == component)]


def helm_test_pods(built: BuiltRelease) -> list[dict]:
    return [obj for obj in built.release.objects if obj["kind"] == "Pod"
            and obj["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]


@dataclass
class RunningRelease:
    sandbox: Sandbox
    containers: dict[str, list[Container]]  # by Deployment name
    failures: dict[str, str]  # by container name


@pytest.fixture(scope="module")
def running(built: BuiltRelease, sandbox: Sandbox) -> Iterator[RunningRelease]:
    """One replica of every Deployment of the render, started in dependency order."""
    containers: dict[str, list[Container]] = {}
    failures: dict[str, str] = {}
    for component in COMPONENTS:
        started = []
        for obj in deployments(built, component):
            containers[obj["metadata"]["name"]] = sandbox.run_pod(obj, built.run_image)
            started += containers[obj["metadata"]["name"]]
        failures.update(wait_for_probes(sandbox, started))
    yield RunningRelease(sandbox, containers, failures)


# -- what was built -------------------------------------------------------------------------------

def test_build_made_every_image_the_chart_deploys(built: BuiltRelease) -> None:
    """The images of the render (except the chart's Redis, not ours to build) are in the engine,
    under exactly the names the chart uses."""
    deployed = {image for obj in [*deployments(built), *helm_test_pods(built)] for image in built.images(obj)}
    ours = deployed - {chart_redis_image()}
    assert len(ours) == 3  # the gateway and the two example models
    for image in sorted(ours | {built.runtime_image}):
        assert image_config(image), image
    # Progress names each image with its time: one "build of IMAGE: N s" per image.
    timed = set(re.findall(r"\] build of (\S+): \d+ s", built.build_log))
    assert timed == ours | {built.runtime_image}


@pytest.mark.parametrize("kind", ["runtime", "gateway", "model", "redis"])
def test_images_run_as_the_charts_user_from_a_writable_tmp(built: BuiltRelease, kind: str) -> None:
    by_kind = {"runtime": built.runtime_image, "redis": built.redis_image,
               "gateway": built.images(deployments(built, "gateway")[0])[0],
               "model": built.images(deployments(built, "model-sim")[0])[0]}
    config = image_config(by_kind[kind])
    if kind == "redis" and by_kind[kind] == chart_redis_image():
        pytest.skip("the chart's own Redis image (no stand-in in this engine) runs as the chart says")
    assert config["User"] == "10001:10001"
    environment = dict(item.split("=", 1) for item in config["Env"])
    if kind != "redis":
        assert environment["HOME"] == environment["TMPDIR"] == config["WorkingDir"] == "/tmp"
        assert environment["PYTHONDONTWRITEBYTECODE"] == "1"


def test_the_base_image_is_the_one_asked_for(built: BuiltRelease) -> None:
    """The runtime image was built FROM --base-image (its Python is the base's)."""
    if built.base_image is None:
        pytest.skip("no --base-image: the Dockerfiles' official python:3.11-slim-bookworm")
    version = docker("run", "--rm", "--network", "none", built.base_image, "python3", "-c",
                     "import platform; print(platform.python_version())").stdout.strip()
    runtime = docker("run", "--rm", "--network", "none", "--read-only", "--user", "10001:10001",
                     built.runtime_image, "python", "-c",
                     "import platform; print(platform.python_version())").stdout.strip()
    assert version == runtime and version.startswith("3.11.")


@pytest.mark.parametrize("model", sorted(EXAMPLE_MODELS))
def test_model_image_provides_the_cs_config_interface(built: BuiltRelease, model: str) -> None:
    owner, title, _, _ = EXAMPLE_MODELS[model]
    (obj,) = [o for o in deployments(built, "model-sim")
              if o["metadata"]["labels"].get("compute.studio/model") == model_slug(owner, title)]
    (image,) = built.images(obj)
    check = ("import cs_config.functions as f\n"
             "for name in ('get_version', 'get_inputs', 'validate_inputs', 'run_model'):\n"
             "    assert callable(getattr(f, name)), name\n"
             "print(f.get_version())\n")
    done = docker("run", "--rm", "--network", "none", "--read-only", "--user", "10001:10001", "--tmpfs", "/tmp",
                  image, "python", "-c", check)
    assert done.stdout.strip()


# -- the release, run ------------------------------------------------------------------------------

@pytest.mark.parametrize("component", COMPONENTS)
def test_each_deployment_starts_and_passes_its_probes(running: RunningRelease, built: BuiltRelease,
                                                      component: str) -> None:
    """Each Deployment's container, started with the chart's command, environment and security
    context, stays up and passes its startup, readiness and liveness probes (exec probes run in
    the container, so their commands exist in the image)."""
    names = [obj["metadata"]["name"] for obj in deployments(built, component)]
    assert names
    for name in names:
        for container in running.containers[name]:
            assert container.name not in running.failures, running.failures[container.name]
            assert container.running()


@pytest.mark.parametrize("component", ["redis", "gateway", "dask-scheduler"])
def test_helm_test_pods_pass(running: RunningRelease, built: BuiltRelease, component: str) -> None:
    pods = [obj for obj in helm_test_pods(built) if obj["metadata"]["labels"].get(COMPONENT) == component]
    assert pods
    for obj in pods:
        (container,) = running.sandbox.run_pod(obj, built.run_image)
        code = container.exit_code(timeout=120)
        assert code == 0, f"{obj['metadata']['name']} exited {code}:\n{container.logs()}"


@pytest.fixture(scope="module")
def webserver(running: RunningRelease, built: BuiltRelease) -> Iterator[Container]:
    """cs_cluster's stand-in webserver (standin.py, mounted read-only) on the workers' COMP_URL,
    in a container of the runtime image inside the sandbox."""
    sandbox = running.sandbox
    name = f"{sandbox.name}-webserver"
    env_file = built.release.workdir / "webserver.env"
    descriptor = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(f"COMP_API_TOKEN={WEBSERVER_TOKEN}\n")
    serve = ("import os, sys, time\n"
             "sys.path.insert(0, '/opt/standin')\n"
             "from standin import StandInWebserver, describe\n"
             f"server = StandInWebserver(host='127.0.0.1', port={WEBSERVER_PORT}, "
             "token=os.environ['COMP_API_TOKEN'], on_result=lambda result: print(describe(result), flush=True))\n"
             "server.start()\n"
             "print('listening', flush=True)\n"
             "time.sleep(10**9)\n")
    docker("run", "--detach", "--name", name, "--network", f"container:{sandbox.name}", "--read-only",
           "--user", "10001:10001", "--cap-drop", "ALL", "--env-file", str(env_file),
           "--volume", f"{REPO / 'render' / 'cs_cluster' / 'standin.py'}:/opt/standin/standin.py:ro",
           built.runtime_image, "python", "-c", serve)
    container = Container(name, "webserver", {}, built.runtime_image)
    sandbox.started.append(container)
    deadline = time.monotonic() + 30
    while "listening" not in container.logs() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "listening" in container.logs(), container.logs()
    yield container


@pytest.mark.parametrize("model", sorted(EXAMPLE_MODELS))
def test_a_sim_goes_through_the_gateway_to_the_webserver(running: RunningRelease, webserver: Container,
                                                         built: BuiltRelease, model: str) -> None:
    """POST /<owner>/<title>/sim to the gateway Service, as the webserver does: the model's
    worker (and, for Dask-Pi, its Dask cluster) runs it and PUTs SUCCESS with the outputs."""
    assert not running.failures, running.failures
    owner, title, adjustment, output_title = EXAMPLE_MODELS[model]
    env_file = built.release.workdir / "client.env"
    descriptor = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(f"CS_GATEWAY_TOKEN={GATEWAY_TOKEN}\n")
    submit = ("import json, os, sys, urllib.request\n"
              "request = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), method='POST', headers={\n"
              "    'Authorization': 'Bearer ' + os.environ['CS_GATEWAY_TOKEN'], 'Content-Type': 'application/json'})\n"
              "print(urllib.request.urlopen(request, timeout=30).read().decode())\n")
    url = f"http://cs-workers-gateway:5050/{owner}/{title}/sim"
    body = json.dumps({"meta_param_dict": {}, "adjustment": adjustment})
    done = docker("exec", "--env-file", str(env_file), running.sandbox.name, "python3", "-c", submit, url, body)
    job_id = json.loads(done.stdout)["job_id"]
    deadline = time.monotonic() + 120
    pattern = re.compile(rf"^sim {job_id} (\S+)(.*)$", re.MULTILINE)
    while not pattern.search(webserver.logs(400)) and time.monotonic() < deadline:
        time.sleep(1)
    found = pattern.search(webserver.logs(400))
    assert found, f"no result for {job_id} in 120 s; sim worker log:\n" + "\n".join(
        c.logs() for name, cs in running.containers.items() if name.endswith(f"{model.replace('-', '')}-sim")
        for c in cs)
    assert found[1] == "SUCCESS" and output_title in found[2], found[0]


@pytest.fixture
def git_daemon(tmp_path: Path) -> Iterator[str]:
    """The Celery-Sum example as a git repository (branch main) served by `git daemon` on
    loopback: what images/model/Dockerfile clones, since no public git host is reachable here."""
    repository = tmp_path / "repos" / "celery-sum.git"
    work = tmp_path / "work"
    shutil.copytree(REPO / "examples" / "models" / "celery-sum", work,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    git = ["git", "-c", "user.name=cs", "-c", "user.email=cs@example.invalid", "-c", "init.defaultBranch=main"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "example"]):
        subprocess.run([*git, *command], cwd=work, check=True, capture_output=True)
    subprocess.run([*git, "clone", "-q", "--bare", str(work), str(repository)], check=True, capture_output=True)
    port = free_port()
    daemon = subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={tmp_path / 'repos'}",
                               "--listen=127.0.0.1", f"--port={port}", str(tmp_path / "repos")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["git", "ls-remote", f"git://127.0.0.1:{port}/celery-sum.git"], capture_output=True,
                             check=False).returncode != 0:
            assert time.monotonic() < deadline, "git daemon did not start"
            time.sleep(0.2)
        yield f"git://127.0.0.1:{port}/celery-sum.git"
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


def test_a_model_from_a_git_repository(built: BuiltRelease, git_daemon: str, tmp_path: Path) -> None:
    """images/model/Dockerfile: its git stage installs git with apt (on the official base and on
    the Debian stand-in), clones REPO_URL's BRANCH, and the final image has the model, not git."""
    config = write_config(tmp_path, [{"owner": "cs-tests", "title": "From-Git", "branch": "main",
                                      "repo_url": git_daemon, "cluster_type": "single-core"}])
    values_file = tmp_path / "values.yaml"
    # Host network: the build's clone reaches the daemon on this machine's loopback.
    result = cs_cluster("build", "--config", config, "--tag", TAG, "--project", PROJECT, "--registry", REGISTRY,
                        "--models", "From-Git", "--runtime-image", built.runtime_image, "--network", "host",
                        "--no-push", "--values-file", values_file, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    image = f"{REGISTRY}/{PROJECT}/cstests_fromgit_tasks:{TAG}"
    assert f"build of {image}" in result.stderr
    check = ("import shutil, cs_config.functions as f\n"
             "assert shutil.which('git') is None, 'git is in the final image'\n"
             "print(f.get_version())\n")
    done = docker("run", "--rm", "--network", "none", "--read-only", "--user", "10001:10001", "--tmpfs", "/tmp",
                  image, "python", "-c", check, check=False)
    assert done.returncode == 0, done.stderr
    assert "REPO_URL" not in json.dumps(image_config(image)["Env"])


def test_a_docker_failure_is_one_line_naming_the_image(built: BuiltRelease, tmp_path: Path) -> None:
    result = cs_cluster("build", "--config", EXAMPLE_CONFIG, "--tag", "broken", "--project", PROJECT, "--registry",
                        REGISTRY, "--base-image", "cs-images-test/no-such-base:0", "--no-push", "--values-file",
                        tmp_path / "values.yaml", timeout=600)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == (f"cs-cluster: error: docker build of {REGISTRY}/{PROJECT}/cs-workers-runtime:broken failed "
                    "(exit status 1); docker's output is above")
    assert "Traceback" not in result.stderr and not (tmp_path / "values.yaml").exists()
