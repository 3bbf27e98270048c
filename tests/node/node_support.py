"""Test tools for the `node` tests: the seed's workflow (build, push, apply) on a cluster with a
real node, and talking to the release that runs there."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml
from helpers import EXAMPLE_CONFIG, REPO
from kube_support import Kube

from cs_cluster import Cluster
from cs_cluster.helm import find_helm
from cs_cluster.standin import ReceivedResult, StandInWebserver

PROJECT = "cs-workers-dev"
NODE_VALUES = REPO / "ci" / "real-node-values.yaml"
NODE_LABEL = "cs-workers.dev/real-node"
GATEWAY_TOKEN = "node-test-gateway-token"
# A tag of this test session's own: the node keeps the images it pulled (imagePullPolicy
# IfNotPresent, as the chart sets), so a tag reused across sessions would run stale code.
SESSION_TAG = f"node-{uuid.uuid4().hex[:8]}"
# Where the kubelet and containerd of the real node report containers; kwok reports none.
CONTAINER_ID_PREFIX = "containerd://"


@dataclass(frozen=True)
class NodeEnvironment:
    """The variables `ci/cluster up --real-node` prints."""

    variables: Mapping[str, str]

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, **self.variables}

    @property
    def kubeconfig(self) -> str:
        return self.variables["KUBECONFIG"]

    @property
    def registry(self) -> str:
        return self.variables["CS_REGISTRY"]

    @property
    def host_address(self) -> str:
        return self.variables["CS_HOST_ADDRESS"]

    @property
    def base_image(self) -> str | None:
        return self.variables.get("CS_BASE_IMAGE") or None


def with_environment(env: Mapping[str, str], work: Callable[[], Any]) -> Any:
    """Run `work` with os.environ set to `env` (the Cluster API calls docker and helm, which read
    DOCKER_HOST and KUBECONFIG from the environment), and put the environment back."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return work()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def built_images(node_env: NodeEnvironment, directory: Path, tag: str, models: list[str] | None = None,
                 previous: Path | None = None) -> Path:
    """Build and push the example's images as the seed's release notes do it:
    `Cluster(config=..., tag=..., project=..., registry=...).build()`. Returns the values file."""
    values_file = directory / f"{PROJECT}-{tag}.yaml"
    cluster = Cluster(config=EXAMPLE_CONFIG, tag=tag, project=PROJECT, models=models, registry=node_env.registry,
                      values_file=values_file, previous=previous)
    with_environment(node_env.env, lambda: cluster.build(base_image=node_env.base_image))
    return values_file


def ready(pod: Mapping[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


@dataclass
class Release:
    """The example cluster installed on the real node, with its gateway reachable from here."""

    node_env: NodeEnvironment
    kube: Kube
    webserver: StandInWebserver
    directory: Path
    values_file: Path
    major: int = 4
    name: str = "cs"
    gateway_url: str = ""
    extra_values: list[Path] = field(default_factory=list)

    # -- install ---------------------------------------------------------------------------
    @classmethod
    def install(cls, node_env: NodeEnvironment, values_file: Path, webserver: StandInWebserver, directory: Path,
                major: int = 4, extra_values: Sequence[Path] = ()) -> Release:
        """The release, with `extra_values` files after the test's own (secrets, placement)."""
        namespace = f"node-{uuid.uuid4().hex[:6]}"
        kube = Kube(node_env.kubeconfig, namespace)
        # The API server itself enforces the restricted standard on every pod of the release.
        kube.kubectl("create", "namespace", namespace, namespaced=False)
        kube.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted",
                     "pod-security.kubernetes.io/enforce-version=latest", namespaced=False)
        secrets = directory / "node-test.secrets.yaml"
        secrets.write_text(yaml.safe_dump({
            "workerSecret": {"values": {"COMP_URL": webserver.url, "COMP_API_TOKEN": webserver.token}},
            # The gateway's tag is the chart's appVersion in every session (what `cs-cluster
            # build` tags it with): pull it each time, or the node would run the one it cached.
            "gateway": {"auth": {"token": GATEWAY_TOKEN}, "service": {"type": "NodePort"},
                        "image": {"pullPolicy": "Always"}},
            "networkPolicy": {"webserverEgress": {"ports": [webserver.port]}},
        }))
        secrets.chmod(0o600)
        release = cls(node_env, kube, webserver, directory, values_file, major,
                      extra_values=[secrets, NODE_VALUES, *extra_values])
        release.apply(values_file)
        release.gateway_url = release._gateway_url()
        return release

    def cluster(self, values_file: Path, tag: str = SESSION_TAG, models: list[str] | None = None) -> Cluster:
        return Cluster(config=EXAMPLE_CONFIG, tag=tag, project=PROJECT, models=models,
                       registry=self.node_env.registry, values_file=values_file, previous=values_file,
                       release=self.name, namespace=self.kube.namespace, helm_binary=find_helm(self.major))

    def apply(self, values_file: Path, tag: str = SESSION_TAG, models: list[str] | None = None,
              timeout: str = "8m") -> None:
        """`Cluster.apply()` with the test's extra values (secrets, placement on the real node)."""
        cluster = self.cluster(values_file, tag, models)
        extra: list[str] = []
        for path in self.extra_values:
            extra += ["-f", str(path)]
        with_environment(self.node_env.env, lambda: cluster.apply(timeout=timeout, extra=extra))

    def uninstall(self) -> None:
        self.kube.helm(self.major, "uninstall", self.name, "--wait", "--timeout", "3m", check=False)
        self.kube.kubectl("delete", "namespace", self.kube.namespace, "--wait=false", check=False,
                          namespaced=False)

    def _gateway_url(self) -> str:
        """The gateway Service's NodePort on the real node's address: through kube-proxy."""
        (service,) = self.kube.get("services", f"app.kubernetes.io/instance={self.name},"
                                   "app.kubernetes.io/component=gateway")
        node_port = service["spec"]["ports"][0]["nodePort"]
        node = json.loads(self.kube.kubectl("get", "nodes", "-l", f"{NODE_LABEL}=true", "-o", "json",
                                            namespaced=False).stdout)["items"][0]
        address = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
        return f"http://{address}:{node_port}"

    # -- pods ------------------------------------------------------------------------------
    def pods(self, selector: str = "") -> list[dict[str, Any]]:
        base = f"app.kubernetes.io/instance={self.name}"
        return self.kube.get("pods", f"{base},{selector}" if selector else base)

    def pod_names(self, selector: str) -> set[str]:
        return {p["metadata"]["name"] for p in self.pods(selector) if not p["metadata"].get("deletionTimestamp")}

    def wait_ready(self, selector: str, count: int, timeout: float = 300, exclude: set[str] = frozenset()) -> set[str]:
        """Wait for `count` Ready pods matching `selector` (none of `exclude`); their names."""
        deadline = time.monotonic() + timeout
        while True:
            pods = [p for p in self.pods(selector) if not p["metadata"].get("deletionTimestamp")
                    and p["metadata"]["name"] not in exclude]
            if len([p for p in pods if ready(p)]) == count and len(pods) == count:
                return {p["metadata"]["name"] for p in pods}
            if time.monotonic() > deadline:
                raise AssertionError(f"{selector}: wanted {count} Ready pods, have "
                                     f"{[(p['metadata']['name'], ready(p)) for p in pods]}")
            time.sleep(1)

    def wait_gone(self, selector: str, timeout: float = 300) -> None:
        """Wait until no pod matches `selector`, terminating ones included."""
        deadline = time.monotonic() + timeout
        while self.pods(selector):
            if time.monotonic() > deadline:
                raise AssertionError(f"{selector}: pods still there after {timeout} s")
            time.sleep(1)

    def can_connect(self, pod: str, host: str, port: int, timeout: float = 5) -> bool:
        """Whether a TCP connection from `pod` (its Python) to host:port opens within `timeout`."""
        program = ("import socket, sys\n"
                   f"try: socket.create_connection(({host!r}, {port}), timeout={timeout}).close()\n"
                   "except OSError as e: sys.exit(f'{type(e).__name__}: {e}')")
        return self.kube.kubectl("exec", pod, "--", "python", "-c", program, check=False).returncode == 0

    def redis(self, *command: str) -> str:
        """A redis-cli command run in the Redis pod (its password comes from the pod's env)."""
        (pod,) = [p["metadata"]["name"] for p in self.pods("app.kubernetes.io/component=redis")
                  if not p["metadata"].get("deletionTimestamp")]
        return self.kube.kubectl("exec", pod, "--", "redis-cli", "--no-auth-warning", *command).stdout.strip()

    def broker_holds_no_task(self) -> list[str]:
        """What the broker still holds that Celery could deliver again: queued messages and
        unacknowledged ones (kombu's `unacked` hash). Empty when nothing can be redelivered."""
        left = []
        for key in self.redis("--scan").splitlines():
            # Each model's keys carry its prefix (`{m}:`, redis.auth.modelUsers): the last part
            # is kombu's own name.
            name, kind = key.rsplit(":", 1)[-1], self.redis("TYPE", key)
            if kind == "list" and name.endswith("queue"):
                length = int(self.redis("LLEN", key))
                if length:
                    left.append(f"{key}: {length} queued")
            elif kind == "hash" and name == "unacked":
                length = int(self.redis("HLEN", key))
                if length:
                    left.append(f"{key}: {length} unacknowledged")
        return left

    def queue_length(self, queue: str) -> int:
        """Messages waiting on `queue` (its key found whatever prefix the model's keys have)."""
        keys = [k for k in self.redis("--scan", "--pattern", f"*{queue}").splitlines() if k.rsplit(":", 1)[-1] == queue]
        assert len(keys) <= 1, keys
        return int(self.redis("LLEN", keys[0])) if keys else 0

    # -- sims ------------------------------------------------------------------------------
    def submit(self, title: str, adjustment: Mapping[str, Any], owner: str = "cs-examples") -> str:
        response = requests.post(f"{self.gateway_url}/{owner}/{title}/sim",
                                 json={"meta_param_dict": {}, "adjustment": dict(adjustment)},
                                 headers={"Authorization": f"Bearer {GATEWAY_TOKEN}"}, timeout=30)
        assert response.status_code == 200, response.text
        job_id = response.json()["job_id"]
        assert isinstance(job_id, str) and len(job_id) == 36, response.text
        return str(job_id)

    def get(self, title: str, job_id: str, owner: str = "cs-examples") -> requests.Response:
        return requests.get(f"{self.gateway_url}/{owner}/{title}/get/{job_id}",
                            headers={"Authorization": f"Bearer {GATEWAY_TOKEN}"}, timeout=30)

    def results_for(self, job_id: str) -> list[ReceivedResult]:
        return [r for r in list(self.webserver.results) if r.body.get("job_id") == job_id]

    def wait_result(self, job_id: str, timeout: float = 180) -> ReceivedResult:
        return self.webserver.wait_for(job_id, timeout=timeout)
