"""The docker commands that build, tag and push images, composed without running them.

There is no Docker engine on our CI machines, so the composition is what the tests check; the
Cluster runs the commands where Docker exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .config import ModelConfig
from .names import image_repository

RUNTIME_IMAGE_NAME = "cs-workers-runtime"


def default_runtime_image(registry: str, project: str, tag: str) -> str:
    prefix = "/".join(part for part in (registry, project) if part)
    return f"{prefix}/{RUNTIME_IMAGE_NAME}:{tag}"


def model_build_arguments(model: ModelConfig, runtime: str) -> list[tuple[str, str]]:
    """C/S's build args: OWNER, TITLE, BRANCH, REPO_URL, SIM_TIME_LIMIT and the model's env."""
    arguments = [
        ("RUNTIME_IMAGE", runtime),
        ("OWNER", model.owner),
        ("TITLE", model.title),
        ("BRANCH", model.branch or "master"),
        ("REPO_URL", model.repo_url or ""),
        ("SIM_TIME_LIMIT", str(model.sim_time_limit or "")),
    ]
    # env holds BUILD_NUM / INSTALL_NUM, which change to bust the Docker cache.
    arguments += sorted(model.env.items())
    return arguments


def build_commands(
    models: Sequence[ModelConfig],
    *,
    tag: str,
    project: str,
    registry: str,
    repo_root: Path,
    push: bool = True,
    runtime_image: str | None = None,
) -> list[list[str]]:
    """docker build (and push) for the runtime base, unless given, then for each model."""
    images = repo_root / "images"
    commands: list[list[str]] = []
    runtime = runtime_image or default_runtime_image(registry, project, tag)
    if not runtime_image:
        commands.append(["docker", "build", "--file", str(images / "runtime" / "Dockerfile"),
                         "--tag", runtime, str(images)])
        if push:
            commands.append(["docker", "push", runtime])
    for model in models:
        image = f"{image_repository(registry, project, model.owner, model.title)}:{tag}"
        command = ["docker", "build", "--file", str(images / "model" / "Dockerfile")]
        for name, value in model_build_arguments(model, runtime):
            command += ["--build-arg", f"{name}={value}"]
        command += ["--tag", image, str(images / "model")]
        commands.append(command)
        if push:
            commands.append(["docker", "push", image])
    return commands
