"""Watching a release's pods while helm waits, to say early what helm would only time out on.

`helm upgrade --wait` waits until every workload is ready or the timeout passes, and then says
little more than "context deadline exceeded". A pod that no node can take will never be ready;
the scheduler says so at once in the pod's PodScheduled condition. This reads those conditions
through the Kubernetes API so `cs-cluster apply` can name the pod, its model and the reason
within seconds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StuckPod:
    name: str
    model: str | None
    reason: str

    def describe(self) -> str:
        owner = f" of model {self.model}" if self.model else ""
        return f"pod {self.name}{owner} cannot be scheduled: {self.reason}"


def unschedulable_pods(core_api: Any, namespace: str, release: str) -> list[StuckPod]:
    """Pending pods of the release that the scheduler has found no node for."""
    pods = core_api.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/instance={release}")
    stuck = []
    for pod in pods.items:
        if pod.status.phase != "Pending":
            continue
        for condition in pod.status.conditions or []:
            if condition.type == "PodScheduled" and condition.status == "False" and condition.reason == "Unschedulable":
                labels = pod.metadata.labels or {}
                stuck.append(StuckPod(pod.metadata.name, labels.get("compute.studio/model"), condition.message or ""))
    return stuck


def core_api_or_none() -> Any:
    """A CoreV1Api for the current kubeconfig, or None when there is no client or no config."""
    try:
        from kubernetes import client, config
    except ImportError:
        return None
    try:
        config.load_kube_config()
    except Exception:
        return None
    return client.CoreV1Api()


class SchedulingWatcher:
    """Polls in a thread; reports each stuck pod once through `report`."""

    def __init__(self, namespace: str, release: str, report: Callable[[StuckPod], None],
                 interval: float = 3.0, core_api: Any = None) -> None:
        self.namespace = namespace
        self.release = release
        self.report = report
        self.interval = interval
        self.core_api = core_api
        self.reported: list[StuckPod] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SchedulingWatcher:
        if self.core_api is None:
            self.core_api = core_api_or_none()
        if self.core_api is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval + 5)

    def _run(self) -> None:
        seen: set[str] = set()
        while not self._stop.wait(self.interval):
            try:
                stuck = unschedulable_pods(self.core_api, self.namespace, self.release)
            except Exception:  # noqa: S112 - the API may not have the namespace yet; try again
                continue
            for pod in stuck:
                if pod.name not in seen:
                    seen.add(pod.name)
                    self.reported.append(pod)
                    self.report(pod)
