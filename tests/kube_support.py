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

    def kubectl(self, *arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["kubectl", "--namespace", self.namespace, *arguments], capture_output=True,
                              text=True, env=self.env, check=check, timeout=180)

    def get(self, kind: str, selector: str | None = None) -> list[dict[str, Any]]:
        arguments = ["get", kind, "-o", "json"] + (["-l", selector] if selector else [])
        items: list[dict[str, Any]] = json.loads(self.kubectl(*arguments).stdout)["items"]
        return items

    def helm(self, major: int, *arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([find_helm(major), *arguments, "--namespace", self.namespace],
                                capture_output=True, text=True, env=self.env, check=False, timeout=600)
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(arguments)} failed: {result.stderr}")
        return result
