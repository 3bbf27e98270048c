"""The docker commands that build, tag and push every image the chart runs, composed without
running them (`Cluster.build` runs them; `--dry-run` prints them).

Image names follow the chart's defaults (gateway: `{registry}/{project}/cs-workers-gateway:{appVersion}`,
models: `modelImages`); tests/cli/test_build.py renders the chart for the values `build` writes
and checks that every image it deploys is one built here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import ModelConfig
from .errors import ConfigError
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


def deployed_gateway_image(values: dict[str, Any], app_version: str) -> str:
    """The gateway image the chart deploys for these values: `gateway.image.repository` or
    `{registry}/{project}/cs-workers-gateway`, tagged `gateway.image.tag` or the chart's appVersion
    (charts/cs-workers/templates/gateway/deployment.yaml is the rule; a test holds this to it)."""
    image = (values.get("gateway") or {}).get("image") or {}
    images = values.get("modelImages") or {}
    tag = image.get("tag")
    tag = app_version if tag in (None, "") else str(tag)
    if image.get("repository"):
        return f"{image['repository']}:{tag}"
    return gateway_image(images.get("registry") or "", images.get("project") or "", tag)


# What git clones (URLs and scp-like `user@host:path`); any other repo_url is a local directory.
_GIT_URL = re.compile(r"^([a-z][a-z0-9+.-]*://|[^/\s]+@[^/\s]+:)", re.IGNORECASE)
REPO_URL_REQUIRED = ("repo_url is required to build; give the model's git repository or a local directory "
                     "with its cs-config/ (C/S's example worker_config has none)")


@dataclass(frozen=True)
class BuildStep:
    """One docker command and the image it builds or pushes (named in progress and errors)."""

    action: str  # "build" or "push"
    image: str
    command: list[str]


def model_source(model: ModelConfig, config_path: Path, images: Path) -> tuple[Path, Path]:
    """(Dockerfile, build context) for a model: its local directory with local.Dockerfile, or the
    git-cloning images/model/Dockerfile. Raises ConfigError for a repo_url that cannot build, so
    that nothing is built before every model is known to be buildable."""
    if not model.repo_url:
        raise ConfigError(REPO_URL_REQUIRED, path=str(config_path), model=model.name, field="repo_url")
    if _GIT_URL.match(model.repo_url):
        return images / "model" / "Dockerfile", images / "model"
    directory = (config_path.parent / model.repo_url).resolve()
    if not (directory / "cs-config").is_dir():
        raise ConfigError(f"{model.repo_url!r} is neither a git URL nor a directory with a cs-config/ folder "
                          f"(looked in {directory})", path=str(config_path), model=model.name, field="repo_url")
    return images / "model" / "local.Dockerfile", directory


def build_steps(
    models: Sequence[ModelConfig],
    *,
    tag: str,
    project: str,
    registry: str,
    repo_root: Path,
    config_path: Path,
    push: bool = True,
    runtime_image: str | None = None,
    gateway: str | None = None,
    base_image: str | None = None,
    network: str | None = None,
) -> list[BuildStep]:
    """docker build (and push) for the runtime base unless `runtime_image` names one, the gateway
    image `gateway` when given, then each model.

    `base_image` becomes `--build-arg BASE_IMAGE=...` of the runtime and gateway builds (their
    Dockerfiles default to python:3.11-slim-bookworm); `network` is `docker build --network`
    (e.g. `host` on an engine without a bridge network). Raises ConfigError before composing
    anything when a model cannot be built (see model_source).
    """
    images = repo_root / "images"
    sources = {model.slug: model_source(model, config_path, images) for model in models}
    steps: list[BuildStep] = []
    docker_build = ["docker", "build", *(["--network", network] if network else [])]
    base_arguments = ["--build-arg", f"BASE_IMAGE={base_image}"] if base_image else []

    def build_and_push(arguments: list[str], image: str, context: Path) -> None:
        steps.append(BuildStep("build", image, [*docker_build, *arguments, "--tag", image, str(context)]))
        if push:
            steps.append(BuildStep("push", image, ["docker", "push", image]))

    runtime = runtime_image or default_runtime_image(registry, project, tag)
    if not runtime_image:
        build_and_push(base_arguments, runtime, images / "runtime")
    if gateway:
        build_and_push(["--file", str(images / "gateway" / "Dockerfile"), *base_arguments], gateway,
                       images / "runtime")
    for model in models:
        image = f"{image_repository(registry, project, model.owner, model.title)}:{tag}"
        dockerfile, context = sources[model.slug]
        arguments = ["--file", str(dockerfile)]
        for name, value in model_build_arguments(model, runtime):
            arguments += ["--build-arg", f"{name}={value}"]
        build_and_push(arguments, image, context)
    return steps

