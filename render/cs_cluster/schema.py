"""values.schema.yaml -> values.schema.json, docs/values.md and the chart's README.md; values.yaml ->
files/value-keys.json.

The YAML schema is the single source of truth (as in zero-to-jupyterhub): Helm validates values
against the JSON made from it, and the reference docs are made from it too, so neither can drift.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from .errors import ToolError


def load_schema(chart: Path) -> dict[str, Any]:
    schema: dict[str, Any] = yaml.safe_load((chart / "values.schema.yaml").read_text())
    return schema


def schema_json(chart: Path) -> str:
    return json.dumps(load_schema(chart), indent=2) + "\n"


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    reference = node.get("$ref")
    if not reference:
        return node
    target: Any = schema
    for part in reference.lstrip("#/").split("/"):
        target = target[part]
    return {**target, **{k: v for k, v in node.items() if k != "$ref"}}


def _type_of(node: dict[str, Any]) -> str:
    if "enum" in node:
        return " \\| ".join(f"`{value}`" for value in node["enum"])
    if "oneOf" in node:
        return "quantity"
    kind = node.get("type", "any")
    return " or ".join(kind) if isinstance(kind, list) else str(kind)


def _rows(schema: dict[str, Any], node: dict[str, Any], path: str, defaults: Any) -> Iterator[str]:
    node = _resolve(schema, node)
    if path:
        default = "" if defaults is None or isinstance(defaults, dict) else f"`{json.dumps(defaults)}`"
        description = " ".join(str(node.get("description", "")).split()).replace("|", "\\|")
        yield f"| `{path}` | {_type_of(node)} | {default} | {description} |"
    for name, child in (node.get("properties") or {}).items():
        if child.get("$ref") == "#/definitions/removedModelKey":
            continue  # kept in the schema only so the chart can name the new key
        child_defaults = defaults.get(name) if isinstance(defaults, dict) else None
        yield from _rows(schema, child, f"{path}.{name}" if path else name, child_defaults)
    for pattern, child in (node.get("patternProperties") or {}).items():
        yield from _rows(schema, child, f"{path}.<{'slug' if path == 'models' else pattern}>", None)


def _values_table(chart: Path) -> list[str]:
    schema = load_schema(chart)
    defaults = yaml.safe_load((chart / "values.yaml").read_text()) or {}
    return ["| key | type | default | description |", "| --- | --- | --- | --- |", *_rows(schema, schema, "", defaults)]


def values_markdown(chart: Path) -> str:
    lines = [
        "# Values reference",
        "",
        "Generated from `charts/cs-workers/values.schema.yaml` by `cs-cluster schema --write`; do not edit.",
        "",
        *_values_table(chart),
    ]
    return "\n".join(lines) + "\n"


def chart_readme(chart: Path) -> str:
    """The chart's README.md, what `helm show readme` and Artifact Hub show: Chart.yaml's
    description, the install, upgrade and uninstall commands, and the values table of docs/values.md
    (the schema's descriptions, so a value is described the same everywhere)."""
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    name, version = meta["name"], meta["version"]
    reference = f"oci://REGISTRY/charts/{name}"
    lines = [
        f"# {name}",
        "",
        " ".join(str(meta.get("description", "")).split()),
        "",
        f"Chart {version}, application {meta.get('appVersion')}, Kubernetes `{meta.get('kubeVersion')}`.",
        "Generated from `values.schema.yaml` and `Chart.yaml` by `cs-cluster schema --write`; do not edit.",
        "",
        "## Install",
        "",
        "Write the values from a worker_config (a list of models, as Compute Studio 0.16 had) with",
        "`cs-cluster values` (the `cs-workers` Python package), and the webserver's address and token",
        "in a git-ignored file; `REGISTRY` is where the chart was pushed (`helm push`), or give the",
        "chart's directory instead of the `oci://` reference:",
        "",
        "```sh",
        "cs-cluster values --config worker_config.yaml --tag oct30.0 --project my-project -o values.yaml",
        "(umask 077 && cat > worker.secrets.yaml <<'EOF'",
        "workerSecret:",
        '  values: {COMP_URL: "https://compute.studio", COMP_API_TOKEN: "...", BUCKET: "..."}',
        "EOF",
        ")",
        f"helm install cs-workers {reference} --version {version} \\",
        "  --namespace cs-workers --create-namespace -f values.yaml -f worker.secrets.yaml --wait",
        "helm test cs-workers --namespace cs-workers",
        "```",
        "",
        "The Redis password, the gateway token and the models' Redis passwords are generated on install",
        "and kept across upgrades, and the worker and model Secrets are kept when an upgrade omits their",
        "values: Helm looks them up in the cluster. `helm template | kubectl apply` and Argo CD cannot look,",
        "so there every render would make new ones. For them, name Secrets you manage instead",
        "(`redis.auth.existingSecret`, `redis.auth.modelUsersExistingSecret`, `gateway.auth.existingSecret`,",
        "`workerSecret.existingSecret`, each model's `secrets.existingSecret`): then two renders are the",
        "same, and `helm template --skip-tests ... | kubectl apply -f -` applied again changes nothing.",
        "",
        "## Upgrade",
        "",
        "```sh",
        f"helm upgrade cs-workers {reference} --version {version} \\",
        "  --namespace cs-workers -f values.yaml --wait",
        "```",
        "",
        "Give all your values files again, or use `--reset-then-reuse-values` (Helm 3.14 and later);",
        "not `--reuse-values`, which renders a newer chart without the defaults it added (the chart",
        "stops and says so). What changed and what to do: `CHANGELOG.md` beside this file.",
        "",
        "## Uninstall",
        "",
        "```sh",
        "helm uninstall cs-workers --namespace cs-workers",
        "```",
        "",
        "This keeps, on purpose, the Redis PersistentVolumeClaim (queued work) and the two Secrets that go",
        "with it (the Redis password and the gateway token), so that a reinstall finds them. Delete them",
        "to start from nothing:",
        "`kubectl --namespace cs-workers delete pvc,secret -l app.kubernetes.io/instance=cs-workers`.",
        "",
        "## Values",
        "",
        *_values_table(chart),
    ]
    return "\n".join(lines) + "\n"


def _key_tree(defaults: Any) -> Any:
    """The keys of every mapping of the defaults, nested (a leaf, or an empty mapping, is null)."""
    if isinstance(defaults, dict) and defaults:
        return {key: _key_tree(value) for key, value in defaults.items()}
    return None


def value_keys_json(chart: Path) -> str:
    """files/value-keys.json: the keys of the chart's values.yaml, for the chart's own check that
    no default went missing (templates cannot read values.yaml itself, and `helm upgrade
    --reuse-values` renders a newer chart with an older chart's defaults)."""
    defaults = yaml.safe_load((chart / "values.yaml").read_text()) or {}
    return json.dumps(_key_tree(defaults), indent=1, sort_keys=True) + "\n"


def generated_files(chart: Path) -> dict[Path, str]:
    """Each generated file and the text it must have."""
    return {
        chart / "values.schema.json": schema_json(chart),
        chart / "files" / "value-keys.json": value_keys_json(chart),
        chart.parent.parent / "docs" / "values.md": values_markdown(chart),
        chart / "README.md": chart_readme(chart),
    }


def stale_files(chart: Path) -> list[Path]:
    """Generated files whose content lags behind values.schema.yaml."""
    stale = []
    for path, text in generated_files(chart).items():
        if not path.exists() or path.read_text() != text:
            stale.append(path)
    return stale


def write_generated(chart: Path) -> list[Path]:
    try:
        for path, text in generated_files(chart).items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    except (OSError, yaml.YAMLError) as error:
        raise ToolError(f"cannot write the generated schema files: {error}") from None
    return list(generated_files(chart))
