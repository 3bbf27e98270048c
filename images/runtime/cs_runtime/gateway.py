"""The HTTP gateway between the C/S webserver and the model queues.

`gunicorn ... "cs_runtime.gateway:create_app()"` (docs/runtime-contract.md). Routes, as C/S
had them (trailing slashes optional, repeated slashes read as one):

- GET  /health                   -> {"status": "ok"}; 503 while Redis refuses the password
- POST /<owner>/<title>/inputs    body: meta_param_dict      -> envelope (waits)
- POST /<owner>/<title>/version                              -> envelope (waits)
- POST /<owner>/<title>/parse     body: {meta_param_dict, adjustment, errors_warnings}
- POST /<owner>/<title>/sim       body: {meta_param_dict, adjustment}
                                                             -> {job_id, qlength} at once
- GET  /<owner>/<title>/query/<job_id>                       -> {job_id, ready, status}
- GET  /<owner>/<title>/get/<job_id>                         -> envelope, or 202 while pending
- GET  /<owner>/<title>/load      -> the model's jobs queued and running, its last result (load.py)
- GET  /load                      -> {"models": [the same, for every model]}

Every error is a JSON object `{"error": message}`: 400 for a malformed body, 401 without
the gateway token (when CS_GATEWAY_TOKEN is set), 404 for an unknown model or a job id not handed
out for the model the URL names (job ids are kept a week, jobs.JOB_RECORD_SECONDS), 413 for a body
over CS_GATEWAY_MAX_BODY_BYTES, 503 when Redis or the routing table is missing, 504 when a
synchronous job does not answer in time.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import uuid
from collections.abc import Callable
from typing import Any, Final

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from cs_runtime.envelope import JsonObject
from cs_runtime.errors import (
    BadRequestError,
    BrokerUnavailableError,
    CsRuntimeError,
    JobTimeoutError,
    RoutingTableError,
    UnknownJobError,
    UnknownModelError,
)
from cs_runtime.jobs import REDIS_DOWN, JobClient, broker_error
from cs_runtime.load import model_load, models_load
from cs_runtime.metrics import SUBMITTED
from cs_runtime.names import TaskKind
from cs_runtime.routing import Route, RoutingTable
from cs_runtime.settings import GatewaySettings

log = logging.getLogger(__name__)

STATUS_OF_ERROR: Final[dict[type[CsRuntimeError], int]] = {
    BadRequestError: 400,
    UnknownModelError: 404,
    UnknownJobError: 404,
    RoutingTableError: 503,
    BrokerUnavailableError: 503,
    JobTimeoutError: 504,
}
PUBLIC_ENDPOINTS: Final = frozenset({"health"})
REPEATED_SLASHES: Final = re.compile(r"/{2,}")


def error_response(status: int, message: str) -> tuple[Response, int]:
    return jsonify({"error": message}), status


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def read_json_body() -> Any:
    """The request body as JSON, None when empty.

    Reading through request.get_data enforces MAX_CONTENT_LENGTH (413). NaN/Infinity and
    absurd nesting are refused here as 400s: they would otherwise fail later as 500s.
    """
    raw = request.get_data(cache=False)
    if not raw.strip():
        return None
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise BadRequestError(f"request body is not valid JSON: {exc}") from None


def json_object(value: Any, what: str) -> JsonObject:
    if not isinstance(value, dict):
        raise BadRequestError(f"{what} must be a JSON object")
    return value


def body_fields(names: tuple[str, ...]) -> list[JsonObject]:
    """The named object fields of a JSON object body, in order; 400 if one is missing."""
    body = json_object(read_json_body(), "request body")
    missing = [name for name in names if name not in body]
    if missing:
        raise BadRequestError(f"request body lacks {', '.join(missing)}")
    return [json_object(body[name], name) for name in names]


def checked_job_id(job_id: str) -> str:
    """Job ids are the uuid4s the gateway hands out."""
    try:
        return str(uuid.UUID(job_id))
    except ValueError:
        raise BadRequestError(f"{job_id!r} is not a job id (a UUID)") from None


def collapse_repeated_slashes(app: Flask) -> None:
    """Read `//` in a path as `/` (a webserver whose gateway URL ends in a slash sends
    `//owner/title/sim/`). Werkzeug would answer an inner `//` with an HTML 308 redirect,
    which C/S's webserver does not follow; so the path is cleaned before routing instead."""
    app.url_map.merge_slashes = False
    route = app.wsgi_app

    def wsgi_app(environ: dict[str, Any], start_response: Any) -> Any:
        environ["PATH_INFO"] = REPEATED_SLASHES.sub("/", environ.get("PATH_INFO", ""))
        return route(environ, start_response)

    app.wsgi_app = wsgi_app  # type: ignore[method-assign]


def read_load(read: Callable[[], Any]) -> Any:
    """What `read` reads from Redis (a ModelLoad or a list of them); 503 when Redis is away."""
    try:
        return read()
    except REDIS_DOWN as exc:
        raise broker_error(exc) from None


def create_app(settings: GatewaySettings | None = None) -> Flask:
    """The gateway app; with no settings, they are read from the environment."""
    settings = settings or GatewaySettings.from_env()
    routes = RoutingTable(settings.routing_table_path, settings.routing_recheck_seconds)
    jobs = JobClient(settings.redis_url, settings.visibility_timeout)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    collapse_repeated_slashes(app)

    def route_rule(rule: str, endpoint: str, view: Callable[..., Any], method: str) -> None:
        # strict_slashes=False: C/S's webserver calls these with a trailing slash, curl users
        # without; neither should get a redirect (a POST would lose its body).
        app.add_url_rule(rule, endpoint, view, methods=[method], strict_slashes=False)

    @app.before_request
    def require_token() -> tuple[Response, int] | None:
        if settings.token is None or request.endpoint in PUBLIC_ENDPOINTS:
            return None
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), settings.token.encode()):
            return None
        response, status = error_response(401, "missing or wrong Authorization: Bearer token")
        response.headers["WWW-Authenticate"] = 'Bearer realm="cs-workers"'
        return response, status

    @app.after_request
    def log_refusal(response: Response) -> Response:
        # The chart runs gunicorn without an access log (its cost per submit, benchmarks/README.md),
        # so a refused request (a webserver with a wrong token, an unknown model) is logged here;
        # 5xx are logged where they are raised.
        if 400 <= response.status_code < 500:
            log.warning("%s %s: %d", request.method, request.path, response.status_code)
        return response

    @app.errorhandler(CsRuntimeError)
    def our_error(exc: CsRuntimeError) -> tuple[Response, int]:
        status = next((code for kind, code in STATUS_OF_ERROR.items() if isinstance(exc, kind)), 500)
        if status >= 500:
            log.warning("%s %s: %s", request.method, request.path, exc)
        return error_response(status, str(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        return error_response(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception) -> tuple[Response, int]:
        # A bug of ours: log it whole, answer JSON like every other error.
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, f"internal error: {type(exc).__name__}")

    def wait_bound(route: Route) -> float:
        return route.inputs_time_limit + settings.inputs_grace_seconds

    def health() -> tuple[Response, int]:
        # Unhealthy only when Redis refuses our password: a restart reads the Secret again. A Redis
        # that is away is waited for (restarting the gateway would not bring it back).
        refused = jobs.credentials_refused()
        if refused is not None:
            log.error("Redis refuses the gateway's password (%s); /health answers 503 until a restart", refused)
            return jsonify({"status": "unhealthy", "error": f"Redis refuses the gateway's password: {refused}"}), 503
        return jsonify({"status": "ok"}), 200

    def inputs(owner: str, title: str) -> Response:
        route = routes.lookup(owner, title)
        body = read_json_body()
        meta_param_dict = {} if body is None else json_object(body, "meta_param_dict (the body)")
        SUBMITTED.labels(route.slug, "inputs_get").inc()
        return jsonify(jobs.run_and_wait(route.tasks["inputs_get"], route.inputs_queue, [meta_param_dict],
                                         wait_bound(route), route.redis_key_prefix))

    def version(owner: str, title: str) -> Response:
        route = routes.lookup(owner, title)
        body = read_json_body()
        if body is not None:
            json_object(body, "request body")
        SUBMITTED.labels(route.slug, "inputs_version").inc()
        return jsonify(jobs.run_and_wait(route.tasks["inputs_version"], route.inputs_queue, [], wait_bound(route),
                                         route.redis_key_prefix))

    def enqueue(route: Route, kind: TaskKind, queue: str, fields: list[JsonObject]) -> Response:
        job_id = str(uuid.uuid4())
        qlength = jobs.enqueue(route.tasks[kind], queue, [job_id, *fields], job_id, route.slug, route.redis_key_prefix)
        SUBMITTED.labels(route.slug, kind).inc()
        return jsonify({"job_id": job_id, "qlength": qlength})

    def parse(owner: str, title: str) -> Response:
        route = routes.lookup(owner, title)
        fields = body_fields(("meta_param_dict", "adjustment", "errors_warnings"))
        return enqueue(route, "inputs_parse", route.inputs_queue, fields)

    def sim(owner: str, title: str) -> Response:
        route = routes.lookup(owner, title)
        fields = body_fields(("meta_param_dict", "adjustment"))
        return enqueue(route, "sim", route.sim_queue, fields)

    def own_job(owner: str, title: str, job_id: str) -> tuple[str, Route]:
        """The job id, once it is known to belong to the model the URL names (404 otherwise)."""
        route = routes.lookup(owner, title)
        job_id = checked_job_id(job_id)
        jobs.check_model(job_id, route.slug)
        return job_id, route

    def query(owner: str, title: str, job_id: str) -> Response:
        job_id, route = own_job(owner, title, job_id)
        status = jobs.status(job_id, route.redis_key_prefix)
        return jsonify({"job_id": status.job_id, "ready": status.ready, "status": status.status})

    def get(owner: str, title: str, job_id: str) -> tuple[Response, int]:
        job_id, route = own_job(owner, title, job_id)
        envelope = jobs.result(job_id, route.redis_key_prefix)
        if envelope is None:
            return jsonify({"job_id": job_id, "status": "PENDING"}), 202
        return jsonify(envelope), 200

    def load_of(owner: str, title: str) -> Response:
        route = routes.lookup(owner, title)
        return jsonify(read_load(lambda: model_load(jobs.redis, route)))

    def load_all() -> Response:
        return jsonify({"models": read_load(lambda: models_load(jobs.redis, routes.routes().values()))})

    route_rule("/health", "health", health, "GET")
    route_rule("/load", "load_all", load_all, "GET")
    route_rule("/<owner>/<title>/load/", "load", load_of, "GET")
    route_rule("/<owner>/<title>/inputs/", "inputs", inputs, "POST")
    route_rule("/<owner>/<title>/version/", "version", version, "POST")
    route_rule("/<owner>/<title>/parse/", "parse", parse, "POST")
    route_rule("/<owner>/<title>/sim/", "sim", sim, "POST")
    route_rule("/<owner>/<title>/query/<job_id>/", "query", query, "GET")
    route_rule("/<owner>/<title>/get/<job_id>/", "get", get, "GET")
    return app
