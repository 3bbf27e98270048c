"""A model's workers with a Redis ACL user of their own, limited to the model's keys (issue 10,
item 15): real Redis, the chart's worker command, the gateway. From the model's credentials another
model's queues, unacknowledged messages and results are refused; the gateway reaches every model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from cs_runtime.gateway import create_app
from cs_runtime.names import ModelNames
from cs_runtime.settings import GatewaySettings

from .support import (
    CELERY_SUM,
    CELERY_SUM_CONFIG,
    RecordingWebserver,
    RedisServer,
    WorkerProcess,
    route_entry,
    start_worker,
    wait_until,
    worker_env,
    write_routes,
)

pytestmark = pytest.mark.slow

OTHER = ModelNames("cs-tests", "Other")


def acl_rule(names: ModelNames, password: str) -> list[str]:
    """The ACL of a model's workers: only keys and channels under the model's prefix."""
    prefix = names.redis_key_prefix
    return ["on", f">{password}", "resetkeys", "resetchannels", f"~{prefix}*", f"&{prefix}*", "+@all", "-@dangerous"]


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("acl-redis")).start()
    for names in (CELERY_SUM, OTHER):
        server.client().execute_command("ACL", "SETUSER", names.redis_username, *acl_rule(names, f"{names.key}-pw"))
    yield server
    server.stop()


def model_env(names: ModelNames, role: str, server: RedisServer, webserver: RecordingWebserver) -> dict[str, str]:
    return worker_env(names, role, "celery", CELERY_SUM_CONFIG, server, COMP_URL=webserver.url,
                      REDIS_USERNAME=names.redis_username, REDIS_PASSWORD=f"{names.key}-pw",
                      CS_REDIS_KEY_PREFIX=names.redis_key_prefix)  # fmt: skip


def as_model(names: ModelNames, server: RedisServer) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=server.port, username=names.redis_username,
                       password=f"{names.key}-pw")  # fmt: skip


def test_a_models_workers_use_only_keys_under_its_prefix_and_reach_no_others(
    acl_redis: RedisServer, webserver: RecordingWebserver, tmp_path: Path
) -> None:
    workers: list[WorkerProcess] = []
    try:
        for names in (CELERY_SUM, OTHER):
            (tmp_path / names.key).mkdir()
            for role in ("io", "sim"):
                workers.append(start_worker(names, role, model_env(names, role, acl_redis, webserver),
                                            tmp_path / names.key))
        for worker in workers:
            worker.wait_ready()
        routes = write_routes(tmp_path / "routes.json",
                              *[{**route_entry(names), "redisKeyPrefix": names.redis_key_prefix}
                                for names in (CELERY_SUM, OTHER)])  # fmt: skip
        gateway = create_app(GatewaySettings(routing_table_path=routes, redis_url=acl_redis.url)).test_client()
        finished: dict[str, Any] = {}
        for names in (CELERY_SUM, OTHER):
            url = f"/{names.owner}/{names.title}"
            assert gateway.post(f"{url}/version").get_json()["version"] == "1.0.0"
            job_id = gateway.post(f"{url}/sim", json={"meta_param_dict": {}, "adjustment": {"sum": {"a": 2}}}
                                  ).get_json()["job_id"]

            def done(url: str = url, job_id: str = job_id) -> Any:
                response = gateway.get(f"{url}/get/{job_id}")
                return response.get_json() if response.status_code == 200 else None

            finished[names.key] = wait_until(done, 30, f"the sim of {names.key}")
            assert finished[names.key]["status"] == "SUCCESS", finished[names.key]
            assert webserver.put_for(job_id).body["status"] == "SUCCESS"
            finished[names.key]["job_id"] = job_id

        everything = {key.decode() for key in acl_redis.client().keys("*")}
        for names in (CELERY_SUM, OTHER):
            job_id = finished[names.key]["job_id"]
            assert f"{names.redis_key_prefix}celery-task-meta-{job_id}" in everything
            assert f"{names.redis_key_prefix}cs-workers:deliveries:{job_id}" in everything
        # Nothing of the models outside their prefixes (the gateway's own job records aside).
        assert {key for key in everything if not key.startswith(("cs-workers:job:", CELERY_SUM.redis_key_prefix,
                                                                  OTHER.redis_key_prefix))} == set()

        mine, theirs = as_model(CELERY_SUM, acl_redis), OTHER.redis_key_prefix
        other_job = finished[OTHER.key]["job_id"]
        refused = {
            "pop their queue": lambda: mine.rpop(f"{theirs}{OTHER.sim_queue}"),
            "push to their queue": lambda: mine.lpush(f"{theirs}{OTHER.sim_queue}", "x"),
            "read their unacknowledged messages": lambda: mine.hgetall(f"{theirs}unacked"),
            "read their result": lambda: mine.get(f"{theirs}celery-task-meta-{other_job}"),
            "publish on their channel": lambda: mine.publish(f"{theirs}celery-task-meta-{other_job}", "x"),
            "read keys without a prefix": lambda: mine.hgetall("unacked"),
            "list every key": lambda: mine.keys("*"),
            "read the gateway's job records": lambda: mine.get(f"cs-workers:job:{other_job}"),
        }
        allowed = []
        for what, attempt in refused.items():
            try:
                attempt()
                allowed.append(what)
            except redis.exceptions.NoPermissionError:
                pass
        assert allowed == []
        assert mine.llen(f"{CELERY_SUM.redis_key_prefix}{CELERY_SUM.sim_queue}") == 0  # its own: fine
    finally:
        for worker in workers:
            worker.stop()
