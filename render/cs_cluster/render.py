"""The render harness: `helm template`, parse, validate every object, look objects up.

In the style of Apache Airflow's chart tests, for our suite and for users' CI alike:

    chart = render_chart({"models": {...}})
    worker = chart.one("Deployment", component="dask-worker", model="pslmodels-ogusa")

Every object of every render is validated against the strict Kubernetes JSON schemas (no unknown
fields) of each version in `kubernetes_versions`, offline, through kubernetes-validate.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import helm
from .errors import ManifestError, UsageError

# The oldest Kubernetes we test against and the newest the schemas know.
DEFAULT_KUBERNETES_VERSIONS = ("1.33", "1.37")

# Short names for the well-known labels, so tests read `component="gateway"`.
LABEL_ALIASES = {
    "name": "app.kubernetes.io/name",
    "instance": "app.kubernetes.io/instance",
    "component": "app.kubernetes.io/component",
    "part_of": "app.kubernetes.io/part-of",
    "model": "compute.studio/model",
}


@dataclass
class RenderedChart:
    """The objects one render produced, with lookups by kind, name and label."""

    objects: list[dict[str, Any]]
    manifests: str = field(repr=False, default="")

    def __iter__(self) -> Any:
        return iter(self.objects)

    def __len__(self) -> int:
        return len(self.objects)

    def find(self, kind: str | None = None, name: str | None = None, **labels: str) -> list[dict[str, Any]]:
        """Objects of `kind` (any when None) whose name and labels match; label keys may be aliases."""
        wanted = {LABEL_ALIASES.get(key, key): value for key, value in labels.items()}
        found = []
        for obj in self.objects:
            if kind is not None and obj.get("kind") != kind:
                continue
            metadata = obj.get("metadata") or {}
            if name is not None and metadata.get("name") != name:
                continue
            object_labels = metadata.get("labels") or {}
            if all(object_labels.get(key) == value for key, value in wanted.items()):
                found.append(obj)
        return found

    def one(self, kind: str | None = None, name: str | None = None, **labels: str) -> dict[str, Any]:
        """The single object that matches; fails loudly on none or several."""
        found = self.find(kind, name, **labels)
        if len(found) != 1:
            names = [f"{o.get('kind')}/{o['metadata']['name']}" for o in found]
            raise LookupError(f"expected one {kind or 'object'} with name={name} labels={labels}, found {names}")
        return found[0]

    def kinds(self) -> list[tuple[str, str]]:
        return sorted((o["kind"], o["metadata"]["name"]) for o in self.objects)

    def pod_templates(self) -> dict[str, dict[str, Any]]:
        """Each workload's pod template, keyed 'Kind/name': what decides whether pods roll."""
        return {
            f"{o['kind']}/{o['metadata']['name']}": o["spec"]["template"]
            for o in self.objects
            if o.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job")
        }


def parse_manifests(manifests: str) -> list[dict[str, Any]]:
    """The non-empty documents of a multi-document YAML stream."""
    return [document for document in yaml.safe_load_all(manifests) if document]


def _schema_version(version: str) -> str:
    """kubernetes-validate names versions like 1.33.0; a patch release (1.33.4) has its minor's schemas."""
    return ".".join(version.lstrip("v").split(".")[:2]) + ".0"


@functools.cache
def _definitions(version: str) -> Any:
    from kubernetes_validate import utils

    return utils.schema_contents(f"kubernetes-json-schema/v{version}-local-strict/_definitions.json", version)


@functools.cache
def _validator(kind: str, api_version: str, version: str) -> Any:
    """One strict-schema validator per (kind, apiVersion, Kubernetes version), built once.

    kubernetes_validate.validate reads and parses two schema files for every object it checks;
    building the validator once and reusing it makes a large render's validation ~20x faster
    (benchmarks/README.md), with the same schemas and the same answers.
    """
    import jsonschema
    from kubernetes_validate import utils
    from referencing import Registry, Resource

    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema = utils.schema_contents(
        f"kubernetes-json-schema/v{version}-local-strict/{kind.lower()}-{group_version}.json", version
    )
    registry = Resource.from_contents(_definitions(version)) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    spec = obj.get("spec") or {}
    if obj.get("kind") == "Pod":
        return spec
    template_spec = ((spec.get("jobTemplate") or {}).get("spec") or spec).get("template", {}).get("spec")
    return template_spec if isinstance(template_spec, dict) else None


def check_image_references(obj: dict[str, Any], name: str) -> None:
    """Raise ManifestError for a container image that is not a valid reference (distribution's
    grammar): the schemas accept any string, the kubelet would fail with InvalidImageName."""
    from docker_image import reference

    spec = _pod_spec(obj) or {}
    for group in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(group) or []:
            image = container.get("image")
            try:
                reference.Reference.parse(image)
            except Exception as error:  # the library raises its own classes, and TypeError on None
                raise ManifestError(
                    f"{name}: container {container.get('name')} has image {image!r}, which is not a valid "
                    f"image reference ({error}); write image tags in quotes in YAML"
                ) from None


def check_kubernetes_versions(kubernetes_versions: Sequence[str]) -> None:
    """UsageError for a Kubernetes version the bundled schemas do not cover, naming those they do."""
    from kubernetes_validate import utils

    known = utils.all_versions()
    for version in kubernetes_versions:
        if _schema_version(str(version)) not in known:
            minors = sorted({".".join(v.split(".")[:2]) for v in known}, key=lambda v: tuple(map(int, v.split("."))))
            raise UsageError(f"no Kubernetes schemas for version {version!r}: use one of {minors[0]} to {minors[-1]}")


def validate_objects(objects: Iterable[dict[str, Any]], kubernetes_versions: Sequence[str]) -> None:
    """Raise ManifestError for the first object the strict schemas reject, or whose container
    images are not valid references; UsageError for a version without schemas."""
    import jsonschema

    check_kubernetes_versions(kubernetes_versions)
    for obj in objects:
        name = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
        check_image_references(obj, name)
        for version in kubernetes_versions:
            try:
                validator = _validator(str(obj.get("kind")), str(obj.get("apiVersion")), _schema_version(version))
            except (FileNotFoundError, OSError):
                raise ManifestError(
                    f"no Kubernetes {version} schema for {obj.get('kind')} {obj.get('apiVersion')} ({name})"
                ) from None
            error = jsonschema.exceptions.best_match(validator.iter_errors(obj))
            if error is not None:
                where = "/".join(str(part) for part in error.path)
                raise ManifestError(
                    f"{name} is invalid for Kubernetes {version} at {where or 'the top'}: {error.message}"
                )


def render_chart(
    values: dict[str, Any] | None = None,
    *,
    values_files: Sequence[str | Path] = (),
    show_only: Sequence[str] = (),
    kubernetes_versions: Sequence[str] = DEFAULT_KUBERNETES_VERSIONS,
    release: str = "release",
    namespace: str = "cs-workers",
    chart: str | Path | None = None,
    helm_binary: str | None = None,
    validate: bool = True,
) -> RenderedChart:
    """Render the chart with `values` and return its objects, each validated when `validate`."""
    manifests = helm.template(
        values,
        values_files=values_files,
        release=release,
        namespace=namespace,
        chart=chart,
        show_only=show_only,
        kube_version=kubernetes_versions[-1] if kubernetes_versions else None,
        helm=helm_binary,
    )
    objects = parse_manifests(manifests)
    if validate:
        validate_objects(objects, kubernetes_versions)
    return RenderedChart(objects, manifests)
