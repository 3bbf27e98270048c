"""Entry point of the io and sim workers: `celery --app cs_runtime.worker:app worker ...`.

The app is built from the environment the chart sets (settings.WorkerSettings); a missing
variable ends the process with one line naming it.
"""

from __future__ import annotations

from typing import Any

from cs_runtime.errors import CsRuntimeError
from cs_runtime.settings import WorkerSettings
from cs_runtime.worker_app import create_worker_app

try:
    app: Any = create_worker_app(WorkerSettings.from_env())
except CsRuntimeError as exc:
    raise SystemExit(f"cs_runtime.worker: {exc}") from exc
