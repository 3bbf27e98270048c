"""GitOps (issue 14): `helm template | kubectl apply` and Argo CD render the chart without looking
Secrets up, so every generated Secret would be new on every render. With every Secret managed
outside the chart (the documented mode), two renders are the same, byte for byte."""

from __future__ import annotations

from typing import Any

from helpers import model, values_with

from cs_cluster import helm
from cs_cluster.render import parse_manifests

MANAGED = {"cs-redis", "cs-redis-users", "cs-gateway-token", "cs-worker", "cs-sum-secrets", "cs-pi-secrets"}
GITOPS = values_with(
    model("cs", "Sum", secrets={"existingSecret": "cs-sum-secrets"}),
    model("cs", "Pi", "dask", secrets={"existingSecret": "cs-pi-secrets"}),
    redis={"auth": {"existingSecret": "cs-redis", "modelUsersExistingSecret": "cs-redis-users"}},
    gateway={"auth": {"existingSecret": "cs-gateway-token"}},
    workerSecret={"existingSecret": "cs-worker"},
)


def secret_references(obj: Any) -> set[str]:
    """Every Secret an object names: secretKeyRef, secretRef (envFrom) and secret volumes."""
    found: set[str] = set()
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in ("secretKeyRef", "secretRef") and isinstance(value, dict):
                found.add(value["name"])
            elif key == "secret" and isinstance(value, dict) and "secretName" in value:
                found.add(value["secretName"])
            else:
                found |= secret_references(value)
    elif isinstance(obj, list):
        for value in obj:
            found |= secret_references(value)
    return found


def test_with_every_secret_managed_two_renders_are_the_same() -> None:
    first, second = helm.template(GITOPS), helm.template(GITOPS)
    assert first == second
    objects = parse_manifests(first)
    assert [o for o in objects if o["kind"] == "Secret"] == []
    assert set().union(*(secret_references(o) for o in objects)) == MANAGED


def test_without_them_each_render_makes_new_secrets() -> None:
    """Why the mode exists: what Helm keeps by looking the Secrets up, a plain render cannot."""
    values = values_with(model("cs", "Sum"))
    first, second = (parse_manifests(helm.template(values)) for _ in range(2))
    secrets = [{o["metadata"]["name"]: o["data"] for o in render if o["kind"] == "Secret"}
               for render in (first, second)]
    assert set(secrets[0]) == {"cs-workers-redis", "cs-workers-redis-users", "cs-workers-gateway-token"}
    for name in secrets[0]:
        assert secrets[0][name] != secrets[1][name], name
