"""The gateway's routes, through Flask's test client, against real Redis and the real
Celery-Sum workers (plus one run under gunicorn with the chart's command)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from cs_runtime.gateway import create_app
from cs_runtime.names import ModelNames
from cs_runtime.settings import GatewaySettings

from .conftest import ModelWorkers
from .support import CELERY_SUM, RecordingWebserver, RedisServer, free_port, route_entry, wait_until, write_routes

# A model in the routing table that no worker serves: its jobs stay pending.
IDLE = ModelNames("cs-tests", "Idle")
CELERY_SUM_URL = "/cs-examples/Celery-Sum"
IDLE_URL = "/cs-tests/Idle"
TOKEN = "gateway-token-for-tests"

MakeGateway = Callable[..., FlaskClient]


@pytest.fixture
def routes_path(tmp_path: Path) -> Path:
    return write_routes(
        tmp_path / "routes.json", route_entry(CELERY_SUM, sim_time_limit=3), route_entry(IDLE, inputs_time_limit=1)
    )


@pytest.fixture
def make_gateway(routes_path: Path, redis_server: RedisServer) -> Iterator[MakeGateway]:
    """Build a gateway app (settings overridable) and return its test client."""

    def make(**overrides: Any) -> FlaskClient:
        settings = GatewaySettings(routing_table_path=routes_path, redis_url=redis_server.url, inputs_grace_seconds=0.5)
        for name, value in overrides.items():
            object.__setattr__(settings, name, value)
        return create_app(settings).test_client()

    yield make
    redis_server.client().delete(IDLE.inputs_queue, IDLE.sim_queue)


@pytest.fixture
def gateway(make_gateway: MakeGateway) -> FlaskClient:
    return make_gateway()


def wait_for_result(gateway: FlaskClient, url: str, job_id: str) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        response = gateway.get(f"{url}/get/{job_id}/")
        assert response.status_code in (200, 202), response.get_json()
        return response.get_json() if response.status_code == 200 else None

    return wait_until(finished, 20, f"job {job_id}")


def test_health(make_gateway: MakeGateway) -> None:
    assert make_gateway().get("/health").get_json() == {"status": "ok"}
    assert make_gateway(token=TOKEN).get("/health/").status_code == 200  # open even with a token


@pytest.mark.slow
def test_inputs_and_version_wait_for_the_io_worker(gateway: FlaskClient, celery_sum_workers: ModelWorkers) -> None:
    response = gateway.post(f"{CELERY_SUM_URL}/inputs/", json={"precision": 5})
    assert response.status_code == 200
    envelope = response.get_json()
    assert envelope["status"] == "SUCCESS"
    assert envelope["meta_parameters"]["precision"]["value"] == [{"value": 5}]
    assert gateway.post(f"{CELERY_SUM_URL}/inputs").get_json()["meta_parameters"]["precision"]["value"] == [
        {"value": 2}
    ]
    version = gateway.post(f"{CELERY_SUM_URL}/version").get_json()
    assert (version["status"], version["version"]) == ("SUCCESS", "1.0.0")


@pytest.mark.slow
def test_parse_enqueues_and_the_result_can_be_fetched(
    gateway: FlaskClient, celery_sum_workers: ModelWorkers, webserver: RecordingWebserver
) -> None:
    body = {
        "meta_param_dict": {},
        "adjustment": {"sum": {"b": "two"}},
        "errors_warnings": {"API": {"errors": {}, "warnings": {}}},
    }
    answer = gateway.post(f"{CELERY_SUM_URL}/parse/", json=body).get_json()
    assert set(answer) == {"job_id", "qlength"} and isinstance(answer["qlength"], int)
    job_id = answer["job_id"]
    assert uuid.UUID(job_id).version == 4
    envelope = wait_for_result(gateway, CELERY_SUM_URL, job_id)
    assert envelope["job_id"] == job_id and envelope["status"] == "SUCCESS"
    assert envelope["errors_warnings"]["sum"]["errors"] == {"b": ["b must be a number, got 'two'"]}
    assert gateway.get(f"{CELERY_SUM_URL}/query/{job_id}").get_json() == {
        "job_id": job_id,
        "ready": True,
        "status": "SUCCESS",
    }
    assert webserver.put_for(job_id).body == envelope


@pytest.mark.slow
def test_sim_success_and_failure_through_the_gateway(gateway: FlaskClient, celery_sum_workers: ModelWorkers) -> None:
    ok = gateway.post(f"{CELERY_SUM_URL}/sim", json={"meta_param_dict": {}, "adjustment": {"sum": {"a": 1}}}).get_json()
    failed = gateway.post(
        f"{CELERY_SUM_URL}/sim/", json={"meta_param_dict": {}, "adjustment": {"sum": {"fail": True}}}
    ).get_json()
    envelope = wait_for_result(gateway, CELERY_SUM_URL, ok["job_id"])
    assert envelope["status"] == "SUCCESS" and envelope["model_version"] == "1.0.0"
    assert envelope["outputs"]["downloadable"][0]["data"] == "a,b,sum\n1,2.0,3.0\n"
    envelope = wait_for_result(gateway, CELERY_SUM_URL, failed["job_id"])
    assert envelope["status"] == "FAIL" and "run_model failed on purpose" in envelope["traceback"]
    assert gateway.get(f"{CELERY_SUM_URL}/query/{failed['job_id']}/").get_json()["status"] == "FAIL"


def test_pending_jobs_answer_202_and_count_in_qlength(gateway: FlaskClient) -> None:
    body: dict[str, Any] = {"meta_param_dict": {}, "adjustment": {}}
    first = gateway.post(f"{IDLE_URL}/sim", json=body).get_json()
    second = gateway.post(f"{IDLE_URL}/sim", json=body).get_json()
    assert (first["qlength"], second["qlength"]) == (1, 2)
    response = gateway.get(f"{IDLE_URL}/get/{first['job_id']}/")
    assert response.status_code == 202
    assert response.get_json() == {"job_id": first["job_id"], "status": "PENDING"}
    assert gateway.get(f"{IDLE_URL}/query/{first['job_id']}").get_json() == {
        "job_id": first["job_id"], "ready": False, "status": "PENDING",
    }  # fmt: skip
    parse = gateway.post(f"{IDLE_URL}/parse", json={**body, "errors_warnings": {}}).get_json()
    assert parse["qlength"] == 1  # parses have their own (inputs) queue


@pytest.mark.parametrize(("route", "pending_status"), [("get", 202), ("query", 200)])
def test_a_job_is_answered_only_under_its_own_model(
    gateway: FlaskClient, routes_path: Path, redis_server: RedisServer, route: str, pending_status: int
) -> None:
    """A job id is known only under the model it was submitted to; another model's job and an id
    nobody handed out get the same 404, never a PENDING that lasts forever."""
    write_routes(routes_path, route_entry(CELERY_SUM), route_entry(IDLE), route_entry(ModelNames("cs-tests", "Other")))
    body: dict[str, Any] = {"meta_param_dict": {}, "adjustment": {}}
    sim_id = gateway.post(f"{IDLE_URL}/sim", json=body).get_json()["job_id"]
    parse_id = gateway.post(f"{IDLE_URL}/parse", json={**body, "errors_warnings": {}}).get_json()["job_id"]
    for job_id in (sim_id, parse_id):
        assert gateway.get(f"{IDLE_URL}/{route}/{job_id}/").status_code == pending_status
    unknown = str(uuid.uuid4())
    for url in (f"{CELERY_SUM_URL}/{route}/{sim_id}", f"/cs-tests/Other/{route}/{parse_id}/",
                f"{IDLE_URL}/{route}/{unknown}"):
        response = gateway.get(url)
        assert response.status_code == 404, url
        assert response.get_json() == {"error": f"unknown job {url.rstrip('/').rsplit('/', 1)[1]} for this model"}
    assert redis_server.client().ttl(f"cs-workers:job:{sim_id}") > 6 * 86400  # known for a week


def test_inputs_without_an_io_worker_time_out_with_504(gateway: FlaskClient) -> None:
    response = gateway.post(f"{IDLE_URL}/inputs", json={})
    assert response.status_code == 504
    assert "did not answer within 1.5 s" in response.get_json()["error"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/nobody/Nothing/inputs"),
        ("post", "/nobody/Nothing/version/"),
        ("post", "/nobody/Nothing/parse"),
        ("post", "/nobody/Nothing/sim/"),
        ("get", f"/nobody/Nothing/query/{uuid.uuid4()}"),
        ("get", f"/nobody/Nothing/get/{uuid.uuid4()}/"),
    ],
)
def test_unknown_model_is_404_json(gateway: FlaskClient, method: str, path: str) -> None:
    response = getattr(gateway, method)(path, json={"meta_param_dict": {}, "adjustment": {}, "errors_warnings": {}})
    assert response.status_code == 404
    assert response.get_json() == {"error": "unknown model nobody/Nothing (looked up as 'nobody-nothing')"}


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/inputs", b"{not json", "request body is not valid JSON"),
        ("/inputs", b"[1, 2]", "meta_param_dict (the body) must be a JSON object"),
        ("/inputs", b'{"x": NaN}', "NaN is not valid JSON"),
        ("/inputs", b"[" * 100_000 + b"]" * 100_000, "request body is not valid JSON"),
        ("/inputs", b"\xff\xfe\xfa", "request body is not valid JSON"),
        ("/version", b"42", "request body must be a JSON object"),
        ("/sim", b"", "request body must be a JSON object"),
        ("/sim", b'{"meta_param_dict": {}}', "request body lacks adjustment"),
        ("/sim", b'{"meta_param_dict": {}, "adjustment": []}', "adjustment must be a JSON object"),
        ("/parse", b'{"meta_param_dict": {}, "adjustment": {}}', "request body lacks errors_warnings"),
    ],
)
def test_malformed_bodies_are_400_json(gateway: FlaskClient, path: str, body: bytes, message: str) -> None:
    response = gateway.post(CELERY_SUM_URL + path, data=body, content_type="application/json")
    assert response.status_code == 400
    assert message in response.get_json()["error"]


def test_malformed_job_id_is_400(gateway: FlaskClient) -> None:
    response = gateway.get(f"{CELERY_SUM_URL}/get/not-a-job/")
    assert response.status_code == 400
    assert response.get_json() == {"error": "'not-a-job' is not a job id (a UUID)"}


def test_body_over_the_limit_is_413_json(make_gateway: MakeGateway) -> None:
    gateway = make_gateway(max_body_bytes=1024)
    body = {"meta_param_dict": {}, "adjustment": {"sum": {"a": "x" * 2000}}}
    response = gateway.post(f"{CELERY_SUM_URL}/sim", json=body)
    assert response.status_code == 413
    # werkzeug's RequestEntityTooLarge, as our JSON error
    assert response.get_json() == {"error": "The data value transmitted exceeds the capacity limit."}
    assert gateway.post(f"{IDLE_URL}/sim", json={"meta_param_dict": {}, "adjustment": {}}).status_code == 200


def test_token_is_required_when_configured(make_gateway: MakeGateway) -> None:
    gateway = make_gateway(token=TOKEN)
    url = f"{IDLE_URL}/query/{uuid.uuid4()}"
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Token {TOKEN}"},
        {"Authorization": TOKEN},
    ):
        response = gateway.get(url, headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.get_json() == {"error": "missing or wrong Authorization: Bearer token"}
    # With the token the request gets through to the route: an id nobody handed out is unknown.
    assert gateway.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404


def test_other_http_errors_are_json(gateway: FlaskClient) -> None:
    wrong_method = gateway.get(f"{CELERY_SUM_URL}/sim/")
    assert wrong_method.status_code == 405
    assert wrong_method.get_json() == {"error": "The method is not allowed for the requested URL."}
    no_route = gateway.get("/a/b/c/d/e")
    assert no_route.status_code == 404
    assert no_route.get_json()["error"].startswith("The requested URL was not found on the server.")


def test_a_new_model_is_routed_without_a_restart(
    gateway: FlaskClient, routes_path: Path, redis_server: RedisServer
) -> None:
    new = ModelNames("cs-tests", "Brand-New")
    url = f"/cs-tests/Brand-New/get/{uuid.uuid4()}"
    assert gateway.get(url).status_code == 404
    write_routes(routes_path, route_entry(CELERY_SUM), route_entry(IDLE), route_entry(new))
    body = {"meta_param_dict": {}, "adjustment": {}}
    job_id = gateway.post("/cs-tests/Brand-New/sim", json=body).get_json()["job_id"]
    assert gateway.get(f"/cs-tests/Brand-New/get/{job_id}").status_code == 202
    redis_server.client().delete(new.sim_queue)


def test_missing_routing_table_is_503(make_gateway: MakeGateway, tmp_path: Path) -> None:
    gateway = make_gateway(routing_table_path=tmp_path / "absent.json")
    response = gateway.post(f"{CELERY_SUM_URL}/sim", json={"meta_param_dict": {}, "adjustment": {}})
    assert response.status_code == 503
    assert "absent.json" in response.get_json()["error"]
    assert gateway.get("/health").status_code == 200


def test_redis_down_is_503(make_gateway: MakeGateway) -> None:
    gateway = make_gateway(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    response = gateway.post(f"{IDLE_URL}/sim", json={"meta_param_dict": {}, "adjustment": {}})
    assert response.status_code == 503
    assert "cannot reach Redis" in response.get_json()["error"]


def test_the_gateway_never_imports_dask() -> None:
    code = (
        "import sys, cs_runtime.gateway\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.slow
def test_gunicorn_runs_the_gateway_with_the_charts_command(
    redis_server: RedisServer, routes_path: Path, celery_sum_workers: ModelWorkers, tmp_path: Path
) -> None:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("CS_")}
    env.update(redis_server.env(), CS_ROUTING_TABLE=str(routes_path), CS_GATEWAY_TOKEN=TOKEN)
    from cs_cluster import render_chart

    # The command exactly as the chart renders it, on a loopback port.
    gateway = render_chart({"modelImages": {"project": "p"}}, validate=False).one("Deployment", component="gateway")
    command = list(gateway["spec"]["template"]["spec"]["containers"][0]["command"])
    assert command[0] == "gunicorn"
    command[:1] = [sys.executable, "-m", "gunicorn"]
    command[command.index("--bind") + 1] = f"127.0.0.1:{port}"
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return requests.get(f"{base}/health", timeout=1).ok
            except requests.RequestException:
                # Refused while gunicorn starts, or slow to answer on a loaded machine: ask again
                # (wait_until's 30 s is the bound, not this 1 s).
                return False

        wait_until(healthy, 30, "gunicorn to answer /health", interval=0.2)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        version = requests.post(f"{base}{CELERY_SUM_URL}/version/", headers=headers, timeout=20)
        assert version.status_code == 200 and version.json()["version"] == "1.0.0"
        assert requests.post(f"{base}{CELERY_SUM_URL}/version/", timeout=20).status_code == 401
        # Kept-alive connections: two requests over one connection (sync workers closed each).
        with requests.Session() as session:
            for _ in range(2):
                answer = session.get(f"{base}/health", timeout=5)
                assert answer.ok and answer.headers.get("Connection", "").lower() != "close"
        log_text = log_path.read_text()
        # Without an access log, the refused request is still in the log, and the token never is.
        assert f"POST {CELERY_SUM_URL}/version/: 401" in log_text, log_text
        assert TOKEN not in log_text
    finally:
        process.terminate()
        process.wait(timeout=20)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
bodies = st.binary(max_size=200) | json_values.map(lambda value: json.dumps(value).encode())


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(["/sim", "/parse/"]), body=bodies)
def test_no_body_makes_the_gateway_answer_500(gateway: FlaskClient, route: str, body: bytes) -> None:
    """Whatever a client sends, the answer is a JSON object and never a server error."""
    response = gateway.post(IDLE_URL + route, data=body, content_type="application/json")
    assert response.status_code in (200, 400), response.get_json()
    assert isinstance(response.get_json(), dict)
