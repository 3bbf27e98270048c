"""The render harness: `helm template`, parse, validate every object, look objects up.

In the style of Apache Airflow's chart tests, for our suite and for users' CI alike:

    chart = render_chart({"models": {...}})
    worker = chart.one("Deployment", component="dask-worker", model="pslmodels-ogusa")

Every object of every render is validated against the strict Kubernetes JSON schemas (no unknown
fields) of each version in `kubernetes_versions`, offline: kubernetes-validate's schema files,
checked by jsonschema-rs (compiled, ~100x faster than the pure-Python validator). The objects are
read as Kubernetes clients read YAML (`cs_cluster.manifests`).
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema_rs

from . import helm
from .errors import ManifestError, UsageError
from .manifests import iter_documents, read_documents

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
    """The non-empty documents of a multi-document YAML stream, as the API server will get them.

    Raises ManifestError for YAML that is not valid, ToolError without the k8s-yaml-json helper.
    """
    return [document for document in read_documents(manifests) if document]


def _schema_version(version: str) -> str:
    """kubernetes-validate names versions like 1.33.0; a patch release (1.33.4) has its minor's schemas."""
    return ".".join(version.lstrip("v").split(".")[:2]) + ".0"


@functools.cache
def _definitions(version: str) -> Any:
    from kubernetes_validate import utils

    return utils.schema_contents(f"kubernetes-json-schema/v{version}-local-strict/_definitions.json", version)


def _kind_schema(kind: str, api_version: str, version: str) -> Any:
    """The strict schema of one kind; FileNotFoundError when the version has none for it. A custom
    resource the chart can render (an HTTPRoute, a ServiceMonitor) has the schema cs_cluster.crdschemas
    keeps, made from its CRD, for every Kubernetes version."""
    from kubernetes_validate import utils

    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        return utils.schema_contents(
            f"kubernetes-json-schema/v{version}-local-strict/{kind.lower()}-{group_version}.json", version
        )
    except FileNotFoundError:
        from .crdschemas import schema_for

        return schema_for(kind, api_version)


@functools.cache
def _validator(kind: str, api_version: str, version: str) -> Any:
    """The pure-Python (jsonschema) validator of a kind, built once: only for an object the
    compiled one rejected, to name the error as before (jsonschema's best_match)."""
    import jsonschema
    from referencing import Registry, Resource

    schema = _kind_schema(kind, api_version, version)
    registry = Resource.from_contents(_definitions(version)) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


@functools.cache
def _registry(version: str) -> jsonschema_rs.Registry:
    return jsonschema_rs.Registry([(_definitions(version)["$id"], _definitions(version))])


@functools.cache
def _compiled_validator(kind: str, api_version: str, version: str) -> jsonschema_rs.Validator:
    """The compiled validator of a kind, built once: the same schema files and checks as
    jsonschema's (formats are annotations in both, as in draft 2020-12), ~100x faster."""
    return jsonschema_rs.validator_for(_kind_schema(kind, api_version, version), registry=_registry(version))


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


_preparing: threading.Thread | None = None


def prepare_validation(kubernetes_versions: Sequence[str]) -> None:
    """Start building what validation needs (the imports, the versions' compiled definitions), in
    a thread, so that it happens while helm renders: ~0.15 s off a validating command.

    Errors are left for validate_objects to raise in the caller's thread, where they are reported.
    """
    global _preparing

    def prepare() -> None:
        try:
            import docker_image.reference  # noqa: F401

            for version in kubernetes_versions:
                _registry(_schema_version(str(version)))
        except Exception:  # noqa: S110  # reported by validate_objects, which builds them again
            pass

    _preparing = threading.Thread(target=prepare, name="prepare-validation", daemon=True)
    _preparing.start()


def validate_objects(objects: Iterable[dict[str, Any]], kubernetes_versions: Sequence[str]) -> None:
    """Raise ManifestError for the first object the strict schemas reject, or whose container
    images are not valid references; UsageError for a version without schemas."""
    if _preparing is not None:
        _preparing.join()  # never build the same validators twice at once
    check_kubernetes_versions(kubernetes_versions)
    for obj in objects:
        name = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
        check_image_references(obj, name)
        for version in kubernetes_versions:
            key = (str(obj.get("kind")), str(obj.get("apiVersion")), _schema_version(version))
            try:
                valid = _compiled_validator(*key).is_valid(obj)
            except (FileNotFoundError, OSError):
                raise ManifestError(
                    f"no Kubernetes {version} schema for {obj.get('kind')} {obj.get('apiVersion')} ({name})"
                ) from None
            if not valid:
                raise ManifestError(f"{name} is invalid for Kubernetes {version} at {_explain(obj, key)}")


def validated_render(manifests: str, kubernetes_versions: Sequence[str]) -> RenderedChart:
    """The objects of `manifests`, each validated as validate_objects does, while k8s-yaml-json is
    still converting the ones after it (~0.1 s off a 1000-model render). Raises what
    parse_manifests and validate_objects raise."""
    objects: list[dict[str, Any]] = []

    def collected() -> Iterator[dict[str, Any]]:
        for document in iter_documents(manifests):
            if document:
                objects.append(document)
                yield document

    validate_objects(collected(), kubernetes_versions)
    return RenderedChart(objects, manifests)


def _explain(obj: dict[str, Any], key: tuple[str, str, str]) -> str:
    """Where and why a rejected object is invalid: jsonschema's best match, as the harness always
    named it; the compiled validator's first error should the two ever disagree."""
    import jsonschema

    best = jsonschema.exceptions.best_match(_validator(*key).iter_errors(obj))
    if best is not None:
        path, message = list(best.path), best.message
    else:
        first = next(iter(_compiled_validator(*key).iter_errors(obj)))
        path, message = list(first.instance_path), first.message
    return f"{'/'.join(str(part) for part in path) or 'the top'}: {message}"


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
    api_versions: Sequence[str] = (),
) -> RenderedChart:
    """Render the chart with `values` and return its objects, each validated when `validate`.
    `api_versions` are API groups/versions the render assumes the cluster serves (helm's
    --api-versions, the chart's .Capabilities.APIVersions), e.g. KEDA's `keda.sh/v1alpha1`."""
    if validate:
        prepare_validation(kubernetes_versions)
    manifests = helm.template(
        values,
        values_files=values_files,
        release=release,
        namespace=namespace,
        chart=chart,
        show_only=show_only,
        kube_version=kubernetes_versions[-1] if kubernetes_versions else None,
        helm=helm_binary,
        extra=[argument for version in api_versions for argument in ("--api-versions", version)],
    )
    if validate:
        return validated_render(manifests, kubernetes_versions)
    return RenderedChart(parse_manifests(manifests), manifests)
