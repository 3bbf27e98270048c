"""Redis: the broker and result backend, its password Secret, its volume."""

from __future__ import annotations

import base64

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


def test_every_client_reads_the_password_from_the_secret() -> None:
    chart = render_chart(values_with(model("a", "b"), model("c", "d", "dask")))
    clients = chart.find("Deployment", component="gateway") + chart.find("Deployment", component="model-io") + \
        chart.find("Deployment", component="model-sim")
    assert len(clients) == 5
    for workload in clients:
        env = env_of(workload)
        assert env["REDIS_HOST"] == "release-redis"
        assert env["REDIS_PASSWORD"]["secretKeyRef"]["name"] == "release-redis"


def test_existing_secret_replaces_the_generated_one() -> None:
    chart = render_chart(values_with(model("a", "b"), redis={"auth": {"existingSecret": "mine", "passwordKey": "pw"}}))
    assert not chart.find("Secret", name="release-redis")
    for workload in chart.find("Deployment"):
        env = env_of(workload)
        if "REDIS_PASSWORD" in env:
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
