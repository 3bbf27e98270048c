"""`cs-cluster status` against releases on the control plane (kwok's pods are Running and Ready
once scheduled): pods ready / desired per model from the workloads, the tag the running pods run
(not the one the template names), a model whose pods no node takes, `--models`, the permissions
docs/status.md lists, and the gateway, which cannot be asked here (kwok runs no container and has
no port-forward), reported unhealthy with the pods still shown and exit status 3. The gateway's
answer itself is tested in local mode (tests/local_mode/test_local_status.py)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import EXAMPLE_CONFIG, cs_cluster, write_config
from kube_support import Kube

from cs_cluster.helm import find_helm

pytestmark = pytest.mark.cluster
RELEASE = "cs"
BIG = {"owner": "cs-tests", "title": "Big", "cluster_type": "single-core",
       "resources": {"requests": {"cpu": 100, "memory": "1G"}, "limits": {"cpu": 100, "memory": "1G"}}}


def example(**changes: dict[str, Any]) -> list[dict[str, Any]]:
    models = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    for entry in models:
        entry["repo_url"] = str(EXAMPLE_CONFIG.parent / entry["repo_url"])
        entry.update(changes.get(entry["title"].replace("-", "_"), {}))
    return models


def apply(kube: Kube, tmp_path: Path, models: list[dict[str, Any]], tag: str, *options: str) -> None:
    config = write_config(tmp_path, models, f"config-{tag}.yaml")
    result = cs_cluster("apply", "--config", config, "--tag", tag, "--project", "cs-test", "--release", RELEASE,
                        "--namespace", kube.namespace, "--values-file", tmp_path / "values.yaml", "--timeout", "3m",
                        *options, env={**kube.env, "CS_HELM": find_helm(4)}, timeout=600)
    assert result.returncode == 0, result.stderr


def status(env: dict[str, str], namespace: str, *options: str) -> subprocess.CompletedProcess[str]:
    return cs_cluster("status", "--release", RELEASE, "--namespace", namespace, "--gateway-timeout", "5", *options,
                      env=env, timeout=120)


def report(kube: Kube, *options: str) -> tuple[int, Any]:
    result = status(kube.env, kube.namespace, "--output", "json", *options)
    assert result.stderr == "", result.stderr
    return result.returncode, json.loads(result.stdout)


def models(found: Any) -> dict[str, Any]:
    return {model["name"]: model for model in found["models"]}


def pods(model: Any) -> dict[str, str]:
    return {component: f"{p['ready']}/{p['desired']}" for component, p in model["pods"].items()}


def test_status_of_a_release(kube: Kube, tmp_path: Path) -> None:
    apply(kube, tmp_path, example(), "v1")
    code, found = report(kube)
    assert code == 3  # the gateway cannot be asked here: see the module's docstring
    assert {name: pods(model) for name, model in models(found).items()} == {
        "cs-examples/Celery-Sum": {"model-io": "1/1", "model-sim": "1/1"},
        "cs-examples/Dask-Pi": {"model-io": "1/1", "model-sim": "1/1", "dask-scheduler": "1/1", "dask-worker": "2/2"},
    }
    assert {name: (model["tags"], model["healthy"], model["load"]) for name, model in models(found).items()} == {
        "cs-examples/Celery-Sum": (["v1"], True, None), "cs-examples/Dask-Pi": (["v1"], True, None)}
    assert (found["release"], found["namespace"], found["healthy"]) == (RELEASE, kube.namespace, False)
    assert found["redis"] == {"healthy": True, "answers": True, "ready": 1, "desired": 1, "tags": ["7.4.2-alpine"],
                              "detail": "its pod is Ready"}
    gateway = found["gateway"]
    assert (gateway["healthy"], gateway["answers"], gateway["ready"], gateway["desired"]) == (False, False, 1, 1)
    assert gateway["detail"].startswith("/load on pod cs-gateway-") and " did not answer: " in gateway["detail"]

    text = status(kube.env, kube.namespace)
    assert text.returncode == 3, text.stderr
    lines = text.stdout.splitlines()
    assert lines[:4] == [
        f"Status of release {RELEASE} in namespace {kube.namespace}.",
        "MODEL                   IO   SIM  SCHEDULER  WORKERS  TAG  QUEUED  RUNNING  LAST RESULT",
        "cs-examples/Celery-Sum  1/1  1/1  -          -        v1   ?       ?        ?",
        "cs-examples/Dask-Pi     1/1  1/1  1/1        2/2      v1   ?       ?        ?",
    ]
    assert lines[5].startswith("Gateway: UNHEALTHY (1/1 pods ready; /load on pod cs-gateway-")
    assert lines[-1] == "Unhealthy: 2 model(s), 2 healthy; Redis healthy; gateway unhealthy."

    # A one-model update: that model's pods run the new tag, the other's the old one.
    apply(kube, tmp_path, example(), "v2", "--models", "Celery-Sum")
    code, found = report(kube)
    assert {name: model["tags"] for name, model in models(found).items()} == {
        "cs-examples/Celery-Sum": ["v2"], "cs-examples/Dask-Pi": ["v1"]}

    # `--models` shows those; a name the release does not run is bad input, one line.
    code, found = report(kube, "--models", "Dask-Pi")
    assert [model["name"] for model in found["models"]] == ["cs-examples/Dask-Pi"]
    wrong = status(kube.env, kube.namespace, "--models", "Nothing")
    assert (wrong.returncode, wrong.stdout) == (2, "")
    assert wrong.stderr == (f"cs-cluster: error: --models 'Nothing' matches no model in release {RELEASE} "
                            "(models in release cs: cs-examples/Celery-Sum, cs-examples/Dask-Pi)\n")


def test_the_tag_is_what_the_pods_run_and_missing_pods_are_named(kube: Kube, tmp_path: Path) -> None:
    """An update whose new sim pod no node can take: its template names v2, but the pod that runs
    is still v1's (io rolled to v2); a model added with such pods has 0 of them ready."""
    apply(kube, tmp_path, example(), "v1")
    huge = {"resources": BIG["resources"]}
    apply(kube, tmp_path, [*example(Celery_Sum=huge), BIG], "v2", "--models", "Celery-Sum", "Big",
          "--skip-capacity-check", "--no-wait")
    code, found = report(kube)
    assert code == 3
    celery_sum = models(found)["cs-examples/Celery-Sum"]
    assert celery_sum["pods"]["model-sim"]["tags"] == ["v1"]
    assert celery_sum["pods"]["model-io"]["tags"] == ["v2"]
    assert celery_sum["tags"] == ["v1", "v2"]
    template = kube.get("deployments", "app.kubernetes.io/component=model-sim,"
                                       "compute.studio/model=csexamples-celerysum")
    assert template[0]["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v2")
    big = models(found)["cs-tests/Big"]
    assert pods(big) == {"model-io": "1/1", "model-sim": "0/1"}
    assert big["problems"] == ["model-sim 0/1 pods ready"]
    text = status(kube.env, kube.namespace).stdout.splitlines()
    assert "cs-examples/Celery-Sum  1/1  1/1  -          -        v1,v2  ?       ?        ?" in text
    assert "! cs-tests/Big: model-sim 0/1 pods ready" in text
    assert text[-1] == "Unhealthy: 3 model(s), 2 healthy; Redis healthy; gateway unhealthy."


def test_no_such_release_is_bad_input(kube: Kube) -> None:
    result = status(kube.env, kube.namespace)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (f"cs-cluster: error: no workloads of release {RELEASE} in namespace {kube.namespace} "
                             f"(none labelled app.kubernetes.io/instance={RELEASE},"
                             "app.kubernetes.io/part-of=cs-workers)\n")


def service_account_kubeconfig(kube: Kube, tmp_path: Path, rules: list[dict[str, Any]]) -> dict[str, str]:
    """A kubeconfig for a ServiceAccount of the test namespace with exactly these Role rules."""
    name = "status-reader"
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name},
            "rules": rules}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": name},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
               "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": kube.namespace}]}
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}
    manifest = tmp_path / "rbac.yaml"
    manifest.write_text(yaml.safe_dump_all([account, role, binding]))
    kube.kubectl("apply", "-f", str(manifest))
    token = kube.kubectl("create", "token", name).stdout.strip()
    admin = yaml.safe_load(Path(kube.kubeconfig).read_text())
    cluster = admin["clusters"][0]
    config = {"apiVersion": "v1", "kind": "Config", "clusters": [cluster],
              "users": [{"name": name, "user": {"token": token}}],
              "contexts": [{"name": name, "context": {"cluster": cluster["name"], "user": name}}],
              "current-context": name}
    path = tmp_path / "reader.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return {**os.environ, "KUBECONFIG": str(path)}


# docs/status.md, "Permissions": what status reads, in the release's namespace.
READ = [{"apiGroups": ["apps"], "resources": ["deployments", "statefulsets"], "verbs": ["list"]},
        {"apiGroups": [""], "resources": ["pods", "configmaps"], "verbs": ["list"]}]
TOKEN = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
PORT_FORWARD = {"apiGroups": [""], "resources": ["pods/portforward"], "verbs": ["get", "create"]}


def test_the_permissions_it_needs(kube: Kube, tmp_path: Path) -> None:
    apply(kube, tmp_path, example(), "v1")
    allowed = service_account_kubeconfig(kube, tmp_path, [*READ, TOKEN, PORT_FORWARD])
    result = status(allowed, kube.namespace, "--output", "json")
    assert result.returncode == 3 and result.stderr == "", result.stderr
    found = json.loads(result.stdout)
    assert [model["healthy"] for model in found["models"]] == [True, True]
    # Past the permission checks: the port-forward reached the API server, which found no kubelet.
    print("gateway, allowed:", found["gateway"]["detail"])
    assert "403" not in found["gateway"]["detail"] and "forbidden" not in found["gateway"]["detail"].lower()

    without_port_forward = service_account_kubeconfig(kube, tmp_path, [*READ, TOKEN])
    found = json.loads(status(without_port_forward, kube.namespace, "--output", "json").stdout)
    print("gateway, no port-forward:", found["gateway"]["detail"])
    assert ": port-forward refused: 403 Forbidden: " in found["gateway"]["detail"]
    assert 'cannot get resource "pods/portforward"' in found["gateway"]["detail"]

    without_secrets = service_account_kubeconfig(kube, tmp_path, [*READ, PORT_FORWARD])
    result = status(without_secrets, kube.namespace, "--output", "json")
    found = json.loads(result.stdout)
    assert result.returncode == 3 and [model["healthy"] for model in found["models"]] == [True, True]
    assert found["gateway"]["detail"] == f"cannot read the gateway token's Secret {RELEASE}-gateway-token: " \
                                         "403 Forbidden"

    nothing = service_account_kubeconfig(kube, tmp_path, [])
    result = status(nothing, kube.namespace)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == "cs-cluster: error: cannot list Deployments: 403 Forbidden\n"
