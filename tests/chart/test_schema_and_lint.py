"""The values schema catches mistakes; both Helm majors lint the chart clean and render it alike."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import CHART, cs_cluster, model, values_with

from cs_cluster import render_chart
from cs_cluster.errors import ToolError
from cs_cluster.helm import find_helm


@pytest.fixture(scope="module", params=[3, 4], ids=["helm3", "helm4"])
def helm_binary(request: pytest.FixtureRequest) -> str:
    return find_helm(request.param)


def test_helm_major_is_the_one_asked_for(helm_binary: str) -> None:
    version = subprocess.run([helm_binary, "version", "--short"], capture_output=True, text=True, check=True).stdout
    assert version.startswith("v3.18" if "3" in Path(helm_binary).name else "v4.")


@pytest.mark.parametrize("with_models", [False, True], ids=["defaults", "models"])
def test_lint_strict(helm_binary: str, tmp_path: Path, with_models: bool) -> None:
    arguments = [helm_binary, "lint", "--strict", str(CHART)]
    if with_models:
        values = tmp_path / "values.yaml"
        values.write_text(yaml.safe_dump(values_with(model("a", "b"), model("c", "d", "dask", nodeSize=["small"]))))
        arguments += ["-f", str(values)]
    result = subprocess.run(arguments, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_both_helm_majors_render_the_same_objects() -> None:
    # Secrets the chart generates differ per render; name fixed ones.
    values = values_with(model("a", "b"), model("c", "d", "dask"), redis={"auth": {"existingSecret": "fixed"}},
                         gateway={"auth": {"existingSecret": "fixed-token"}})
    majors = {major: subprocess.run([find_helm(major), "version", "--short"], capture_output=True, text=True,
                                    check=True).stdout for major in (3, 4)}
    assert majors[3].startswith("v3.") and majors[4].startswith("v4."), majors
    helm3, helm4 = render_chart(values, helm_binary=find_helm(3)), render_chart(values, helm_binary=find_helm(4))

    def fixed(objects: list[dict]) -> list[dict]:
        """The models' Redis passwords are generated on every render: compare their keys only."""
        return [{**o, "data": dict.fromkeys(o["data"], "")} if o["metadata"]["name"] == "release-redis-users" else o
                for o in objects]

    assert fixed(helm3.objects) == fixed(helm4.objects)
    assert len(helm4.find("Deployment")) == 8


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"redsi": {}}, "redsi"),
        ({"gateway": {"replica": 2}}, "replica"),
        (values_with(model("a", "b", replica=2)), "replica"),
        (values_with(model("a", "b", "spark")), "clusterType"),
        (values_with(model("a", "b", replicas=-1)), "replicas"),
        (values_with(model("a", "b", resources={"limits": {"cpu": "two"}})), "cpu"),
        ({"models": {"Not_A_Slug": model("a", "b")}}, "Not_A_Slug"),
        (values_with(model("a", "b", image={})), "tag"),
    ],
    ids=["top-level typo", "gateway typo", "model typo", "cluster type", "negative replicas", "bad quantity",
         "bad slug key", "missing tag"],
)
def test_schema_rejects_mistakes(values: dict, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        render_chart(values)


@pytest.mark.parametrize(
    ("key", "hint"),
    [("cluster_type", "clusterType"), ("sim_time_limit", "simTimeLimit"), ("secret", "secrets.values"),
     ("affinity", "nodeSize")],
)
def test_worker_config_keys_in_values_fail_with_the_new_name(key: str, hint: str) -> None:
    with pytest.raises(ToolError, match=rf"models\.a-b\.{key} is a worker_config key; in values it is {hint}"):
        render_chart(values_with(model("a", "b", **{key: "x"})))


def test_slug_key_must_match_owner_and_title() -> None:
    with pytest.raises(ToolError, match='must be the model\'s slug "a-b"'):
        render_chart({"modelImages": {"project": "p"}, "models": {"x-y": model("a", "b")}})


def test_generated_schema_files_are_current() -> None:
    result = cs_cluster("schema")
    assert result.returncode == 0, result.stderr


def test_schema_json_is_what_helm_validates_against() -> None:
    generated = yaml.safe_load((CHART / "values.schema.json").read_text())
    assert generated == yaml.safe_load((CHART / "values.schema.yaml").read_text())
    assert generated["additionalProperties"] is False


def test_chart_defaults_validate_against_the_schema() -> None:
    import jsonschema

    schema = yaml.safe_load((CHART / "values.schema.yaml").read_text())
    jsonschema.validate(yaml.safe_load((CHART / "values.yaml").read_text()), schema)


@pytest.fixture(params=[pytest.param(3, marks=pytest.mark.cluster), 4], ids=["helm3", "helm4"])
def notes_helm(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, str]]:
    """A helm binary and the environment for `install --dry-run=client`, which prints NOTES.txt.

    Helm 4 needs no cluster for it. Helm 3.18 wants an API server even so: it gets the local
    control plane (marker `cluster`; without one it fails like the other cluster tests).
    """
    kubeconfig = request.getfixturevalue("kubeconfig") if request.param == 3 else str(tmp_path / "none")
    return find_helm(request.param), {"KUBECONFIG": kubeconfig, "HOME": str(tmp_path)}


def install_notes(notes_helm: tuple[str, dict[str, str]], values: dict,
                  tmp_path: Path) -> subprocess.CompletedProcess[str]:
    helm_binary, env = notes_helm
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return subprocess.run([helm_binary, "install", "rel", str(CHART), "--dry-run=client", "-f", str(path)],
                          capture_output=True, text=True, check=False, env=env)


def test_notes_say_what_was_deployed(notes_helm: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    result = install_notes(notes_helm, values_with(model("PSLmodels", "OG-USA", "dask", replicas=3),
                                                    model("PSLmodels", "Tax-Brain", replicas=2)), tmp_path)
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "Models (2):" in notes
    assert "PSLmodels/OG-USA: dask, image gcr.io/cs-test/pslmodels_ogusa_tasks:v1, Dask scheduler " \
           "tcp://rel-pslmodels-ogusa-dask-scheduler:8786 with 3 worker(s)" in notes
    assert "PSLmodels/Tax-Brain: celery, image gcr.io/cs-test/pslmodels_taxbrain_tasks:v1, 2 sim worker(s)" in notes
    assert "WARNING: no worker Secret" in notes


def test_notes_fail_loudly_on_a_renamed_key(notes_helm: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    result = install_notes(notes_helm, values_with(model("a", "b", cluster_type="dask")), tmp_path)
    assert result.returncode != 0
    assert "models.a-b.cluster_type is a worker_config key; in values it is clusterType" in result.stderr


@pytest.mark.parametrize("major", [3, 4], ids=["helm3", "helm4"])
@pytest.mark.parametrize("missing", ["podSecurityContext", "modelDefaults.io.resources", "callback",
                                     "podDisruptionBudget.enabled", "celery.hardTimeLimitGraceSeconds"])
def test_a_default_gone_missing_is_named_before_any_template_fails(major: int, missing: str) -> None:
    """What `helm upgrade --reuse-values` does with a newer chart (renders the release's old values
    without the defaults the chart added), here by null: the chart names the key and the advice,
    before a template meets nil (a Go reflection error, or a feature silently off)."""
    result = subprocess.run([find_helm(major), "template", "r", str(CHART), "--set", "modelImages.project=p",
                             "--set", f"{missing}=null"], capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert f"values lack {missing}, which cs-workers" in result.stderr, result.stderr
    assert "--reset-then-reuse-values" in result.stderr and "reflect" not in result.stderr
