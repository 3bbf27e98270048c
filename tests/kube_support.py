"""Talking to the local control plane from the cluster tests: kubectl and helm in one namespace."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from typing import Any

from cs_cluster.helm import find_helm


@dataclass
class Kube:
    """A namespace of our own on the control plane, with kubectl and helm pointed at it."""

    kubeconfig: str
    namespace: str

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": self.kubeconfig}

    def kubectl(self, *arguments: str, check: bool = True, namespaced: bool = True) -> subprocess.CompletedProcess[str]:
        """kubectl in this namespace (`namespaced=False`: for cluster-scoped objects); a failure
        with `check` raises with kubectl's own message."""
        command = ["kubectl", *(["--namespace", self.namespace] if namespaced else []), *arguments]
        result = subprocess.run(command, capture_output=True, text=True, env=self.env, check=False, timeout=180)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def get(self, kind: str, selector: str | None = None) -> list[dict[str, Any]]:
        arguments = ["get", kind, "-o", "json"] + (["-l", selector] if selector else [])
        items: list[dict[str, Any]] = json.loads(self.kubectl(*arguments).stdout)["items"]
        return items

    def get_cluster_scoped(self, kind: str, *names: str) -> list[dict[str, Any]]:
        """Cluster-scoped objects (nodes, namespaces) by name, as JSON."""
        found = json.loads(self.kubectl("get", kind, *names, "-o", "json", namespaced=False).stdout)
        return list(found["items"]) if "items" in found else [found]

    def helm(self, major: int, *arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([find_helm(major), *arguments, "--namespace", self.namespace],
                                capture_output=True, text=True, env=self.env, check=False, timeout=600)
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(arguments)} failed: {result.stderr}")
        return result
