"""Validation at helm's speed keeps its strictness (issue 15).

The compiled validator (jsonschema-rs) must give jsonschema's verdict on every object, and the
manifests must be read as Kubernetes clients read them (k8s-yaml-json), so a deliberately wrong
field fails as before, also in a render of 1000 models.
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from helpers import CHART, cs_cluster, write_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cs_cluster import ManifestError, RenderedChart, helm
from cs_cluster.manifests import read_documents
from cs_cluster.render import _compiled_validator, _schema_version, _validator, parse_manifests

VERSIONS = ("1.33", "1.37")


def verdicts(obj: dict[str, Any]) -> list[tuple[bool, bool]]:
    """(compiled validator's verdict, jsonschema's verdict) for each Kubernetes version."""
    found = []
    for version in VERSIONS:
        key = (obj["kind"], obj["apiVersion"], _schema_version(version))
        found.append((_compiled_validator(*key).is_valid(obj), next(_validator(*key).iter_errors(obj), None) is None))
    return found


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside an object: mapping keys and list indexes."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths(child, (*prefix, index))
    return found


# Values of every JSON type, and strings the schemas' enums hold or nearly hold.
ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 70000), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["TCP", "tcp", "Always", "IfNotPresent", "ClusterIP", "Nope", "", "1", "80", "RuntimeDefault"]),
    st.lists(st.integers(0, 3), max_size=2), st.dictionaries(st.sampled_from(["a", "name", "port"]),
                                                              st.integers(0, 3), max_size=2),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_compiled_validator_gives_jsonschemas_verdict_on_mutated_objects(
        example_chart: RenderedChart, data: st.DataObject) -> None:
    obj = copy.deepcopy(example_chart.objects[data.draw(st.integers(0, len(example_chart.objects) - 1))])
    # kind and apiVersion choose the schema; a wrong one is "no schema" (tested in test_harness).
    where = data.draw(st.sampled_from([path for path in paths(obj)[1:] if path[0] not in ("kind", "apiVersion")]))
    parent = obj
    for part in where[:-1]:
        parent = parent[part]
    action = data.draw(st.sampled_from(["replace", "delete", "add an unknown key"]))
    if action == "replace":
        parent[where[-1]] = data.draw(ANY_VALUE)
    elif action == "delete" and isinstance(parent, dict):
        del parent[where[-1]]
    elif isinstance(parent.get(where[-1]) if isinstance(parent, dict) else parent[where[-1]], dict):
        (parent[where[-1]])["unknownField"] = data.draw(ANY_VALUE)
    for compiled, reference in verdicts(obj):
        assert compiled == reference, (where, action)


def test_every_object_of_the_example_is_valid_for_both(example_chart: RenderedChart) -> None:
    for obj in example_chart.objects:
        assert verdicts(obj) == [(True, True)] * len(VERSIONS), obj["metadata"]["name"]


def test_manifests_are_read_as_kubernetes_reads_yaml() -> None:
    """YAML 1.1 as sigs.k8s.io/yaml reads it: octal, yes/on, exponents without a dot; quoted stays text."""
    documents = read_documents("a: 0400\nb: yes\nc: 'yes'\nd: 1e3\ne: \"0400\"\nf: 2001-12-14\n---\n# only a comment\n")
    assert documents == [{"a": 256, "b": True, "c": "yes", "d": 1000, "e": "0400", "f": "2001-12-14"}, None]
    assert parse_manifests("---\nkind: A\n---\n\n---\nkind: B\n") == [{"kind": "A"}, {"kind": "B"}]


def test_yaml_that_is_not_valid_is_one_clear_error() -> None:
    with pytest.raises(ManifestError, match=r"not valid YAML: document 2: .*line 1"):
        read_documents("kind: A\n---\nkind: [B\n")


@pytest.mark.slow
def test_a_wrong_field_in_one_model_of_1000_still_fails_the_default_template(tmp_path: Path) -> None:
    """The whole command at 1000 models, with a chart that gives the last model's sim worker a
    field Kubernetes does not know: refused, naming it, and nothing printed."""
    models = [{"owner": f"Owner{i:04d}", "title": f"Model-{i:04d}", "branch": "main",
               "cluster_type": "single-core", "repo_url": f"https://example.com/m{i}"} for i in range(1000)]
    config = write_config(tmp_path, models)
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    template = chart / "templates" / "model" / "_worker.tpl"
    text = template.read_text()
    anchor = "      terminationGracePeriodSeconds:"
    assert text.count(anchor) == 1
    template.write_text(text.replace(anchor, '      {{- if and (eq .slug "owner0999-model0999") (not $isIo) }}\n'
                                             "      priorityClass: high\n      {{- end }}\n" + anchor))
    environment = {**os.environ, "CS_RECORD_RENDERS_DIR": ""}
    result = cs_cluster("template", "--config", config, "--tag", "v1", "--project", "p", "--chart", chart,
                        env=environment, timeout=300)
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "cs-cluster: error: Deployment/cs-workers-owner0999-model0999-sim is invalid for Kubernetes 1.33 at "
        "spec/template/spec: Additional properties are not allowed ('priorityClass' was unexpected)"]
    # And the same chart without the wrong field passes: the failure was that field.
    template.write_text(text)
    result = cs_cluster("template", "--config", config, "--tag", "v1", "--project", "p", "--chart", chart,
                        env=environment, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().endswith("objects rendered, all valid for Kubernetes 1.33, 1.37")
    assert result.stdout.count("\nkind: Deployment\n") == 2 + 2 * 1000


def test_values_reach_the_chart_as_written_through_the_json_values_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """cs_cluster hands helm its values as JSON: text with characters YAML escapes, line breaks
    to YAML 1.1, characters beyond the BMP and YAML 1.1's special words comes back unchanged."""
    monkeypatch.delenv("CS_RECORD_RENDERS_DIR", raising=False)  # a toy chart, not one for the scans
    chart = tmp_path / "echo"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: echo\nversion: 0.1.0\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: echo}\ndata:\n"
        "{{- range $key, $value := .Values.texts }}\n  {{ $key | quote }}: {{ $value | quote }}\n{{- end }}\n")
    texts = {"nel": "a\x85b", "separators": "a\u2028b\u2029c", "bom": "\ufeffx", "control": "a\x07\x7fb",
             "astral": "\U0001f600 \U00010000", "accents": "é ü", "yes": "yes", "octal": "0755", "float": "1e3",
             "quotes": "'\"\\", "tab": "a\tb", "newline": "a\nb"}
    manifests = helm.template({"texts": texts}, chart=chart)
    assert parse_manifests(manifests)[0]["data"] == texts
