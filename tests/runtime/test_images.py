"""The Dockerfiles' text (tests/images builds and runs them where a Docker engine is) and the
packaging of the runtime and the example models (real wheels are built)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import requests
import tomllib
import yaml
from helpers import skip_or_fail

from .support import CELERY_SUM_CONFIG, DASK_PI_CONFIG, REPO

IMAGES = REPO / "images"
DOCKERFILES = {
    "runtime": IMAGES / "runtime" / "Dockerfile",
    "gateway": IMAGES / "gateway" / "Dockerfile",
    "model": IMAGES / "model" / "Dockerfile",
    "model-local": IMAGES / "model" / "local.Dockerfile",
}
# Every Dockerfile of the repository, the ci/ stand-ins included.
ALL_DOCKERFILES = sorted({*DOCKERFILES.values(), *REPO.glob("ci/**/*Dockerfile")})


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def runtime_dependencies() -> list[str]:
    pyproject = tomllib.loads((IMAGES / "runtime" / "pyproject.toml").read_text())
    return list(pyproject["project"]["dependencies"])


def environment(path: Path) -> dict[str, str]:
    """The ENV instructions of a Dockerfile, as one mapping."""
    env: dict[str, str] = {}
    for op, args in instructions(path):
        if op == "ENV":
            for word in shlex.split(args):
                name, _, value = word.partition("=")
                env[name] = value
    return env


def chart_pod_security_context() -> dict[str, Any]:
    values = yaml.safe_load((REPO / "charts" / "cs-workers" / "values.yaml").read_text())
    return dict(values["podSecurityContext"])


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_images_end_as_the_charts_non_root_uid(image: str) -> None:
    context = chart_pod_security_context()
    assert (context["runAsUser"], context["runAsGroup"]) == (10001, 10001)
    users = [args for op, args in instructions(DOCKERFILES[image]) if op == "USER"]
    assert users and users[-1] == "10001:10001"


@pytest.mark.parametrize("path", ALL_DOCKERFILES, ids=lambda path: str(path.relative_to(REPO)))
def test_no_dockerfile_needs_a_download_of_build_tooling(path: Path) -> None:
    """A `# syntax=` line makes BuildKit fetch a frontend image from a registry; the legacy
    builder (what runs where no registry is reachable) and BuildKit both build without it."""
    assert not re.search(r"^#\s*syntax\s*=", path.read_text(), re.IGNORECASE | re.MULTILINE)


@pytest.mark.parametrize("image", ["runtime", "gateway"])
def test_base_image_is_a_build_argument_defaulting_to_the_official_image(image: str) -> None:
    steps = instructions(DOCKERFILES[image])
    first_from = next(i for i, (op, _) in enumerate(steps) if op == "FROM")
    assert ("ARG", "BASE_IMAGE=python:3.11-slim-bookworm") in steps[:first_from]
    assert [args for op, args in steps if op == "FROM"] == ["${BASE_IMAGE}"]


@pytest.mark.parametrize("image", ["runtime", "gateway"])
def test_home_and_working_directory_are_the_writable_tmp(image: str) -> None:
    """The chart mounts the root file system read-only with an emptyDir at /tmp."""
    steps = instructions(DOCKERFILES[image])
    env = environment(DOCKERFILES[image])
    assert env["HOME"] == env["TMPDIR"] == "/tmp"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert [args for op, args in steps if op == "WORKDIR"][-1] == "/tmp"
    (user,) = [args for op, args in steps if op == "RUN" and "useradd" in args]
    assert "--uid 10001" in user and "--gid 10001" in user and "--home-dir /tmp" in user
    assert "--create-home" not in user


def test_model_images_keep_the_runtime_users_and_directories() -> None:
    steps = instructions(DOCKERFILES["model"])
    final_stage = steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM") :]
    assert not any(op == "WORKDIR" for op, _ in final_stage)
    assert not {"HOME", "TMPDIR"} & set(environment(DOCKERFILES["model"]))


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_no_secrets_in_layers(image: str) -> None:
    for op, args in instructions(DOCKERFILES[image]):
        if op in ("ENV", "ARG", "LABEL"):
            assert not re.search(r"TOKEN|PASSWORD|SECRET", args, re.IGNORECASE), (op, args)


def test_gateway_installs_the_runtime_dependencies_minus_dask() -> None:
    runs = [args for op, args in instructions(DOCKERFILES["gateway"]) if op == "RUN"]
    (install,) = [run for run in runs if run.startswith('pip install "')]
    assert shlex.split(install)[2:] == [dep for dep in runtime_dependencies() if not dep.startswith("dask")]
    assert any("pip install --no-deps" in run for run in runs)


def test_gateway_command_is_the_contracts() -> None:
    (cmd,) = [args for op, args in instructions(DOCKERFILES["gateway"]) if op == "CMD"]
    contract = (REPO / "docs" / "runtime-contract.md").read_text()
    (documented,) = re.findall(r"Gateway: `([^`]+)`", contract)
    assert json.loads(cmd) == shlex.split(documented)


def test_model_image_build_args_and_cache_busting() -> None:
    steps = instructions(DOCKERFILES["model"])
    args = {a.split("=")[0] for op, a in steps if op == "ARG"}
    assert {
        "RUNTIME_IMAGE",
        "OWNER",
        "TITLE",
        "BRANCH",
        "REPO_URL",
        "SIM_TIME_LIMIT",
        "BUILD_NUM",
        "INSTALL_NUM",
    } <= args
    froms = [a for op, a in steps if op == "FROM"]
    assert froms[-1] == "${RUNTIME_IMAGE}" and all(f.startswith("${RUNTIME_IMAGE}") for f in froms)
    runs = [a for op, a in steps if op == "RUN"]
    assert any(
        "git clone" in run and "${BRANCH}" in run and "${REPO_URL}" in run and "${BUILD_NUM}" in run for run in runs
    )
    (install,) = [run for run in runs if "pip install /opt/model/cs-config" in run]
    assert "${BUILD_NUM}" in install and "${INSTALL_NUM}" in install
    final_stage = steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM") :]
    assert not any("REPO_URL" in a for op, a in final_stage if op in ("RUN", "ENV", "ARG"))


def build_wheel(project: Path, tmp_path: Path) -> zipfile.ZipFile:
    """A real wheel, built as `pip install` builds one (setuptools from the package index),
    from a copy so that no build/ or *.egg-info lands in the source tree."""
    source, out = tmp_path / "source", tmp_path / "wheels"
    shutil.copytree(project, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    (wheel,) = out.glob("*.whl")
    return zipfile.ZipFile(wheel)


@pytest.mark.slow
@pytest.mark.parametrize("config", [CELERY_SUM_CONFIG, DASK_PI_CONFIG], ids=["celery-sum", "dask-pi"])
def test_example_models_install_as_cs_config(config: Path, tmp_path: Path) -> None:
    wheel = build_wheel(config, tmp_path)
    assert Path(wheel.filename or "").name.startswith("cs_config-1.0.0-")
    assert {"cs_config/__init__.py", "cs_config/functions.py"} <= set(wheel.namelist())


@pytest.mark.slow
def test_runtime_package_builds(tmp_path: Path) -> None:
    wheel = build_wheel(IMAGES / "runtime", tmp_path)
    names = set(wheel.namelist())
    assert Path(wheel.filename or "").name.startswith("cs_workers_runtime-")
    assert {
        "cs_runtime/py.typed",
        "cs_runtime/gateway.py",
        "cs_runtime/worker.py",
        "cs_runtime/dask_runner.py",
    } <= names


# -- nothing is written outside /tmp at run time --------------------------------------------------

# System calls that change the file system; open/openat/creat count when they ask for writing.
WRITING_SYSCALLS = frozenset(
    {
        "creat", "mkdir", "mkdirat", "rmdir", "unlink", "unlinkat", "rename", "renameat", "renameat2",
        "link", "linkat", "symlink", "symlinkat", "chmod", "fchmodat", "chown", "lchown", "fchownat",
        "utime", "utimes", "utimensat", "futimesat", "truncate", "mknod", "mknodat",
        "setxattr", "lsetxattr", "removexattr", "lremovexattr",
    }
)  # fmt: skip
OPEN_SYSCALLS = frozenset({"open", "openat", "openat2"})
WRITE_FLAGS = re.compile(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC")
# One line of `strace -ff` output (one file per process, so no interleaved calls).
STRACE_LINE = re.compile(r"^(\w+)\((.*)\) += (-?\d+)")
# Writable in any container whatever the root file system: /dev is a tmpfs of its own
# (/dev/null, /dev/shm for the pool's semaphores), /proc and /sys are not files on disk.
ALWAYS_WRITABLE = ("/dev/", "/proc/", "/sys/")


def writes_outside(trace: Path, allowed: Path) -> list[str]:
    """Every system call in `trace` (strace -ff -y output of one process) that wrote outside
    `allowed`. Failed calls wrote nothing: libraries probe paths and fall back (libuuid tries
    /var/lib/libuuid/clock.txt, which the images do not have, as they would on a read-only root)."""
    outside = []
    for line in trace.read_text(errors="replace").splitlines():
        match = STRACE_LINE.match(line)
        if not match or match[3] == "-1":
            continue
        syscall, args = match[1], match[2]
        if syscall in OPEN_SYSCALLS:
            writes = bool(WRITE_FLAGS.search(args))
        elif syscall == "bind":
            writes = "sun_path=" in args  # a Unix socket is a file
        else:
            writes = syscall in WRITING_SYSCALLS
        if not writes:
            continue
        # With -y a descriptor argument shows its path (`3</dir>`); relative paths of the *at calls
        # start there, others at the working directory (`allowed`, as /tmp is in the images).
        descriptor = re.match(r"\d+<([^>]*)>", args)
        base = Path(descriptor[1]) if descriptor and descriptor[1].startswith("/") else allowed
        paths = [base / path for path in re.findall(r'"([^"]*)"', args)]
        if not paths and descriptor and descriptor[1].startswith("/"):
            paths = [base]  # futimens, fchmod...: the descriptor's own file
        for full in paths:
            if not (full == allowed or allowed in full.parents or str(full).startswith(ALWAYS_WRITABLE)):
                outside.append(f"{syscall}: {full}  ({line.strip()[:200]})")
    return outside


def test_writes_outside_reads_strace_output(tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    trace.write_text(
        'openat(AT_FDCWD</tmp>, "/tmp/beat", O_WRONLY|O_CREAT|O_NOCTTY|O_NONBLOCK|O_CLOEXEC, 0666) = 3</tmp/beat>\n'
        'openat(AT_FDCWD</tmp>, "/usr/lib/x.so", O_RDONLY|O_CLOEXEC) = 3</usr/lib/x.so>\n'
        'openat(AT_FDCWD</tmp>, "/home/cs/.cache/x", O_RDWR|O_CREAT, 0600) = 4</home/cs/.cache/x>\n'
        'openat(AT_FDCWD</tmp>, "/var/lib/libuuid/clock.txt", O_RDWR|O_CREAT, 0660) = -1 ENOENT (No such file)\n'
        'mkdir("relative", 0700) = 0\n'
        'mkdirat(5</opt/app>, "cache", 0700) = 0\n'
        "utimensat(6</etc/passwd>, NULL, NULL, 0) = 0\n"
        'bind(7<socket:[1]>, {sa_family=AF_UNIX, sun_path="/run/x.sock"}, 13) = 0\n'
        "bind(7<socket:[2]>, {sa_family=AF_INET, sin_port=htons(80)}, 16) = 0\n"
        'openat(AT_FDCWD</tmp>, "/dev/shm/sem.x", O_RDWR|O_CREAT|O_EXCL, 0600) = 8</dev/shm/sem.x>\n'
    )
    found = [line.split("  (")[0] for line in writes_outside(trace, Path("/tmp"))]
    assert found == [
        "openat: /home/cs/.cache/x", "mkdirat: /opt/app/cache", "utimensat: /etc/passwd", "bind: /run/x.sock",
    ]  # fmt: skip


def strace_works() -> bool:
    """strace is installed and may trace here (containers often forbid ptrace)."""
    if shutil.which("strace") is None:
        return False
    done = subprocess.run(["strace", "-f", "-qq", "-o", os.devnull, "true"], capture_output=True, timeout=30)
    return done.returncode == 0


@pytest.mark.slow
def test_the_runtime_processes_write_only_under_tmp(redis_server: Any, webserver: Any, tmp_path: Path) -> None:
    """The chart's gateway, Celery sim worker, Dask scheduler and worker, and probe, run with the
    images' ENV (HOME=TMPDIR=/tmp, here a stand-in directory that is also the working directory),
    traced with strace while a Celery and a Dask sim go through: every file they write is there."""
    if not strace_works():
        skip_or_fail("strace is not installed or may not trace (ptrace) here (ci/install-tools.sh installs it)")
    from cs_runtime.names import ModelNames

    from .support import DASK_PI_CONFIG, free_port, route_entry, wait_until, worker_command, worker_env, write_routes

    fake_tmp = tmp_path / "tmp"
    fake_tmp.mkdir()
    traces = tmp_path / "traces"
    traces.mkdir()
    image_env = {name: str(fake_tmp) if value == "/tmp" else value
                 for name, value in environment(DOCKERFILES["runtime"]).items()}  # fmt: skip
    celery_model, dask_model = ModelNames("cs-tests", "Readonly"), ModelNames("cs-tests", "Readonly-Dask")
    routes = write_routes(tmp_path / "routes.json", route_entry(celery_model), route_entry(dask_model, "dask"))
    scheduler_port, gateway_port = free_port(), free_port()
    scheduler = f"tcp://127.0.0.1:{scheduler_port}"
    heartbeat = str(fake_tmp / "cs-worker-heartbeat")
    celery_env = worker_env(celery_model, "sim", "celery", CELERY_SUM_CONFIG, redis_server, COMP_URL=webserver.url,
                            CS_HEARTBEAT_FILE=heartbeat, **image_env)  # fmt: skip
    dask_env = worker_env(dask_model, "sim", "dask", DASK_PI_CONFIG, redis_server, COMP_URL=webserver.url,
                          DASK_SCHEDULER_ADDRESS=scheduler, CS_HEARTBEAT_FILE=heartbeat, **image_env)  # fmt: skip
    gateway_env = {**redis_server.env(), "PATH": os.environ["PATH"], "CS_ROUTING_TABLE": str(routes), **image_env}
    bin_dir = Path(sys.executable).parent
    commands = {
        "gateway": ([sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{gateway_port}", "--workers", "2",
                     "--access-logfile", "-", "cs_runtime.gateway:create_app()"], gateway_env),
        "dask-scheduler": ([str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(scheduler_port),
                            "--dashboard-address", "127.0.0.1:0"], dask_env),
        "dask-worker": ([str(bin_dir / "dask"), "worker", scheduler, "--host", "127.0.0.1", "--nthreads", "1",
                         "--memory-limit", "1G", "--name", "readonly-dask-worker-0", "--dashboard-address",
                         "127.0.0.1:0", "--local-directory", str(fake_tmp)], dask_env),
        "sim": (worker_command(celery_model, "sim"), celery_env),
        "dask-sim": (worker_command(dask_model, "sim"), dask_env),
    }  # fmt: skip
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, (command, env) in commands.items():
            strace = ["strace", "-ff", "-qq", "-y", "--seccomp-bpf", "-e", "trace=%file,bind",
                      "-o", str(traces / name)]  # fmt: skip
            with (tmp_path / f"{name}.log").open("wb") as log:
                processes[name] = subprocess.Popen(strace + command, env=env, cwd=fake_tmp, stdout=log,
                                                   stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        base = f"http://127.0.0.1:{gateway_port}"

        def gateway_up() -> bool:
            try:
                return requests.get(f"{base}/health", timeout=2).ok
            except requests.RequestException:
                return False

        wait_until(gateway_up, 60, "the gateway", interval=0.2)
        for model, adjustment in ((celery_model, {"sum": {"a": 1}}), (dask_model, {"pi": {"n_chunks": 2}})):
            url = f"{base}/{model.owner}/{model.title}"
            job = requests.post(f"{url}/sim/", json={"meta_param_dict": {}, "adjustment": adjustment}, timeout=10)
            job_id = job.json()["job_id"]
            assert webserver.put_for(job_id, timeout=90).body["status"] == "SUCCESS"
            wait_until(lambda u=url, j=job_id: requests.get(f"{u}/get/{j}/", timeout=10).status_code == 200, 20,
                       "the result")  # fmt: skip
        probe = ["strace", "-ff", "-qq", "-y", "-e", "trace=%file,bind", "-o", str(traces / "probe"),
                 sys.executable, "-m", "cs_runtime.health", "--max-age", "120"]  # fmt: skip
        assert subprocess.run(probe, env=celery_env, cwd=fake_tmp, timeout=60, check=False).returncode == 0
    finally:
        for process in processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
    outside = [f"{trace.name}: {write}" for trace in sorted(traces.iterdir())
               for write in writes_outside(trace, fake_tmp)]  # fmt: skip
    assert len(list(traces.iterdir())) > len(commands) + 1  # one file per process: the tracing worked
    assert outside == [], "\n".join(outside)
    assert (fake_tmp / "cs-worker-heartbeat").exists()
