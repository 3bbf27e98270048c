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
GATEWAY_IMAGE_NAME = "cs-workers-gateway"


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


def gateway_image(registry: str, project: str, tag: str) -> str:
    prefix = "/".join(part for part in (registry, project) if part)
    return f"{prefix}/{GATEWAY_IMAGE_NAME}:{tag}"


def build_commands(
    models: Sequence[ModelConfig],
    *,
    tag: str,
    project: str,
    registry: str,
    repo_root: Path,
    config_dir: Path,
    push: bool = True,
    runtime_image: str | None = None,
    gateway_tag: str | None = None,
) -> list[list[str]]:
    """docker build (and push) for the runtime base unless given, the gateway when
    `gateway_tag` is given, then each model.

    A model whose repo_url is a local directory (relative to the config) is built from that
    directory with images/model/local.Dockerfile; any other repo_url is cloned in the build.
    """
    images = repo_root / "images"
    commands: list[list[str]] = []

    def build_and_push(command: list[str], image: str) -> None:
        commands.append(command)
        if push:
            commands.append(["docker", "push", image])

    runtime = runtime_image or default_runtime_image(registry, project, tag)
    if not runtime_image:
        build_and_push(["docker", "build", "--tag", runtime, str(images / "runtime")], runtime)
    if gateway_tag:
        gateway = gateway_image(registry, project, gateway_tag)
        build_and_push(["docker", "build", "--file", str(images / "gateway" / "Dockerfile"), "--tag", gateway,
                        str(images / "runtime")], gateway)
    for model in models:
        image = f"{image_repository(registry, project, model.owner, model.title)}:{tag}"
        local_source = (config_dir / model.repo_url) if model.repo_url else None
        if local_source is not None and local_source.is_dir():
            dockerfile, context = images / "model" / "local.Dockerfile", local_source.resolve()
        else:
            dockerfile, context = images / "model" / "Dockerfile", images / "model"
        command = ["docker", "build", "--file", str(dockerfile)]
        for name, value in model_build_arguments(model, runtime):
            command += ["--build-arg", f"{name}={value}"]
        build_and_push([*command, "--tag", image, str(context)], image)
    return commands
