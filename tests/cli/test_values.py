"""worker_config -> values: the seed config, C/S-era keys, secrets kept out, partial updates."""

from __future__ import annotations

import copy
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import SEED_MODEL, container, cs_cluster, env_of, write_config

from cs_cluster import Cluster, render_chart
from cs_cluster.names import clean

TAXBRAIN = {"owner": "PSLmodels", "title": "Tax-Brain", "cluster_type": "single-core", "replicas": 2,
            "repo_url": "https://github.com/PSLmodels/Tax-Brain", "sim_time_limit": 600,
            "affinity": {"size": "medium"}, "secret": {"API_KEY": "s3cret-value"}, "env": {"BUILD_NUM": 3}}
MATCHUPS = {"owner": "hdoupe", "title": "Matchups", "branch": "main", "cluster_type": "single-core"}


def values_from(tmp_path: Path, models: list[dict[str, Any]], *options: str) -> dict[str, Any]:
    config = write_config(tmp_path, models)
    output = tmp_path / "values.yaml"
    result = cs_cluster("values", "--config", config, "--tag", "t1", "--project", "cs-dev", "-o", output, *options)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(output.read_text())


def test_seed_config_becomes_model_values(tmp_path: Path) -> None:
    values = values_from(tmp_path, [SEED_MODEL])
    assert values["modelImages"] == {"registry": "gcr.io", "project": "cs-dev"}
    assert values["models"] == {"pslmodels-ogusa": {
        "owner": "PSLmodels", "title": "OG-USA", "clusterType": "dask", "replicas": 2, "image": {"tag": "t1"},
        "resources": {"requests": {"memory": "7G", "cpu": "2"}, "limits": {"memory": "7G", "cpu": "2"}},
    }}
    render_chart(values)  # validates


def test_cs_era_keys(tmp_path: Path) -> None:
    values = values_from(tmp_path, [TAXBRAIN])
    entry = values["models"]["pslmodels-taxbrain"]
    assert entry["clusterType"] == "celery"
    assert entry["simTimeLimit"] == 600
    assert entry["nodeSize"] == ["medium"]
    text = (tmp_path / "values.yaml").read_text()
    assert "s3cret-value" not in text and "API_KEY" not in text
    assert "repo_url" not in text and "BUILD_NUM" not in text


def test_secrets_go_to_a_private_file_only(tmp_path: Path) -> None:
    values_from(tmp_path, [TAXBRAIN])
    secrets_file = tmp_path / "values.secrets.yaml"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    secrets = yaml.safe_load(secrets_file.read_text())
    assert secrets == {"models": {"pslmodels-taxbrain": {"secrets": {"values": {"API_KEY": "s3cret-value"}}}}}
    # The two files together render the model's Secret; the values file alone renders none.
    chart = render_chart(values_files=[tmp_path / "values.yaml", secrets_file])
    assert chart.one("Secret", name="release-pslmodels-taxbrain-secrets")["data"]["API_KEY"]
    assert not render_chart(values_files=[tmp_path / "values.yaml"]).find("Secret", model="pslmodels-taxbrain")


def test_secrets_are_never_printed(tmp_path: Path) -> None:
    config = write_config(tmp_path, [TAXBRAIN])
    result = cs_cluster("values", "--config", config, "--tag", "t1", "--project", "p")
    assert result.returncode == 2 and "--secrets-output" in result.stderr
    assert "s3cret" not in result.stdout + result.stderr
    result = cs_cluster("values", "--config", config, "--tag", "t1", "--project", "p",
                        "--secrets-output", tmp_path / "s.yaml")
    assert result.returncode == 0 and "s3cret" not in result.stdout
    assert "s3cret-value" in (tmp_path / "s.yaml").read_text()


def test_models_matches_exactly_not_substrings(tmp_path: Path) -> None:
    config = write_config(tmp_path, [SEED_MODEL, TAXBRAIN, MATCHUPS])
    first = tmp_path / "first.yaml"
    assert cs_cluster("values", "--config", config, "--tag", "t1", "--project", "p", "-o", first).returncode == 0
    # "Tax" is a substring of Tax-Brain: C/S would have matched it, we do not.
    result = cs_cluster("values", "--config", config, "--tag", "t2", "--project", "p", "--previous", first,
                        "--models", "Tax")
    assert result.returncode == 2 and "matches no model" in result.stderr
    second = tmp_path / "second.yaml"
    result = cs_cluster("values", "--config", config, "--tag", "t2", "--project", "p", "--previous", first,
                        "--models", "PSLmodels/Tax-Brain", "Matchups", "-o", second)
    assert result.returncode == 0, result.stderr
    tags = {slug: m["image"]["tag"] for slug, m in yaml.safe_load(second.read_text())["models"].items()}
    assert tags == {"pslmodels-ogusa": "t1", "pslmodels-taxbrain": "t2", "hdoupe-matchups": "t2"}


def pod_template_changes(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    old = render_chart(before, values_files=()).pod_templates()
    new = render_chart(after).pod_templates()
    return {name for name in old.keys() | new.keys() if old.get(name) != new.get(name)}


def test_partial_update_rolls_only_the_named_model(tmp_path: Path) -> None:
    """The rule C/S relied on: with --models, only the named models' pods change."""
    config = write_config(tmp_path, [SEED_MODEL, TAXBRAIN, MATCHUPS])
    first = Cluster(config, tag="t1", project="p", previous=None)
    before = first.values()
    # The user edits a setting outside models in the committed file; it must survive.
    before["gateway"] = {"replicas": 2}
    previous = tmp_path / "previous.yaml"
    previous.write_text(yaml.safe_dump(before))
    # Meanwhile the config changes for a model that is not named: it must not roll either.
    changed = copy.deepcopy([SEED_MODEL, TAXBRAIN, MATCHUPS])
    changed[2]["replicas"] = 9
    write_config(tmp_path, changed)
    after = Cluster(config, tag="t2", project="p", models=["OG-USA"], previous=previous).values()
    assert after["gateway"] == {"replicas": 2}
    assert pod_template_changes(before, after) == {
        "Deployment/release-pslmodels-ogusa-io", "Deployment/release-pslmodels-ogusa-sim",
        "Deployment/release-pslmodels-ogusa-dask-scheduler", "Deployment/release-pslmodels-ogusa-dask-worker",
    }
    # Without --models every model gets the new tag, as C/S 0.16 did.
    everything = Cluster(config, tag="t2", project="p", previous=previous).values()
    assert len(pod_template_changes(before, everything)) == 4 + 2 + 2


def test_partial_update_needs_the_other_models_in_previous(tmp_path: Path) -> None:
    config = write_config(tmp_path, [SEED_MODEL, MATCHUPS])
    result = cs_cluster("values", "--config", config, "--tag", "t2", "--project", "p", "--models", "OG-USA")
    assert result.returncode == 2
    assert "model hdoupe/Matchups is not in --previous" in result.stderr


@pytest.mark.parametrize("name", ["OG-USA", "PSLmodels/OG-USA"])
def test_cluster_api_selects_by_title_or_owner_and_title(tmp_path: Path, name: str) -> None:
    config = write_config(tmp_path, [SEED_MODEL, MATCHUPS])
    cluster = Cluster(config, tag="t", project="p", models=[name], previous=None,
                      values_file=tmp_path / "values" / "p.yaml")
    assert [m.name for m in cluster.selected_models()] == ["PSLmodels/OG-USA"]


def test_previous_registry_is_kept_unless_given(tmp_path: Path) -> None:
    config = write_config(tmp_path, [MATCHUPS])
    first = values_from(tmp_path, [MATCHUPS], "--registry", "registry.example.org:5000")
    assert first["modelImages"]["registry"] == "registry.example.org:5000"
    previous = tmp_path / "previous.yaml"
    previous.write_text(yaml.safe_dump(first))
    again = Cluster(config, tag="t3", project="cs-dev", previous=previous).values()
    assert again["modelImages"]["registry"] == "registry.example.org:5000"


def test_committed_example_values_are_current(tmp_path: Path) -> None:
    """values/cs-workers-dev.yaml is what `cs-cluster values` writes for the example config."""
    from helpers import EXAMPLE_CONFIG, REPO

    committed = REPO / "values" / "cs-workers-dev.yaml"
    fresh = tmp_path / "cs-workers-dev.yaml"
    result = cs_cluster("values", "--config", EXAMPLE_CONFIG.relative_to(REPO), "--tag", "v1", "--project",
                        "cs-workers-dev", "-o", fresh, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert fresh.read_text() == committed.read_text(), "regenerate values/cs-workers-dev.yaml (see its header)"
    assert render_chart(values_files=[committed]).find("Deployment", component="dask-worker")


# Unquoted scalars YAML 1.1 (PyYAML) or go-yaml (Helm) would read as something other than the
# text written: octal, booleans, floats that drop a zero, go-yaml's 0o/1e/_ forms, dates.
WRITTEN_BARE = ["0755", "off", "3.10", "0123", "1e3", "0o17", "1_000", "yes", "N", "2020-01-01", "+1", ".5",
                "0x1F", "true", "1.0"]


@pytest.mark.parametrize("major", [3, 4], ids=["helm3", "helm4"])
def test_text_fields_keep_the_characters_written(tmp_path: Path, major: int) -> None:
    """owner, title, branch, repo_url, env and secret values reach the values file, Helm and the
    rendered pods as exactly the text written unquoted in the worker_config."""
    import base64

    from cs_cluster.helm import find_helm

    lines = []
    for text in WRITTEN_BARE:
        lines += [f"- owner: {text}", f"  title: {text}", f"  branch: {text}", f"  repo_url: {text}",
                  f"  env: {{V: {text}}}", f"  secrets: {{PIN: {text}, off: {text}}}"]
    config = write_config(tmp_path, "\n".join(lines) + "\n")
    models = {(m.owner, m.title, m.branch, m.repo_url, m.env["V"], m.secrets["PIN"])
              for m in Cluster(config, tag="t", project="p", previous=None).models}
    assert models == {(text,) * 6 for text in WRITTEN_BARE}
    output = tmp_path / "values.yaml"
    result = cs_cluster("values", "--config", config, "--tag", "1.10", "--project", "p", "-o", output,
                        env={**__import__("os").environ, "CS_HELM": find_helm(major)})
    assert result.returncode == 0, result.stderr
    chart = render_chart(values_files=[output, tmp_path / "values.secrets.yaml"], helm_binary=find_helm(major))
    wrong = []
    for text in WRITTEN_BARE:
        slug = f"{clean(text)}-{clean(text)}"
        env = env_of(chart.one("Deployment", component="model-sim", model=slug))
        secret = chart.one("Secret", model=slug)["data"]
        found = {"OWNER": env["OWNER"], "TITLE": env["TITLE"], "PIN": base64.b64decode(secret["PIN"]).decode(),
                 "off": base64.b64decode(secret["OFF"]).decode(),  # upper-cased, as C/S did
                 "image": container(chart.one("Deployment", component="model-sim", model=slug))["image"]}
        if found != {"OWNER": text, "TITLE": text, "PIN": text, "off": text,
                     "image": f"gcr.io/p/{clean(text)}_{clean(text)}_tasks:1.10"}:
            wrong.append((text, found))
    assert wrong == []


def test_an_empty_config_needs_allow_empty(tmp_path: Path) -> None:
    """`[]` would make values without models, and `apply` would remove every model's workers."""
    config = write_config(tmp_path, "[]\n")
    output = tmp_path / "v.yaml"
    refused = cs_cluster("values", "--config", config, "--tag", "t", "--project", "p", "-o", output)
    assert refused.returncode == 2 and "lists no models" in refused.stderr and not output.exists()
    dry_run = cs_cluster("apply", "--config", config, "--tag", "t", "--project", "p", "--values-file", output,
                         "--dry-run")
    assert dry_run.returncode == 2 and "--allow-empty" in dry_run.stderr
    allowed = cs_cluster("values", "--config", config, "--tag", "t", "--project", "p", "-o", output, "--allow-empty")
    assert allowed.returncode == 0, allowed.stderr
    assert yaml.safe_load(output.read_text())["models"] == {}
    assert not render_chart(values_files=[output]).find("Deployment", component="model-sim")


@pytest.mark.parametrize("key", ["secret", "secrets"])
def test_secrets_reach_the_model_upper_cased_as_on_cs(tmp_path: Path, key: str) -> None:
    """C/S 0.16 gave a model its secrets as environment variables named in upper case; models read
    them that way (`some_secret` -> SOME_SECRET)."""
    import base64

    config = write_config(tmp_path, [{"owner": "a", "title": "b", key: {"some_secret": "s1", "Mixed_Case": "s2",
                                                                         "ALREADY": "s3"}}])
    output = tmp_path / "v.yaml"
    result = cs_cluster("values", "--config", config, "--tag", "t", "--project", "p", "-o", output)
    assert result.returncode == 0, result.stderr
    chart = render_chart(values_files=[output, tmp_path / "v.secrets.yaml"])
    data = chart.one("Secret", name="release-a-b-secrets")["data"]
    assert {name: base64.b64decode(value).decode() for name, value in data.items()} == {
        "SOME_SECRET": "s1", "MIXED_CASE": "s2", "ALREADY": "s3"}
    assert container(chart.one("Deployment", component="model-sim"))["envFrom"] == [
        {"secretRef": {"name": "release-a-b-secrets", "optional": True}}]


@pytest.mark.parametrize("key", ["secret", "secrets"])
def test_secret_names_that_differ_only_by_case_are_refused(tmp_path: Path, key: str) -> None:
    config = write_config(tmp_path, [{"owner": "a", "title": "b", key: {"api_key": "x", "API_KEY": "y"}}])
    result = cs_cluster("values", "--config", config, "--tag", "t", "--project", "p", "-o", tmp_path / "v.yaml")
    assert result.returncode == 2
    assert f"field '{key}.API_KEY': 'api_key' and 'API_KEY' differ only by case" in result.stderr
    assert not (tmp_path / "v.yaml").exists()
