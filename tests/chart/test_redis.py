"""Redis: the broker and result backend, its password Secret, its volume."""

from __future__ import annotations

import base64

import pytest
from helpers import container, env_of, model, values_with

from cs_cluster import render_chart


def test_redis_objects_and_password_secret() -> None:
    chart = render_chart(values_with(model("a", "b")))
    deployment = chart.one("Deployment", component="redis")
    secret = chart.one("Secret", name="release-redis")
    password = base64.b64decode(secret["data"]["redis-password"]).decode()
    assert len(password) == 32
    # Kept on uninstall: the kept volume's data needs it.
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    redis = container(deployment)
    assert password not in str(deployment)
    assert password not in " ".join(redis["command"])
    assert env_of(deployment)["REDIS_PASSWORD"] == {"secretKeyRef": {"name": "release-redis", "key": "redis-password"}}
    service = chart.one("Service", component="redis")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["port"] == 6379


@pytest.mark.parametrize("model_users", [True, False], ids=["model users", "one password"])
def test_every_client_reads_the_password_from_a_secret(model_users: bool) -> None:
    """The gateway uses Redis's password; each model's workers their model's own ACL user (from the
    users Secret, one key per model), unless redis.auth.modelUsers is off."""
    chart = render_chart(values_with(model("a", "b"), model("c", "d", "dask"),
                                     redis={"auth": {"modelUsers": model_users}}))
    gateway = env_of(chart.one("Deployment", component="gateway"))
    assert gateway["REDIS_PASSWORD"]["secretKeyRef"]["name"] == "release-redis" and "REDIS_USERNAME" not in gateway
    workers = chart.find("Deployment", component="model-io") + chart.find("Deployment", component="model-sim")
    assert len(workers) == 4
    for workload in workers:
        env = env_of(workload)
        key = workload["metadata"]["labels"]["compute.studio/model"].replace("-", "_")
        assert env["REDIS_HOST"] == "release-redis"
        if model_users:
            assert env["REDIS_PASSWORD"]["secretKeyRef"] == {"name": "release-redis-users", "key": key}
            assert (env["REDIS_USERNAME"], env["CS_REDIS_KEY_PREFIX"]) == (f"model-{key}", f"{key}:")
        else:
            assert env["REDIS_PASSWORD"]["secretKeyRef"]["name"] == "release-redis"
            assert "REDIS_USERNAME" not in env and "CS_REDIS_KEY_PREFIX" not in env
    users = chart.one("Secret", name="release-redis-users")
    assert set(users.get("data") or {}) == ({"a_b", "c_d"} if model_users else set())
    redis_pod = chart.one("Deployment", component="redis")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in redis_pod["volumes"]}
    assert volumes["users"]["secret"]["secretName"] == "release-redis-users"


def test_existing_secret_replaces_the_generated_one() -> None:
    chart = render_chart(values_with(model("a", "b"), redis={"auth": {"existingSecret": "mine", "passwordKey": "pw"}}))
    assert not chart.find("Secret", name="release-redis")
    for workload in chart.find("Deployment"):
        env = env_of(workload)
        if "REDIS_PASSWORD" in env and "REDIS_USERNAME" not in env:  # a model's own user has its own
            assert env["REDIS_PASSWORD"] == {"secretKeyRef": {"name": "mine", "key": "pw"}}


def test_persistence_on_a_kept_claim_with_append_only_file() -> None:
    chart = render_chart({})
    claim = chart.one("PersistentVolumeClaim", component="redis")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    deployment = chart.one("Deployment", component="redis")
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    config = chart.one("ConfigMap", component="redis")["data"]["redis.conf"]
    assert "appendonly yes" in config


def test_persistence_off_uses_an_empty_dir() -> None:
    chart = render_chart({"redis": {"persistence": {"enabled": False}}})
    assert not chart.find("PersistentVolumeClaim")
    volumes = {v["name"]: v for v in chart.one("Deployment", component="redis")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}
    assert "appendonly no" in chart.one("ConfigMap", component="redis")["data"]["redis.conf"]
