"""GitOps on the control plane (issue 14): `helm template --skip-tests | kubectl apply`, as a GitOps
tool applies a chart, with every Secret managed outside the chart: the install comes up, and a
second render applied again changes nothing (no Secret, no pod template)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import CHART
from kube_support import Kube

from cs_cluster.helm import find_helm

pytestmark = pytest.mark.cluster


def test_helm_template_then_kubectl_apply_twice_changes_nothing(kube: Kube, tmp_path: Path) -> None:
    from chart.test_gitops import GITOPS

    for name, data in {"cs-redis": {"redis-password": "r" * 32}, "cs-gateway-token": {"token": "g" * 40},
                       "cs-redis-users": {"cs_sum": "s" * 32, "cs_pi": "p" * 32},
                       "cs-worker": {"COMP_URL": "http://webserver", "COMP_API_TOKEN": "t", "BUCKET": "b"},
                       "cs-sum-secrets": {"SUM_KEY": "k"}, "cs-pi-secrets": {"PI_KEY": "k"}}.items():
        kube.kubectl("create", "secret", "generic", name, *(f"--from-literal={k}={v}" for k, v in data.items()))
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(GITOPS))

    def render_and_apply() -> str:
        manifests = subprocess.run([find_helm(4), "template", "cs", str(CHART), "--namespace", kube.namespace,
                                    "--skip-tests", "-f", str(values)], capture_output=True, text=True, check=True,
                                   timeout=120).stdout
        applied = subprocess.run(["kubectl", "apply", "--namespace", kube.namespace, "-f", "-"], input=manifests,
                                 capture_output=True, text=True, env=kube.env, check=False, timeout=180)
        assert applied.returncode == 0, applied.stderr
        return applied.stdout

    first = render_and_apply()
    assert "deployment.apps/cs-gateway created" in first and "secret/" not in first
    for deployment in kube.get("deployments"):
        kube.kubectl("rollout", "status", f"deployment/{deployment['metadata']['name']}", "--timeout=180s")
    kinds = "deployments,services,configmaps,networkpolicies,poddisruptionbudgets,serviceaccounts,pvc"

    def generations() -> dict[str, int]:
        return {f"{o['kind']}/{o['metadata']['name']}": o["metadata"].get("generation", 0) for o in kube.get(kinds)}

    before = generations()
    second = render_and_apply()
    # Nothing the API server keeps changed (kubectl re-sends a PodDisruptionBudget's selector every
    # time, so it says "configured", but the object's generation stays).
    assert generations() == before, second
    assert all(line.endswith((" unchanged", " configured")) for line in second.strip().splitlines()), second
    assert [line for line in second.splitlines() if line.endswith(" configured")
            and not line.startswith("poddisruptionbudget")] == [], second
    assert {s["metadata"]["name"] for s in kube.get("secrets")} >= {"cs-redis", "cs-redis-users", "cs-gateway-token"}
