"""Strict JSON schemas of the custom resources the chart can render (an HTTPRoute of the Gateway API,
a ServiceMonitor of the Prometheus operator, KEDA's ScaledObject and TriggerAuthentication), for the
render harness, which judges them like the built-in kinds (cs_cluster.render: kubernetes-validate's
strict schemas).

They are made from the CustomResourceDefinitions their projects publish (in their Go modules,
pinned in CRD_SOURCES) by `python -m cs_cluster.crdschemas CRD.yaml...`, and kept in
cs_cluster/crd-schemas/ so that rendering needs nothing at run time; tests/chart/test_crd_schemas.py
checks the kept files against the CRDs. A CRD's openAPIV3Schema becomes a JSON schema as the API
server reads it, made strict as kubernetes-validate's `-strict` schemas are: an object with
`properties` and neither `additionalProperties` nor `x-kubernetes-preserve-unknown-fields` allows
no other field (where the API server would drop it silently); `x-kubernetes-int-or-string` is an
integer or a string; `nullable` admits null.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any

import yaml

DIRECTORY = Path(__file__).parent / "crd-schemas"

# The Go module, version and file of each CRD the kept schemas are made from.
CRD_SOURCES = {
    "httproute-gateway.networking.k8s.io-v1.json": (
        "sigs.k8s.io/gateway-api", "v1.6.3", "config/crd/standard/gateway.networking.k8s.io_httproutes.yaml"),
    "servicemonitor-monitoring.coreos.com-v1.json": (
        "github.com/prometheus-operator/prometheus-operator", "v0.88.0",
        "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml"),
    "scaledobject-keda.sh-v1alpha1.json": (
        "github.com/kedacore/keda/v2", "v2.21.0", "config/crd/bases/keda.sh_scaledobjects.yaml"),
    "triggerauthentication-keda.sh-v1alpha1.json": (
        "github.com/kedacore/keda/v2", "v2.21.0", "config/crd/bases/keda.sh_triggerauthentications.yaml"),
}


def file_name(kind: str, api_version: str) -> str:
    group, _, version = api_version.rpartition("/")
    return f"{kind.lower()}-{group}-{version}.json"


@functools.cache
def schema_for(kind: str, api_version: str) -> Any:
    """The kept strict schema of a custom resource; FileNotFoundError when there is none."""
    return json.loads((DIRECTORY / file_name(kind, api_version)).read_text())


def _strict(node: Any) -> Any:
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    result = {key: _strict(value) for key, value in node.items()
              if key not in ("x-kubernetes-int-or-string", "nullable")}
    if node.get("x-kubernetes-int-or-string"):
        result.pop("type", None)
        result["type"] = ["integer", "string"]
    if node.get("nullable") and "type" in result:
        kinds = result["type"] if isinstance(result["type"], list) else [result["type"]]
        result["type"] = [*kinds, "null"]
    if ("properties" in node and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        result["additionalProperties"] = False
    return result


def strict_schemas(crd: dict[str, Any]) -> dict[str, Any]:
    """Each served version of a CRD as a strict schema, by file name."""
    spec = crd["spec"]
    group, kind = spec["group"], spec["names"]["kind"]
    schemas = {}
    for version in spec["versions"]:
        if not version.get("served"):
            continue
        api_version = f"{group}/{version['name']}"
        schema = _strict(version["schema"]["openAPIV3Schema"])
        properties = schema.setdefault("properties", {})
        properties["apiVersion"] = {"type": "string", "enum": [api_version]}
        properties["kind"] = {"type": "string", "enum": [kind]}
        properties.setdefault("metadata", {"type": "object"})
        schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
        name = file_name(kind, api_version)
        schemas[name] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"urn:cs-workers:crd-schema:{name}",
            "$comment": f"Made by cs_cluster.crdschemas from the {crd['metadata']['name']} CustomResourceDefinition.",
            **schema,
        }
    return schemas


def main(paths: list[str]) -> int:
    """Write the strict schemas of the CRDs in these files into cs_cluster/crd-schemas/."""
    for path in paths:
        for document in yaml.safe_load_all(Path(path).read_text()):
            if document and document.get("kind") == "CustomResourceDefinition":
                for name, schema in strict_schemas(document).items():
                    if name in CRD_SOURCES:
                        (DIRECTORY / name).write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
                        print(f"wrote {DIRECTORY / name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
