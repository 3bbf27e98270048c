"""The cs-cluster commands and the Cluster API, end to end with real helm."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml
from helpers import EXAMPLE_CONFIG, SEED_MODEL, cs_cluster, write_config

from cs_cluster import Cluster, RenderedChart
from cs_cluster.render import parse_manifests


def test_template_prints_valid_manifests_for_the_example() -> None:
    result = cs_cluster("template", "--config", EXAMPLE_CONFIG, "--tag", "v1", "--project", "cs-dev")
    assert result.returncode == 0, result.stderr
    objects = parse_manifests(result.stdout)
    assert "all valid for Kubernetes 1.33, 1.37" in result.stderr
    kinds = sorted({o["kind"] for o in objects})
    assert kinds == ["ConfigMap", "Deployment", "NetworkPolicy", "PersistentVolumeClaim", "Pod",
                     "PodDisruptionBudget", "Secret", "Service", "ServiceAccount"]
    assert {o["metadata"]["annotations"]["helm.sh/hook"] for o in objects if o["kind"] == "Pod"} == {"test"}
    assert len([o for o in objects if o["kind"] == "Deployment"]) == 2 + 2 + 2 + 2


def test_example_render_has_both_kinds_of_model(example_chart: RenderedChart) -> None:
    assert example_chart.one("Deployment", component="model-sim", model="csexamples-celerysum")
    worker = example_chart.one("Deployment", component="dask-worker", model="csexamples-daskpi")
    assert worker["spec"]["replicas"] == 2


def test_apply_dry_run_prints_the_helm_command(tmp_path: Path) -> None:
    values_file = tmp_path / "values" / "p.yaml"
    result = cs_cluster("apply", "--config", EXAMPLE_CONFIG, "--tag", "v1", "--project", "p", "--release", "cs",
                        "--namespace", "models", "--values-file", values_file, "--dry-run")
    assert result.returncode == 0, result.stderr
    command = shlex.split(result.stdout.strip())
    assert command[1:5] == ["upgrade", "--install", "cs", str(EXAMPLE_CONFIG.parents[1] / "charts" / "cs-workers")]
    assert command[command.index("--namespace") + 1] == "models"
    assert command[command.index("-f") + 1] == str(values_file)
    assert "--wait" in command
    assert not values_file.exists()


@pytest.mark.parametrize(("options", "failing"), [
    ([], "helm status failed"),  # the capacity check reads the release first: helm upgrade never runs
    (["--skip-capacity-check"], "helm failed"),
], ids=["capacity-check", "skip-capacity-check"])
def test_apply_without_a_cluster_fails_in_one_line(tmp_path: Path, options: list[str], failing: str) -> None:
    import os

    # A kubeconfig that points nowhere, even when ci/test.sh has a control plane running.
    no_cluster = {**os.environ, "KUBECONFIG": str(tmp_path / "no-kubeconfig")}
    result = cs_cluster("apply", "--config", EXAMPLE_CONFIG, "--tag", "v1", "--project", "p",
                        "--values-file", tmp_path / "v.yaml", "--timeout", "5s", "--no-wait", *options, env=no_cluster)
    assert result.returncode == 1
    assert f"cs-cluster: error: {failing}" in result.stderr
    assert ("running: " in result.stderr) == bool(options), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "v.yaml").exists()


def test_build_dry_run_composes_docker_commands(tmp_path: Path) -> None:
    config = write_config(tmp_path, [SEED_MODEL | {"repo_url": "https://github.com/PSLmodels/OG-USA",
                                                   "sim_time_limit": 9000, "env": {"BUILD_NUM": 4}}])
    result = cs_cluster("build", "--config", config, "--tag", "oct30.1", "--project", "cs-workers-dev",
                        "--values-file", tmp_path / "v.yaml", "--dry-run")
    assert result.returncode == 0, result.stderr
    commands = [shlex.split(line) for line in result.stdout.strip().splitlines()]
    runtime = "gcr.io/cs-workers-dev/cs-workers-runtime:oct30.1"
    gateway = "gcr.io/cs-workers-dev/cs-workers-gateway:0.1.0"
    image = "gcr.io/cs-workers-dev/pslmodels_ogusa_tasks:oct30.1"
    assert [c[:2] for c in commands] == [["docker", "build"], ["docker", "push"]] * 3
    assert commands[0][-1].endswith("images/runtime") and commands[1] == ["docker", "push", runtime]
    assert commands[2][commands[2].index("--tag") + 1] == gateway and commands[3] == ["docker", "push", gateway]
    model_build = commands[4]
    assert model_build[model_build.index("--file") + 1].endswith("images/model/Dockerfile")
    build_args = [model_build[i + 1] for i, word in enumerate(model_build) if word == "--build-arg"]
    assert build_args == [f"RUNTIME_IMAGE={runtime}", "OWNER=PSLmodels", "TITLE=OG-USA", "BRANCH=master",
                          "REPO_URL=https://github.com/PSLmodels/OG-USA", "SIM_TIME_LIMIT=9000", "BUILD_NUM=4"]
    assert model_build[model_build.index("--tag") + 1] == image
    assert commands[5] == ["docker", "push", image]
    assert not (tmp_path / "v.yaml").exists()


def test_build_of_named_models_with_local_code(tmp_path: Path) -> None:
    """--models builds only those (no gateway); a local repo_url builds from that directory."""
    previous = tmp_path / "previous.yaml"
    Cluster(EXAMPLE_CONFIG, tag="t1", project="p", previous=None).write_values(previous)
    result = cs_cluster("build", "--config", EXAMPLE_CONFIG, "--tag", "t2", "--project", "p", "--models",
                        "Dask-Pi", "--no-push", "--previous", previous, "--values-file", tmp_path / "v.yaml",
                        "--dry-run")
    assert result.returncode == 0, result.stderr
    commands = [shlex.split(line) for line in result.stdout.strip().splitlines()]
    assert len(commands) == 2 and all(c[:2] == ["docker", "build"] for c in commands)
    model_build = commands[1]
    assert model_build[model_build.index("--file") + 1].endswith("images/model/local.Dockerfile")
    assert model_build[-1] == str(EXAMPLE_CONFIG.parent / "models" / "dask-pi")
    assert model_build[model_build.index("--tag") + 1] == "gcr.io/p/csexamples_daskpi_tasks:t2"


def test_build_without_docker_says_so(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    config = write_config(tmp_path, [SEED_MODEL | {"repo_url": "https://github.com/PSLmodels/OG-USA"}])
    environment = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    result = subprocess.run([sys.executable, "-m", "cs_cluster", "build", "--config", str(config), "--tag", "t",
                             "--project", "p", "--values-file", str(tmp_path / "v.yaml")],
                            capture_output=True, text=True, env=environment, check=False)
    assert result.returncode == 1
    assert "docker not found: a real build needs a Docker engine" in result.stderr
    assert not (tmp_path / "v.yaml").exists()


def test_cluster_api_as_in_the_release_notes(tmp_path: Path) -> None:
    config = write_config(tmp_path, [SEED_MODEL | {"repo_url": "https://github.com/PSLmodels/OG-USA"}])
    cluster = Cluster(config=config, tag="oct30.0", project="cs-workers-dev",
                      values_file=tmp_path / "values" / "cs-workers-dev.yaml")
    assert cluster.values()["models"]["pslmodels-ogusa"]["image"]["tag"] == "oct30.0"
    rendered = cluster.render()
    assert rendered.one("Deployment", component="dask-scheduler", model="pslmodels-ogusa")
    commands = cluster.build(dry_run=True)
    assert commands[-1] == ["docker", "push", "gcr.io/cs-workers-dev/pslmodels_ogusa_tasks:oct30.0"]
    written = cluster.write_values()
    assert yaml.safe_load(written.read_text())["models"]["pslmodels-ogusa"]["image"]["tag"] == "oct30.0"
    # The next partial update reads that file as its previous values by default.
    second = write_config(tmp_path, [SEED_MODEL, {"owner": "a", "title": "b"}])
    update = Cluster(config=second, tag="oct30.1", project="cs-workers-dev", models=["a/b"],
                     values_file=written)
    assert {slug: m["image"]["tag"] for slug, m in update.values()["models"].items()} == {
        "pslmodels-ogusa": "oct30.0", "a-b": "oct30.1"}


def test_a_failed_apply_leaves_the_values_files_as_they_were(tmp_path: Path) -> None:
    """The values file is written once the release succeeded: after a failed helm it still names the
    tags that were deployed, which the next partial update takes as the truth."""
    import os

    config = write_config(tmp_path, [SEED_MODEL | {"secrets": {"API_KEY": "old"}}])
    values_file = tmp_path / "values" / "p.yaml"
    Cluster(config, tag="deployed", project="p", values_file=values_file, previous=None).write_values()
    secrets_file = tmp_path / "values" / "p.secrets.yaml"
    before = {path.name: path.read_bytes() for path in (values_file, secrets_file)}
    write_config(tmp_path, [SEED_MODEL | {"secrets": {"API_KEY": "new"}}])
    no_cluster = {**os.environ, "KUBECONFIG": str(tmp_path / "no-kubeconfig")}
    result = cs_cluster("apply", "--config", config, "--tag", "never-deployed", "--project", "p",
                        "--values-file", values_file, "--timeout", "5s", "--no-wait", "--skip-capacity-check",
                        env=no_cluster)
    assert result.returncode == 1 and "helm failed" in result.stderr
    # helm was given the new values, from staged copies...
    command = shlex.split(result.stderr.split("running: ", 1)[1].splitlines()[0])
    staged = [Path(command[i + 1]) for i, word in enumerate(command) if word == "-f"]
    assert [path.name for path in staged] == ["0-p.yaml", "1-p.secrets.yaml"] and not staged[0].exists()
    # ...and the files kept what was deployed, with nothing left beside them.
    assert {path.name: path.read_bytes() for path in (values_file, secrets_file)} == before
    assert sorted(path.name for path in values_file.parent.iterdir()) == ["p.secrets.yaml", "p.yaml"]
