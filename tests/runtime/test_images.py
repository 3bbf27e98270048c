"""The Dockerfiles (no Docker engine here: their text is checked) and the packaging of the
runtime and the example models (real wheels are built)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

from .support import CELERY_SUM_CONFIG, DASK_PI_CONFIG, REPO

IMAGES = REPO / "images"
DOCKERFILES = {
    "runtime": IMAGES / "runtime" / "Dockerfile",
    "gateway": IMAGES / "gateway" / "Dockerfile",
    "model": IMAGES / "model" / "Dockerfile",
}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def runtime_dependencies() -> list[str]:
    pyproject = tomllib.loads((IMAGES / "runtime" / "pyproject.toml").read_text())
    return list(pyproject["project"]["dependencies"])


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_images_end_as_non_root_uid_1000(image: str) -> None:
    users = [args for op, args in instructions(DOCKERFILES[image]) if op == "USER"]
    assert users and users[-1] == "1000:1000"


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
