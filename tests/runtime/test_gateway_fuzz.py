"""Bad input, generated: whatever method, path, headers and body a client sends, the gateway
never answers 500, and every error is a JSON object `{"error": message}`.

The gateway is the real app (Flask's test client) against real Redis; its routing table names
a model no worker serves, so sims and parses it accepts just wait in their queue and inputs
calls time out (504) in a tenth of a second.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_to_bytes

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, event, given, note
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from cs_runtime.gateway import create_app
from cs_runtime.names import ModelNames
from cs_runtime.settings import GatewaySettings

from .support import RedisServer, route_entry, write_routes

TARGET = ModelNames("cs-fuzz", "Target")
TOKEN = "fuzz-token-0b7e"
MAX_BODY = 4096
# What each error status may say: our own errors (cs_runtime.errors, gateway.py) or werkzeug's.
ERROR_MESSAGES = {
    400: r"request body is not valid JSON: |.* must be a JSON object$|request body lacks "
         r"|'.*' is not a job id \(a UUID\)$"
         r"|The browser \(or proxy\) sent a request that this server could not understand\.$",
    401: r"missing or wrong Authorization: Bearer token$",
    404: r"unknown model .* \(looked up as '[a-z0-9]*-[a-z0-9]*'\)$|The requested URL was not found on the server\."
         r"|unknown job [0-9a-f-]{36} for this model$",
    405: r"The method is not allowed for the requested URL\.$",
    413: r"The data value transmitted exceeds the capacity limit\.$",
    504: r".*did not answer within [0-9.]+ s",
}


@pytest.fixture(scope="module")
def gateway(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlaskClient]:
    routes = write_routes(
        tmp_path_factory.mktemp("fuzz") / "routes.json",
        route_entry(TARGET, inputs_time_limit=0.05, sim_time_limit=5),
    )
    settings = GatewaySettings(
        routing_table_path=Path(routes), redis_url=redis_server.url, token=TOKEN,
        max_body_bytes=MAX_BODY, inputs_grace_seconds=0.05,
    )  # fmt: skip
    yield create_app(settings).test_client()
    redis_server.client().delete(TARGET.inputs_queue, TARGET.sim_queue)


# -- what clients send ----------------------------------------------------------------------------

METHODS = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]) | st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=10
)
words = st.text(min_size=0, max_size=30)  # any unicode, control characters included
segment = (
    st.sampled_from(["cs-fuzz", "CS-Fuzz", "cs_fuzz", "Target", "target", "..", ".", "%", "health"])
    | words.map(lambda word: quote(word, safe=""))
    | st.text(alphabet="abcXYZ019-_.~!$&'()*+,;=:@", max_size=20)
)
job_ids = st.one_of([st.uuids().map(str)] * 4 + [words.map(lambda word: quote(word, safe="")), st.just("")])
ROUTE_METHODS = {"inputs": "POST", "version": "POST", "parse": "POST", "sim": "POST", "query": "GET", "get": "GET"}
METHOD_NAMES = sorted({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})


@st.composite
def requests_lines(draw: st.DrawFn) -> tuple[str, str]:
    """(method, path): mostly the gateway's routes with their own method and the served model,
    so that requests get past routing to the body and job-id checks; some anything at all."""
    kind = draw(st.sampled_from(["route"] * 6 + ["free", "root"]))
    if kind == "root":
        path = draw(st.sampled_from(["/", "/health", "/health/", "//", "/%00", "/%ff", "/" + "a/" * 200]))
        return draw(st.sampled_from(METHOD_NAMES) | METHODS), path
    if kind == "free":
        return draw(METHODS), "/" + "/".join(draw(st.lists(segment, max_size=8)))
    route = draw(st.sampled_from(sorted(ROUTE_METHODS)))
    method = ROUTE_METHODS[route] if draw(st.integers(0, 5)) else draw(METHODS)
    if draw(st.integers(0, 3)):
        spellings = [(TARGET.owner, TARGET.title), ("CS-FUZZ", "target"), ("cs_fuzz", "Tar-get")]
        owner, title = draw(st.sampled_from(spellings))
    else:
        owner, title = draw(segment), draw(segment)
    if not draw(st.integers(0, 9)):
        route = draw(segment)
    path = f"/{owner}/{title}/{route}"
    if route in ("query", "get") or not draw(st.integers(0, 9)):
        path += "/" + draw(job_ids)
    return method, path + draw(st.sampled_from(["", "/", "", "/", "//"]))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=25,
)
# Bodies with the right keys and any values: wrong types reach the field checks.
shaped_bodies = st.fixed_dictionaries(
    {},
    optional={"meta_param_dict": json_values, "adjustment": json_values, "errors_warnings": json_values,
              "extra": json_values},
)  # fmt: skip
json_objects = st.dictionaries(st.text(max_size=10), json_values, max_size=5)
# Bodies the gateway accepts (so the enqueue and wait paths run too).
valid_bodies = st.fixed_dictionaries(
    {"meta_param_dict": json_objects, "adjustment": json_objects, "errors_warnings": json_objects}
)
bodies = st.one_of(
    st.none(),
    valid_bodies.map(lambda value: json.dumps(value).encode()),
    valid_bodies.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=300),
    st.text(max_size=200).map(str.encode),
    json_values.map(lambda value: json.dumps(value).encode()),
    shaped_bodies.map(lambda value: json.dumps(value).encode()),
    shaped_bodies.map(lambda value: json.dumps(value, ensure_ascii=False).encode("utf-8")),
    st.sampled_from([b"NaN", b"[Infinity]", b'{"a": -Infinity}', b"\xff\xfe{", b"{", b'"\\ud800"', b"\x00"]),
    st.integers(1, 20_000).map(lambda depth: b"[" * depth + b"]" * depth),  # deep nesting
    st.integers(MAX_BODY + 1, 4 * MAX_BODY).map(lambda size: b'{"a": "' + b"x" * size + b'"}'),  # too big
)
content_types = st.sampled_from(
    [None, "application/json", "application/json; charset=latin-1", "text/plain", "multipart/form-data",
     "multipart/form-data; boundary=x", "application/x-www-form-urlencoded", "\u00e9/\u00e9"]
)  # fmt: skip
authorizations = st.sampled_from(
    [f"Bearer {TOKEN}"] * 20 + [None, "Bearer", "Bearer wrong", f"Basic {TOKEN}", f"bearer  {TOKEN} ", "\u00e9\u00e9"]
)


@hypothesis_settings(
    max_examples=int(os.environ.get("CS_FUZZ_EXAMPLES", "400")),
    deadline=None,
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(line=requests_lines(), body=bodies, content_type=content_types, authorization=authorizations,
       query=st.sampled_from(["", "?a=1", "?%ff", "?" + "x" * 300]))  # fmt: skip
def test_bad_requests_never_get_a_500_and_errors_are_json(
    gateway: FlaskClient,
    line: tuple[str, str],
    body: bytes | None,
    content_type: str | None,
    authorization: str | None,
    query: str,
) -> None:
    method, path = line
    headers = {} if authorization is None else {"Authorization": authorization}
    if content_type is not None:
        headers["Content-Type"] = content_type
    # The request target as a WSGI server hands it on (PATH_INFO: percent-decoded bytes as
    # latin-1), so paths like `//x` or `/%ff` reach the app as they would from the network.
    environ = {"PATH_INFO": unquote_to_bytes(path).decode("latin-1"), "QUERY_STRING": query.lstrip("?"),
               "RAW_URI": path + query, "REQUEST_URI": path + query}  # fmt: skip
    response = gateway.open("/", method=method, data=body, headers=headers, environ_overrides=environ)
    note(f"{response.status_code} {response.get_data()[:300]!r}")
    event(f"HTTP {response.status_code}")
    assert response.status_code != 500
    assert response.status_code in (200, 202, 400, 401, 404, 405, 413, 504) or (
        method == "OPTIONS" and response.status_code == 200
    ), response.status_code
    if method in ("HEAD", "OPTIONS") and response.status_code < 400:
        return  # no body by definition (HEAD) or Flask's automatic Allow answer (OPTIONS)
    if method == "HEAD":
        return
    assert response.mimetype == "application/json", response.get_data()[:300]
    answer: Any = response.get_json()
    assert isinstance(answer, dict)
    if response.status_code >= 400:
        assert set(answer) == {"error"} and isinstance(answer["error"], str) and answer["error"]
        # Each status has the message of the one place that answers it.
        assert re.match(ERROR_MESSAGES[response.status_code], answer["error"]), answer["error"]
    if response.status_code == 401:
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="cs-workers"'


def test_valid_requests_still_work(gateway: FlaskClient) -> None:
    """The generated requests above are not all rejected: a well-formed sim is accepted and pending."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    response = gateway.post("/cs-fuzz/Target/sim/", json={"meta_param_dict": {}, "adjustment": {}}, headers=headers)
    assert response.status_code == 200, response.get_json()
    job_id = response.get_json()["job_id"]
    assert str(uuid.UUID(job_id)) == job_id and uuid.UUID(job_id).version == 4
    pending = gateway.get(f"/cs-fuzz/Target/get/{job_id}", headers=headers)
    assert (pending.status_code, pending.get_json()) == (202, {"job_id": job_id, "status": "PENDING"})


def test_repeated_slashes_are_one_slash_not_a_redirect(gateway: FlaskClient) -> None:
    """Found by the fuzzing above: werkzeug answered `/owner//title/...` with an HTML 308."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    body = {"meta_param_dict": {}, "adjustment": {}}
    # PATH_INFO set directly: the test client would read a leading `//` as a host name.
    environ = {"PATH_INFO": "//cs-fuzz//Target//sim//"}
    response = gateway.post("/", json=body, headers=headers, environ_overrides=environ)
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert gateway.get("/cs-fuzz//Target/get/nope", headers=headers).get_json() == {
        "error": "'nope' is not a job id (a UUID)"
    }
