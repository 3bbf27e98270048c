"""A stand-in for C/S 0.16's gateway submit path: the peer the gateway benchmark measures against.

Our own code, written from C/S 0.16's documented behaviour (compute-studio, tag 0.16.0,
`distributed/api/endpoints.py`; /work/shared/REFERENCE.md): a Flask route that reads the JSON
body, calls Celery's `signature(...).delay()` on the model's task through an app whose broker and
result backend are both Redis (as C/S configured it), routes it to the model's queue, and answers
`{job_id, qlength}` with `qlength = LLEN(queue) + 1`. No token, no body validation, no routing
table: C/S 0.16 had none of them. Run under gunicorn as C/S ran it:

    CS_PEER_REDIS_URL=redis://... gunicorn --workers 2 --bind 127.0.0.1:PORT peer_gateway:app
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import redis
from celery import Celery  # type: ignore[import-untyped]
from flask import Flask, request

REDIS_URL = os.environ.get("CS_PEER_REDIS_URL", "redis://127.0.0.1:6379/0")

celery_app = Celery("cs-016", broker=REDIS_URL, backend=REDIS_URL, set_as_current=False)
celery_app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"],
                       # C/S 0.16 routed each model's tasks to its queues by name.
                       task_routes=(lambda name, args, kwargs, options, task=None, **kw: _route(name),))
client = redis.Redis.from_url(REDIS_URL)
app = Flask(__name__)


def clean(word: str) -> str:
    return re.sub("[^0-9a-zA-Z]+", "", word).lower()


def _route(task_name: str) -> dict[str, str]:
    model, _, action = task_name.partition("_tasks.")
    return {"queue": f"{model}_queue" if action == "sim" else f"{model}_inputs_queue"}


def async_endpoint(model: str, compute_task: str) -> Any:
    inputs = json.loads(request.get_data())
    result = celery_app.signature(f"{model}_tasks.{compute_task}", kwargs=inputs).delay()
    length = client.llen(f"{model}_queue") + 1
    return json.dumps({"job_id": str(result), "qlength": length})


@app.route("/<owner>/<title>/sim", methods=["POST"])
@app.route("/<owner>/<title>/sim/", methods=["POST"])
def endpoint_sim(owner: str, title: str) -> Any:
    return async_endpoint(f"{clean(owner)}_{clean(title)}", "sim")
