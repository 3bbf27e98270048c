"""The chart's probe of Celery workers: `python -m cs_runtime.health --max-age 120`.

Exits 0 when the heartbeat file (CS_HEARTBEAT_FILE, or --file) was touched less than
--max-age seconds ago, 1 with a one-line reason otherwise. It reads one file's mtime and
imports nothing heavy, so a probe every few seconds costs nothing and never touches Redis.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def heartbeat_problem(path: Path, max_age: float, now: float | None = None) -> str | None:
    """Why the worker does not look alive, or None when its heartbeat is fresh."""
    try:
        modified = path.stat().st_mtime
    except FileNotFoundError:
        return f"no heartbeat yet: {path} does not exist (the worker has not started beating)"
    except OSError as exc:
        return f"cannot read the heartbeat file {path}: {exc}"
    age = (time.time() if now is None else now) - modified
    if age >= max_age:
        return f"heartbeat is stale: {path} was last touched {age:.0f} s ago (limit {max_age:g} s)"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cs_runtime.health", description=__doc__)
    parser.add_argument("--max-age", type=float, default=120.0, help="seconds (default 120)")
    parser.add_argument("--file", type=Path, default=None, help="default: $CS_HEARTBEAT_FILE")
    args = parser.parse_args(argv)
    path: Path | None = args.file
    if path is None:
        configured = os.environ.get("CS_HEARTBEAT_FILE", "").strip()
        if not configured:
            print("unhealthy: CS_HEARTBEAT_FILE is not set and no --file was given", file=sys.stderr)
            return 1
        path = Path(configured)
    if not args.max_age > 0:
        print(f"unhealthy: --max-age must be a positive number of seconds, got {args.max_age:g}", file=sys.stderr)
        return 1
    problem = heartbeat_problem(path, args.max_age)
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
