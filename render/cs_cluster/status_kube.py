"""`cs-cluster status` of a release in a cluster, read through the Kubernetes API (the current
kubeconfig). Changes nothing.

- Workloads (Deployments and StatefulSets) and their pods are found by the chart's stable labels
  (`app.kubernetes.io/instance`, `app.kubernetes.io/part-of`), grouped by `compute.studio/model` and
  `app.kubernetes.io/component`; a workload's pods are those its own selector matches. Ready and
  desired come from the workload's status; the image tag from the running pods' main container
  (the first container of the workload's pod template), as the kubelet reports it.
- The gateway's `GET /load` is asked over a port-forward to one of its Ready pods (the Kubernetes
  client's, as `kubectl port-forward` does it: API server, then kubelet), with the token the
  gateway's own Deployment reads (its `CS_GATEWAY_TOKEN` secretKeyRef), read from the Secret and
  never printed. Not through the API server's service proxy: the API server removes the
  `Authorization` header of every request it authenticates, so the gateway's bearer token could
  never reach it that way.
- Model names (owner/title) come from the gateway's routing table (its ConfigMap's routes.json).

Needs, in the namespace: list Deployments, StatefulSets, pods and ConfigMaps; get the gateway
token's Secret; get and create pods/portforward (a websocket port-forward is a GET, which
Kubernetes 1.35 and later also authorize as create).
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import ToolError, UsageError
from .status import (
    COMPONENT_LABEL,
    GATEWAY,
    MODEL_LABEL,
    REDIS,
    ClusterStatus,
    Load,
    PartStatus,
    Workload,
    assemble,
    image_tag,
    parse_loads,
    release_selector,
    select,
)

TOKEN_VARIABLE = "CS_GATEWAY_TOKEN"  # noqa: S105 - a variable name (docs/runtime-contract.md), not a token
GATEWAY_PORT_NAME = "http"  # the gateway container's port (templates/gateway/deployment.yaml)
_REQUEST_TIMEOUT = 60


def _matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A label selector (matchLabels and matchExpressions) against a pod's labels."""
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
        present = key in labels
        if (operator == "In" and labels.get(key) not in values) or (operator == "NotIn" and labels.get(key) in values) \
                or (operator == "Exists" and not present) or (operator == "DoesNotExist" and present):
            return False
    return bool(selector.get("matchLabels") or selector.get("matchExpressions"))


def _main_container(workload: Mapping[str, Any]) -> str | None:
    containers = ((workload.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []
    return str(containers[0].get("name")) if containers else None


def _is_ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def running_tags(pods: Sequence[Mapping[str, Any]], container: str | None) -> tuple[str, ...]:
    """The image tags `container` runs in `pods`: from each running container's status (what the
    kubelet runs), or its spec where the status names the image by digest only."""
    tags: set[str] = set()
    for pod in pods:
        spec_images = {c.get("name"): str(c.get("image", "")) for c in (pod.get("spec") or {}).get("containers") or []}
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            if status.get("name") != container or "running" not in (status.get("state") or {}):
                continue
            image = str(status.get("image") or "")
            if not image or image.startswith("sha256:"):
                image = spec_images.get(container, "")
            if image:
                tags.add(image_tag(image))
    return tuple(sorted(tags))


def _stuck(workload: Mapping[str, Any]) -> str | None:
    """A Deployment whose rollout passed its progress deadline says so in its Progressing condition."""
    for condition in (workload.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("status") == "False":
            return str(condition.get("message") or condition.get("reason") or "not progressing")
    return None


def workload_status(workload: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> Workload:
    """One Deployment or StatefulSet as the API serves it, with the release's pods."""
    metadata = workload.get("metadata") or {}
    labels = metadata.get("labels") or {}
    spec, status = workload.get("spec") or {}, workload.get("status") or {}
    selector = spec.get("selector") or {}
    mine = [pod for pod in pods if _matches(selector, (pod.get("metadata") or {}).get("labels") or {})]
    replicas = spec.get("replicas")
    return Workload(kind=str(workload.get("kind")), name=str(metadata.get("name")),
                    component=str(labels.get(COMPONENT_LABEL, "")), model=labels.get(MODEL_LABEL),
                    desired=1 if replicas is None else int(replicas), ready=int(status.get("readyReplicas") or 0),
                    updated=int(status.get("updatedReplicas") or 0), tags=running_tags(mine, _main_container(workload)),
                    stuck=_stuck(workload))


def model_names(config_maps: Sequence[Mapping[str, Any]]) -> dict[str, tuple[str, str]]:
    """slug -> (owner, title), from the gateway's routing table (its ConfigMap's routes.json)."""
    for config_map in config_maps:
        if ((config_map.get("metadata") or {}).get("labels") or {}).get(COMPONENT_LABEL) != GATEWAY:
            continue
        text = (config_map.get("data") or {}).get("routes.json")
        if not text:
            continue
        try:
            routes = json.loads(text).get("models") or {}
        except (ValueError, AttributeError):
            return {}
        return {slug: (str(route.get("owner")), str(route.get("title")))
                for slug, route in routes.items() if isinstance(route, dict)}
    return {}


class _Api:
    """The Kubernetes client for the current kubeconfig, with our errors."""

    def __init__(self) -> None:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        try:
            config.load_kube_config()
        except (ConfigException, OSError, TypeError) as error:
            raise ToolError(f"cannot load a kubeconfig: {error}") from None
        self.core = client.CoreV1Api()
        self.apps = client.AppsV1Api()

    def items(self, method: Callable[..., Any], what: str, kind: str, **arguments: Any) -> list[dict[str, Any]]:
        """The items of a list call, as plain JSON, each with its `kind` (list items carry none)."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            response = method(_preload_content=False, _request_timeout=_REQUEST_TIMEOUT, **arguments)
        except ApiException as error:
            raise ToolError(f"cannot list {what}: {error.status} {error.reason}") from None
        except (HTTPError, OSError) as error:
            raise ToolError(f"cannot reach the API server: {error}") from None
        items: list[dict[str, Any]] = json.loads(response.data)["items"]
        for item in items:
            item["kind"] = kind
        return items


def _gateway_token(api: _Api, namespace: str, gateway: Mapping[str, Any]) -> tuple[str | None, str]:
    """The token the gateway requires (None: it requires none), and where it was read, from the
    secretKeyRef of its own container's env: whatever Secret the chart or the user named."""
    from kubernetes.client.exceptions import ApiException

    containers = gateway["spec"]["template"]["spec"].get("containers") or [{}]
    for variable in containers[0].get("env") or []:
        if variable.get("name") != TOKEN_VARIABLE:
            continue
        if "value" in variable:  # not how the chart sets it, but what the gateway would read
            return str(variable["value"]), "its env"
        reference = (variable.get("valueFrom") or {}).get("secretKeyRef") or {}
        name, key = reference.get("name"), reference.get("key")
        try:
            secret = api.core.read_namespaced_secret(name, namespace, _request_timeout=_REQUEST_TIMEOUT)
        except ApiException as error:
            raise ToolError(f"cannot read the gateway token's Secret {name}: {error.status} {error.reason}") from None
        try:
            return base64.b64decode((secret.data or {})[key]).decode(), f"Secret {name}"
        except (KeyError, binascii.Error, UnicodeDecodeError):
            raise ToolError(f"the gateway token's Secret {name} has no readable key {key}") from None
    return None, "no token"


def _container_port(workload: Mapping[str, Any], name: str) -> int | None:
    containers = workload["spec"]["template"]["spec"].get("containers") or [{}]
    for port in containers[0].get("ports") or []:
        if port.get("name") == name:
            return int(port["containerPort"])
    return None


def fetch_gateway_load(api: _Api, namespace: str, gateway: Mapping[str, Any], pods: Sequence[Mapping[str, Any]],
                       timeout: float) -> tuple[dict[str, Load] | None, str]:
    """Ask one Ready gateway pod for `GET /load` over a port-forward: (loads by slug, how) or
    (None, why not). Never raises for a gateway that does not answer: that is its health."""
    from kubernetes.stream import portforward

    selector = gateway["spec"].get("selector") or {}
    ready = sorted((pod for pod in pods if _matches(selector, (pod.get("metadata") or {}).get("labels") or {})
                    and _is_ready(pod) and not (pod.get("metadata") or {}).get("deletionTimestamp")),
                   key=lambda pod: str(pod["metadata"]["name"]))
    if not ready:
        return None, "no Ready pod to ask"
    port = _container_port(gateway, GATEWAY_PORT_NAME)
    if port is None:
        return None, f"its container has no port named {GATEWAY_PORT_NAME}"
    try:
        token, token_source = _gateway_token(api, namespace, gateway)
    except ToolError as error:  # e.g. no right to read Secrets: the gateway cannot be asked
        return None, str(error)
    pod_name = str(ready[0]["metadata"]["name"])
    started = time.monotonic()
    forward = None
    try:
        forward = portforward(api.core.connect_get_namespaced_pod_portforward, pod_name, namespace,
                              ports=str(port), _request_timeout=timeout)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        connection.sock = forward.socket(port)
        connection.sock.settimeout(timeout)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        connection.request("GET", "/load", headers=headers)
        response = connection.getresponse()
        body = response.read()
    except Exception as error:  # the client raises many kinds (websocket, socket, HTTP): each is "no answer"
        detail = forward.error(port) if forward is not None else None
        return None, f"/load on pod {pod_name} did not answer: {_one_line(detail or _forward_error(error))}"
    finally:
        if forward is not None:
            forward.close()
    took = time.monotonic() - started
    if response.status != 200:
        return None, (f"/load on pod {pod_name} answered {response.status}: {_one_line(body.decode(errors='replace'))}"
                      + (f" (token from {token_source})" if response.status == 401 else ""))
    try:
        loads = parse_loads(json.loads(body))
    except (ValueError, ToolError) as error:
        return None, f"/load on pod {pod_name}: {_one_line(error)}"
    return loads, f"/load answered by pod {pod_name} in {took * 1000:.0f} ms"


# The Kubernetes client reports a refused port-forward as the websocket handshake's status, its
# headers and the API server's Status object, all in one text.
_HANDSHAKE = re.compile(r"Handshake status (\d{3}[^-]*?)\s*-\+-\+-")
_STATUS_MESSAGE = re.compile(r'"message"\s*:\s*"((?:[^"\\]|\\.)*)"')


def _forward_error(error: Exception) -> str:
    """A port-forward's failure in a few words: the status and the API server's message."""
    text = str(getattr(error, "reason", None) or error)
    handshake = _HANDSHAKE.search(text)
    if not handshake:
        return text
    message = _STATUS_MESSAGE.search(text)
    return f"port-forward refused: {handshake[1]}" + (f": {message[1].encode().decode('unicode_escape')}"
                                                       if message else "")


def _one_line(value: object, limit: int = 300) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def release_status(release: str, namespace: str, *, models: Sequence[str] = (),
                   gateway_timeout: float = 10.0) -> ClusterStatus:
    """The status of `release` in `namespace` (see the module's docstring).

    Raises UsageError when the namespace holds no workload of the release (or `models` names one it
    does not run), ToolError when the API server cannot be reached or refuses.
    """
    api = _Api()
    selector = release_selector(release)
    workloads = [*api.items(api.apps.list_namespaced_deployment, "Deployments", "Deployment", namespace=namespace,
                            label_selector=selector),
                 *api.items(api.apps.list_namespaced_stateful_set, "StatefulSets", "StatefulSet",
                            namespace=namespace, label_selector=selector)]
    if not workloads:
        raise UsageError(f"no workloads of release {release} in namespace {namespace} (none labelled {selector})")
    pods = api.items(api.core.list_namespaced_pod, "pods", "Pod", namespace=namespace, label_selector=selector)
    config_maps = api.items(api.core.list_namespaced_config_map, "ConfigMaps", "ConfigMap", namespace=namespace,
                            label_selector=f"{selector},{COMPONENT_LABEL}={GATEWAY}")
    gateway = next((w for w in workloads if (w["metadata"].get("labels") or {}).get(COMPONENT_LABEL) == GATEWAY),
                   None)
    loads: dict[str, Load] | None = None
    how = "no gateway workload"
    if gateway is not None:
        loads, how = fetch_gateway_load(api, namespace, gateway, pods, gateway_timeout)
    statuses = [workload_status(workload, pods) for workload in workloads]
    found, redis, gateway_workload = assemble(statuses, model_names(config_maps), loads)
    if models:
        found = select(found, models, f"release {release}")
    redis_detail = "its pod is Ready" if redis and redis.ready else "no Ready pod"
    return ClusterStatus(
        where=f"release {release} in namespace {namespace}",
        models=found,
        redis=PartStatus(REDIS, redis, answers=bool(redis and redis.ready), detail=redis_detail),
        gateway=PartStatus(GATEWAY, gateway_workload, answers=loads is not None, detail=how),
        scope={"release": release, "namespace": namespace},
    )
