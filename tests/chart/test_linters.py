"""Linted like the best charts (issue 14): chart-testing's `ct lint` with the chart's ci/*-values.yaml
cases, kubeconform in strict mode against the Kubernetes versions we support, and kube-score with
a short list of reviewed exceptions (.kube-score.yaml). All pinned and offline (ci/install-tools.sh
builds them from the Go module proxy; yamllint and yamale come from PyPI); any new finding fails."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import CHART, REPO, skip_or_fail

from cs_cluster import crdschemas, render_chart
from cs_cluster.helm import cache_dir, find_helm
from cs_cluster.render import DEFAULT_KUBERNETES_VERSIONS, parse_manifests

CASES = sorted((CHART / "ci").glob("*-values.yaml"))
EXCEPTIONS = yaml.safe_load((REPO / ".kube-score.yaml").read_text())["ignore"]


def tool(name: str) -> str:
    path = cache_dir() / "bin" / name
    if not os.access(path, os.X_OK):
        skip_or_fail(f"{name} is not built: run `bash ci/install-tools.sh` (needs Go)")
    return str(path)


def run(*arguments: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(map(str, arguments)), capture_output=True, text=True, check=False, env=env,
                          timeout=300)


def test_the_cases_cover_models_extensions_and_managed_secrets() -> None:
    assert [case.name for case in CASES] == ["extensions-values.yaml", "managed-secrets-values.yaml",
                                             "models-values.yaml"]
    # `helm package` leaves them out.
    assert "ci/" in (CHART / ".helmignore").read_text().splitlines()


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each case rendered (and validated, and kept for the checkov scan) by the render harness."""
    directory = tmp_path_factory.mktemp("lint-cases")
    files = {}
    for case in CASES:
        chart = render_chart(values_files=[case], release="cs", namespace="cs-workers")
        files[case.stem] = directory / f"{case.stem}.yaml"
        files[case.stem].write_text(chart.manifests)
    return files


@pytest.mark.parametrize("major", [3, 4], ids=["helm3", "helm4"])
def test_ct_lint(major: int, tmp_path: Path) -> None:
    """ct lint: Chart.yaml against ct's schema (yamale), yamllint with ct's rules on Chart.yaml and
    values.yaml, and `helm lint --strict` with each ci/*-values.yaml. Off, with reasons: maintainer
    validation (looks the names up on GitHub, which CI cannot reach) and ct's version-increment
    check (compares with a remote branch; tests/chart/test_chart_metadata.py holds the same rule
    against the previous commit)."""
    ct = tool("ct")
    etc = Path(ct).parent / "ct-etc"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "helm").symlink_to(find_helm(major))
    venv_bin = Path(os.environ.get("VIRTUAL_ENV") or REPO / ".venv") / "bin"
    for name in ("yamllint", "yamale"):
        if not (venv_bin / name).exists():
            skip_or_fail(f"{name} is not installed: run `bash ci/setup.sh`")
    env = {**os.environ, "PATH": f"{bin_dir}:{venv_bin}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    result = run(ct, "lint", "--charts", CHART.relative_to(REPO), "--validate-maintainers=false",
                 "--check-version-increment=false", "--chart-yaml-schema", etc / "chart_schema.yaml",
                 "--lint-conf", etc / "lintconf.yaml", "--helm-lint-extra-args=--strict", env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "Validation success!" in output and "All charts linted successfully" in output
    for case in CASES:
        assert f'Linting chart with values file "charts/cs-workers/ci/{case.name}"' in output, output


def references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for value in node:
            yield from references(value)


def local_references(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: ("#/$defs/" + value.split("/$defs/", 1)[1] if key == "$ref" else local_references(value))
                for key, value in node.items()}
    if isinstance(node, list):
        return [local_references(value) for value in node]
    return node


def kubeconform_schemas(directory: Path, objects: list[dict[str, Any]], versions: list[str]) -> str:
    """kubernetes-validate's strict schemas (the ones the render harness uses) in kubeconform's
    layout: their references point at a shared definitions file by its URL, which kubeconform
    cannot follow offline, so each kind's file gets the definitions it needs in itself. A custom
    resource (HTTPRoute) gets the schema cs_cluster.crdschemas made from its CRD."""
    import kubernetes_validate

    source = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    for version in versions:
        base = source / f"v{version}.0-local-strict"
        definitions = json.loads((base / "_definitions.json").read_text())["$defs"]
        target = directory / f"v{version}.0-local-strict"
        target.mkdir(parents=True, exist_ok=True)
        for kind, api_version in {(o["kind"], o["apiVersion"]) for o in objects}:
            group, _, api = api_version.rpartition("/")
            name = f"{kind.lower()}{'-' + group.split('.')[0] if group else ''}-{api}.json"
            try:
                schema = json.loads((base / name).read_text())
            except FileNotFoundError:  # a custom resource: the schema the render harness uses too
                schema = crdschemas.schema_for(kind, api_version)
            needed: set[str] = set()
            pending = list(references(schema))
            while pending:
                definition = pending.pop().split("/$defs/", 1)[1]
                if definition not in needed:
                    needed.add(definition)
                    pending += references(definitions[definition])
            schema = local_references(schema)
            schema["$defs"] = {each: local_references(definitions[each]) for each in needed}
            (target / name).write_text(json.dumps(schema))
    return str(directory / "{{.NormalizedKubernetesVersion}}-local-strict" / "{{.ResourceKind}}{{.KindSuffix}}.json")


def kubeconform(manifests: str, version: str, location: str) -> dict[str, Any]:
    result = subprocess.run([tool("kubeconform"), "-strict", "-summary", "-output", "json", "-kubernetes-version",
                             f"{version}.0", "-schema-location", location, "-"], input=manifests,
                            capture_output=True, text=True, check=False, timeout=300)
    report: dict[str, Any] = json.loads(result.stdout)
    report["returncode"] = result.returncode
    return report


@pytest.mark.parametrize("version", DEFAULT_KUBERNETES_VERSIONS)
def test_kubeconform_strict_finds_every_object_valid(rendered: dict[str, Path], version: str,
                                                     tmp_path: Path) -> None:
    manifests = "\n---\n".join(path.read_text() for path in rendered.values())
    objects = parse_manifests(manifests)
    location = kubeconform_schemas(tmp_path, objects, [version])
    report = kubeconform(manifests, version, location)
    assert report["returncode"] == 0, report["resources"]
    assert report["summary"] == {"valid": len(objects), "invalid": 0, "errors": 0, "skipped": 0}
    # Strict means strict: a misspelt field, as a hand-edited extraObjects might carry, is refused.
    typo = manifests + "\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: typo}\ndta: {}\n"
    refused = kubeconform(typo, version, location)
    assert refused["returncode"] == 1 and refused["summary"]["invalid"] == 1
    assert "dta" in json.dumps(refused["resources"])


def kube_score(files: list[Path], ignored: list[str]) -> tuple[int, list[str]]:
    arguments = [tool("kube-score"), "score", "--output-format", "ci"]
    for test in ignored:
        arguments += ["--ignore-test", test]
    result = run(*arguments, *files)
    findings = [line for line in result.stdout.splitlines() if line.startswith(("[CRITICAL]", "[WARNING]"))]
    return result.returncode, findings


def test_kube_score_finds_nothing_beyond_the_reviewed_exceptions(rendered: dict[str, Path]) -> None:
    code, findings = kube_score(list(rendered.values()), [entry["test"] for entry in EXCEPTIONS])
    assert findings == [] and code == 0, "\n".join(findings)


def test_each_kube_score_exception_is_known_reasoned_and_still_needed(rendered: dict[str, Path]) -> None:
    known = {line.split(",", 1)[0] for line in run(tool("kube-score"), "list").stdout.splitlines()}
    tests = [entry["test"] for entry in EXCEPTIONS]
    assert len(tests) == len(set(tests)) <= 5
    for entry in EXCEPTIONS:
        assert entry["test"] in known, entry["test"]
        assert len(entry["reason"].split()) >= 12, entry
        # Without this exception, kube-score finds something: it is not a stale entry.
        _, findings = kube_score(list(rendered.values()), [t for t in tests if t != entry["test"]])
        assert findings, f"{entry['test']} finds nothing any more: drop it from .kube-score.yaml"
