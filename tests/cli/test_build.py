"""`cs-cluster build` / `Cluster.build`: the images it makes are exactly the ones the chart
deploys (the chart is the rule, rendered for the values build writes), what reaches each docker
command, and what is refused before anything is built. tests/images builds them for real."""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import EXAMPLE_CONFIG, SEED_MODEL, cs_cluster, skip_or_fail, write_config

from cs_cluster import Cluster
from cs_cluster.render import render_chart

CHART_REDIS = "redis"  # the chart's own image, not one build makes


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def build_arguments(command: list[str]) -> dict[str, str]:
    return dict(command[i + 1].split("=", 1) for i, word in enumerate(command) if word == "--build-arg")


def built_images(commands: list[list[str]]) -> set[str]:
    return {option(command, "--tag") for command in commands if command[:2] == ["docker", "build"]}


def deployed_images(values_file: Path) -> dict[str, set[str]]:
    """Every container image of the render for this values file, by component label."""
    by_component: dict[str, set[str]] = {}
    for obj in render_chart(values_files=[values_file]):
        spec = obj["spec"] if obj["kind"] == "Pod" else (obj.get("spec") or {}).get("template", {}).get("spec")
        if not spec:
            continue
        component = obj["metadata"]["labels"]["app.kubernetes.io/component"]
        by_component.setdefault(component, set()).update(c["image"] for c in spec["containers"])
    return by_component


def quiet_build(cluster: Cluster, **settings: Any) -> list[list[str]]:
    with contextlib.redirect_stdout(io.StringIO()):
        return cluster.build(dry_run=True, **settings)


@pytest.mark.parametrize("registry", [None, "10.213.0.1:5000", "localhost:5001", ""],
                         ids=["default-gcr", "ci-registry", "kind-registry", "no-registry"])
def test_a_full_build_makes_every_image_the_chart_deploys(tmp_path: Path, registry: str | None) -> None:
    cluster = Cluster(EXAMPLE_CONFIG, tag="v7", project="cs-workers-dev", registry=registry, previous=None,
                      values_file=tmp_path / "values.yaml")
    commands = quiet_build(cluster)
    values_file = cluster.write_values()  # what build writes after its docker commands
    deployed = deployed_images(values_file)
    redis = deployed.pop("redis")
    ours = set().union(*deployed.values())
    runtime = {image for image in built_images(commands) if "/cs-workers-runtime:" in image}
    assert len(runtime) == 1 and not runtime & ours  # the models' base; no pod runs it
    assert built_images(commands) - runtime == ours
    assert len(ours) == 3 and not any(image.startswith(f"{CHART_REDIS}:") for image in ours)
    assert {image.split(":")[0] for image in redis} == {CHART_REDIS}
    # Pushed: each built image, right after its build.
    pushes = [command[2] for command in commands if command[:2] == ["docker", "push"]]
    assert pushes == [option(command, "--tag") for command in commands if command[:2] == ["docker", "build"]]


@pytest.mark.parametrize("gateway", [{}, {"tag": "20240101"}, {"repository": "registry.example/ops/gw", "tag": "g2"}],
                         ids=["chart-default", "tag-set", "repository-and-tag-set"])
def test_the_gateway_is_built_under_the_name_the_chart_gives_it(tmp_path: Path, gateway: dict[str, str]) -> None:
    """`gateway.image` kept in the values file (from --previous) names the gateway image built."""
    previous = tmp_path / "previous.yaml"
    Cluster(EXAMPLE_CONFIG, tag="v1", project="p", previous=None).write_values(previous)
    data = yaml.safe_load(previous.read_text())
    data["gateway"] = {"image": gateway}
    previous.write_text(yaml.safe_dump(data))
    cluster = Cluster(EXAMPLE_CONFIG, tag="v2", project="p", previous=previous, values_file=tmp_path / "v.yaml")
    commands = quiet_build(cluster, push=False)
    (rendered_gateway,) = deployed_images(cluster.write_values())["gateway"]
    assert rendered_gateway in built_images(commands)
    if gateway.get("repository"):
        assert rendered_gateway == f"{gateway['repository']}:{gateway['tag']}"


def test_a_partial_build_makes_the_named_models_images_and_keeps_the_others(tmp_path: Path) -> None:
    previous = tmp_path / "previous.yaml"
    Cluster(EXAMPLE_CONFIG, tag="v1", project="p", previous=None).write_values(previous)
    cluster = Cluster(EXAMPLE_CONFIG, tag="v2", project="p", models=["Dask-Pi"], previous=previous,
                      values_file=tmp_path / "v.yaml")
    commands = quiet_build(cluster, push=False)
    deployed = deployed_images(cluster.write_values())
    models = built_images(commands) - {i for i in built_images(commands) if "/cs-workers-runtime:" in i}
    assert models == {"gcr.io/p/csexamples_daskpi_tasks:v2"}
    assert models <= deployed["dask-scheduler"] & deployed["dask-worker"] & deployed["model-sim"]
    assert deployed["model-io"] == {"gcr.io/p/csexamples_daskpi_tasks:v2", "gcr.io/p/csexamples_celerysum_tasks:v1"}


@pytest.mark.parametrize(("settings", "environment", "expected_base", "expected_network"), [
    ({}, {}, None, None),
    ({}, {"CS_BASE_IMAGE": "cs-workers-ci/python-standin:3.11-slim-bookworm"},
     "cs-workers-ci/python-standin:3.11-slim-bookworm", None),
    ({"base_image": "mirror.example/python:3.11-slim-bookworm", "network": "host"},
     {"CS_BASE_IMAGE": "ignored/when:given"}, "mirror.example/python:3.11-slim-bookworm", "host"),
], ids=["dockerfile-default", "from-environment", "given"])
def test_base_image_goes_to_the_runtime_and_gateway_builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           settings: dict[str, str], environment: dict[str, str],
                                                           expected_base: str | None,
                                                           expected_network: str | None) -> None:
    monkeypatch.delenv("CS_BASE_IMAGE", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    cluster = Cluster(EXAMPLE_CONFIG, tag="v1", project="p", previous=None, values_file=tmp_path / "v.yaml")
    builds = [command for command in quiet_build(cluster, **settings) if command[:2] == ["docker", "build"]]
    assert len(builds) == 4
    for command in builds:
        base = build_arguments(command).get("BASE_IMAGE")
        is_model = "OWNER" in build_arguments(command)
        assert base == (None if is_model else expected_base)
        assert (option(command, "--network") if "--network" in command else None) == expected_network


def test_cli_passes_base_image_and_network(tmp_path: Path) -> None:
    result = cs_cluster("build", "--config", EXAMPLE_CONFIG, "--tag", "t", "--project", "p", "--no-push",
                        "--base-image", "b/base:1", "--network", "host", "--values-file", tmp_path / "v.yaml",
                        "--dry-run")
    assert result.returncode == 0, result.stderr
    commands = [shlex.split(line) for line in result.stdout.splitlines()]
    assert [build_arguments(c).get("BASE_IMAGE") for c in commands] == ["b/base:1", "b/base:1", None, None]
    assert all(option(c, "--network") == "host" for c in commands)


@pytest.mark.parametrize(("repo_url", "message"), [
    (None, "field 'repo_url': repo_url is required to build; give the model's git repository or a local directory"),
    ("", "field 'repo_url': repo_url is required to build"),
    ("models/not-there", "'models/not-there' is neither a git URL nor a directory with a cs-config/ folder"),
    ("empty-dir", "'empty-dir' is neither a git URL nor a directory with a cs-config/ folder"),
], ids=["missing-as-in-the-seed", "empty", "no-such-directory", "directory-without-cs-config"])
@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "real"])
def test_a_model_that_cannot_be_built_is_refused_before_any_build(tmp_path: Path, repo_url: str | None,
                                                                  message: str, dry_run: bool) -> None:
    """Issue 10 item 6: C/S's seed config has no repo_url. Refused naming file, model and field,
    exit 2, before docker is run (PATH holds no docker here) and with nothing written."""
    (tmp_path / "empty-dir").mkdir()
    good = {**SEED_MODEL, "title": "Fine", "repo_url": "https://github.com/PSLmodels/OG-USA"}
    bad = {key: value for key, value in SEED_MODEL.items()} | ({} if repo_url is None else {"repo_url": repo_url})
    config = write_config(tmp_path, [good, bad])
    values_file = tmp_path / "values.yaml"
    environment = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    result = cs_cluster("build", "--config", config, "--tag", "t", "--project", "p", "--values-file", values_file,
                        *(["--dry-run"] if dry_run else []), env=environment)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""  # not even the dry run's commands
    assert result.stderr.startswith(f"cs-cluster: error: {config}: model PSLmodels/OG-USA: ")
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not values_file.exists()


def test_git_urls_are_cloned_and_directories_are_copied(tmp_path: Path) -> None:
    models = [{**SEED_MODEL, "title": f"M{i}", "repo_url": url} for i, url in enumerate([
        "https://github.com/PSLmodels/OG-USA", "git@github.com:PSLmodels/OG-USA.git", "ssh://git@host/repo.git",
        str(EXAMPLE_CONFIG.parent / "models" / "dask-pi")])]
    cluster = Cluster(write_config(tmp_path, models), tag="t", project="p", previous=None,
                      values_file=tmp_path / "v.yaml")
    builds = [c for c in quiet_build(cluster, push=False) if "OWNER" in build_arguments(c)]
    assert [Path(option(c, "--file")).name for c in builds] == ["Dockerfile"] * 3 + ["local.Dockerfile"]
    assert builds[-1][-1] == str(EXAMPLE_CONFIG.parent / "models" / "dask-pi")


def test_no_engine_is_one_line_before_any_build(tmp_path: Path) -> None:
    if shutil.which("docker") is None:
        skip_or_fail("the docker client is not installed")
    environment = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    result = subprocess.run([sys.executable, "-m", "cs_cluster", "build", "--config", str(EXAMPLE_CONFIG), "--tag",
                             "t", "--project", "p", "--values-file", str(tmp_path / "v.yaml")],
                            capture_output=True, text=True, env=environment, check=False, timeout=120)
    assert result.returncode == 1
    assert result.stderr.startswith("cs-cluster: error: no Docker engine answers (DOCKER_HOST=unix://")
    assert "[1/" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "v.yaml").exists()
