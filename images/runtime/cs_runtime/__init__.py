"""cs_runtime: the processes the cs-workers chart runs.

- `cs_runtime.gateway:create_app()` is the HTTP gateway (Flask, under gunicorn);
- `cs_runtime.worker:app` is the Celery app of one model's io and sim workers;
- `python -m cs_runtime.health` is those workers' probe (it reads their heartbeat file).

The names, environment variables and payloads they share with the chart are in
docs/runtime-contract.md; each module here implements one part of it.
"""

__version__ = "0.1.0"
