"""A model's load (cs_runtime/load.py), served by the gateway at /<owner>/<title>/load and /load:
sims queued, then running (taken, unacknowledged), then none, and the last result delivered,
with a real Celery-Sum sim worker on real Redis. What KEDA scales on and cs-cluster status shows."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from cs_runtime.gateway import create_app
from cs_runtime.names import ModelNames
from cs_runtime.settings import GatewaySettings

from .support import (
    CELERY_SUM_CONFIG,
    RecordingWebserver,
    RedisServer,
    route_entry,
    start_worker,
    wait_until,
    worker_env,
    write_routes,
)

MODEL = ModelNames("cs-load", "Sum")
OTHER = ModelNames("cs-load", "Other")
URL = f"/{MODEL.owner}/{MODEL.title}"
TOKEN = "load-test-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def gateway(redis_server: RedisServer, tmp_path: Path) -> FlaskClient:
    routes = write_routes(tmp_path / "routes.json",
                          route_entry(MODEL, sim_time_limit=60, redis_key_prefix=MODEL.redis_key_prefix),
                          route_entry(OTHER, redis_key_prefix=OTHER.redis_key_prefix))
    settings = GatewaySettings(routing_table_path=routes, redis_url=redis_server.url, token=TOKEN)
    return create_app(settings).test_client()


def load(gateway: FlaskClient) -> dict[str, object]:
    response = gateway.get(f"{URL}/load/", headers=HEADERS)
    assert response.status_code == 200, response.get_json()
    body: dict[str, object] = response.get_json()
    return body


def submit(gateway: FlaskClient, adjustment: dict[str, object]) -> str:
    response = gateway.post(f"{URL}/sim/", json={"meta_param_dict": {}, "adjustment": {"sum": adjustment}},
                            headers=HEADERS)
    assert response.status_code == 200, response.get_json()
    job_id: str = response.get_json()["job_id"]
    return job_id


def test_the_load_needs_the_token_and_a_known_model(gateway: FlaskClient) -> None:
    assert gateway.get(f"{URL}/load/").status_code == 401
    assert gateway.get("/load").status_code == 401
    assert gateway.get("/cs-load/Nobody/load", headers=HEADERS).status_code == 404


def test_an_idle_model_has_no_load(gateway: FlaskClient) -> None:
    assert load(gateway) == {"model": MODEL.slug, "queued": {"inputs": 0, "sim": 0},
                             "running": {"inputs": 0, "sim": 0}, "sims": 0, "last_result": None}
    every = gateway.get("/load", headers=HEADERS).get_json()
    assert [model["model"] for model in every["models"]] == [MODEL.slug, OTHER.slug]


def test_redis_away_is_a_503(tmp_path: Path) -> None:
    routes = write_routes(tmp_path / "routes.json", route_entry(MODEL))
    settings = GatewaySettings(routing_table_path=routes, redis_url="redis://127.0.0.1:1/0")
    response = create_app(settings).test_client().get(f"{URL}/load")
    assert response.status_code == 503 and "cannot reach Redis" in response.get_json()["error"]


@pytest.mark.slow
def test_a_sim_counts_while_queued_and_running_and_then_is_the_last_result(
    gateway: FlaskClient, redis_server: RedisServer, tmp_path: Path
) -> None:
    webserver = RecordingWebserver()
    webserver.start()
    long_job = submit(gateway, {"a": 1, "b": 2, "sleep": 4})
    short_job = submit(gateway, {"a": 3, "b": 4})
    queued = load(gateway)
    assert queued["queued"] == {"inputs": 0, "sim": 2} and queued["running"] == {"inputs": 0, "sim": 0}
    assert queued["sims"] == 2
    # Another model's queue is not this model's load.
    assert gateway.get(f"/{OTHER.owner}/{OTHER.title}/load", headers=HEADERS).get_json()["sims"] == 0

    env = worker_env(MODEL, "sim", "celery", CELERY_SUM_CONFIG, redis_server, COMP_URL=webserver.url,
                     CS_REDIS_KEY_PREFIX=MODEL.redis_key_prefix)
    worker = start_worker(MODEL, "sim", env, tmp_path)
    try:
        worker.wait_ready()
        # Taken off the queue and sleeping: running, not queued, and still counted in sims.
        running = wait_until(lambda: (body := load(gateway))["running"] == {"inputs": 0, "sim": 1} and body, 20,
                             "the long sim to be running")
        assert running["queued"] == {"inputs": 0, "sim": 1} and running["sims"] == 2
        webserver.put_for(long_job)
        webserver.put_for(short_job)
        done = wait_until(lambda: (body := load(gateway))["sims"] == 0 and body, 20, "no sim left")
    finally:
        worker.stop()
        webserver.stop()
    assert done["queued"] == {"inputs": 0, "sim": 0} and done["running"] == {"inputs": 0, "sim": 0}
    last = done["last_result"]
    assert isinstance(last, dict)
    assert last["job_id"] == short_job and last["kind"] == "outputs" and last["status"] == "SUCCESS"
    assert last["delivered"] is True and time.time() - 30 < last["at"] <= time.time()
