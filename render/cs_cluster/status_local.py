"""`cs-cluster local status`: the status of a `cs-cluster local up` on this machine.

`local up` (cs_cluster.local.LocalCluster) keeps a private state file per gateway port: its own
pid, each Deployment the chart rendered with its processes and their readiness probes (mapped to
this machine), the models' names, where Redis listens, the gateway's address and token. This
module writes, reads and removes it, and judges what it describes as a kubelet and a Deployment
would:

- a process is ready when it runs and its container's readinessProbe passes (the chart's own:
  the Celery workers' heartbeat check, the gateway's and Dask's `/health`), run here;
- Redis is healthy when it answers PING (with the password the chart generated);
- sims queued and running and the last result come from the gateway's `GET /load`, on loopback.

The file lives in a directory only this user can read (mode 0700 in the temporary directory, by
uid), mode 0600: it holds the gateway token and Redis's password, as the `gateway-token` file
`local up` writes does. It is removed when `local up` stops.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import ToolError, UsageError
from .status import (
    GATEWAY,
    REDIS,
    ClusterStatus,
    Load,
    PartStatus,
    Workload,
    assemble,
    image_tag,
    parse_loads,
    select,
)

STATE_VERSION = 1


def state_directory() -> Path:
    return Path(tempfile.gettempdir()) / f"cs-cluster-local-{os.getuid()}"


def state_path(port: int) -> Path:
    """Where `local up --port PORT` keeps its state."""
    return state_directory() / f"{port}.json"


def _private_directory() -> Path:
    """The state directory, made 0700 if new; refused if it is not this user's own directory."""
    directory = state_directory()
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode=0o700)
    found = directory.lstat()
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid() or found.st_mode & 0o077:
        raise ToolError(f"{directory} is not a private directory of this user; remove it and try again")
    return directory


def write_state(port: int, document: dict[str, Any]) -> Path:
    """Write the state of `local up --port PORT` (atomically, mode 0600)."""
    target = _private_directory() / f"{port}.json"
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{port}-")
    with os.fdopen(descriptor, "w") as handle:  # mkstemp makes it 0600
        json.dump({"version": STATE_VERSION, "port": port, **document}, handle)
    os.replace(temporary, target)
    return target


def remove_state(port: int, supervisor_pid: int) -> None:
    """Remove the state file of `port` if `supervisor_pid` wrote it (not a newer `local up`'s)."""
    path = state_path(port)
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text()).get("supervisor_pid") == supervisor_pid:
            path.unlink()


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped by `local up`, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def read_state(port: int) -> dict[str, Any]:
    """The state of the `local up` serving `port`. Raises UsageError when there is none (or its
    `local up` has gone), ToolError when the file cannot be read."""
    path = state_path(port)
    try:
        document: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"no local cluster on port {port}: `cs-cluster local up --port {port}` writes "
                         f"{path} once it is ready") from None
    except (OSError, ValueError) as error:
        raise ToolError(f"cannot read {path}: {error}") from None
    if document.get("version") != STATE_VERSION:
        raise ToolError(f"{path} was written by another version of cs-cluster; restart `local up`")
    if not _alive(int(document.get("supervisor_pid", 0))):
        raise UsageError(f"no local cluster on port {port}: the `local up` that wrote {path} "
                         f"(pid {document.get('supervisor_pid')}) is gone")
    return document


def probe_passes(probe: dict[str, Any] | None) -> bool:
    """Run one readiness probe as the kubelet would: an exec probe passes when its command exits
    0 within its timeout, an httpGet probe when it answers 200-399."""
    if not probe:
        return True
    timeout = float(probe.get("timeout", 1))
    if "exec" in probe:
        try:
            result = subprocess.run(probe["exec"], env=probe.get("env"), cwd=probe.get("cwd"), timeout=timeout,
                                    capture_output=True, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return result.returncode == 0
    try:
        with urllib.request.urlopen(probe["http"], timeout=timeout) as response:  # noqa: S310 - loopback, ours
            return 200 <= int(response.status) < 400
    except (urllib.error.URLError, OSError, ValueError):
        return False


def redis_answers(port: int | None, password: str | None, timeout: float) -> tuple[bool, str]:
    """PING Redis as its default user (the gateway's): (answers, how or why not)."""
    import redis  # local mode runs the runtime's processes from this environment, which has it

    if port is None:
        return False, "its port is unknown"
    client = redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=timeout,
                         socket_connect_timeout=timeout)
    try:
        started = time.monotonic()
        client.ping()
        return True, f"PING answered on 127.0.0.1:{port} in {(time.monotonic() - started) * 1000:.0f} ms"
    except redis.exceptions.RedisError as error:
        return False, f"PING on 127.0.0.1:{port}: {error}"
    finally:
        client.close()


def fetch_load(url: str, token: str | None, timeout: float) -> tuple[dict[str, Load] | None, str]:
    """`GET {url}/load` with the gateway's token: (loads by slug, how) or (None, why not)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"{url}/load", headers=headers)  # noqa: S310 - http://127.0.0.1, from our state
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback, ours
            body = response.read()
    except urllib.error.HTTPError as error:
        return None, f"{url}/load answered {error.code}: {error.read()[:200].decode(errors='replace').strip()}"
    except (urllib.error.URLError, OSError) as error:
        return None, f"{url}/load did not answer: {getattr(error, 'reason', error)}"
    try:
        loads = parse_loads(json.loads(body))
    except (ValueError, ToolError) as error:
        return None, f"{url}/load: {error}"
    return loads, f"{url}/load answered in {(time.monotonic() - started) * 1000:.0f} ms"


def _workload(entry: dict[str, Any], ready: int) -> Workload:
    alive = [process for process in entry["processes"] if _alive(int(process["pid"]))]
    return Workload(kind=str(entry["kind"]), name=str(entry["name"]), component=str(entry["component"]),
                    model=entry.get("model"), desired=int(entry["replicas"]), ready=ready,
                    tags=(image_tag(str(entry["image"])),) if alive else ())


def local_status(port: int, *, models: Sequence[str] = (), timeout: float = 10.0) -> ClusterStatus:
    """The status of the `local up` serving `port` (see the module's docstring).

    Raises UsageError when no `local up` serves that port or `models` names a model it does not run.
    """
    state = read_state(port)
    workloads = []
    redis_ok, redis_detail = False, "not found"
    for entry in state["workloads"]:
        if entry["component"] == REDIS:
            redis_ok, redis_detail = redis_answers(state["redis"]["port"], state["redis"]["password"], timeout)
            ready = int(redis_ok and all(_alive(int(p["pid"])) for p in entry["processes"]))
        else:
            ready = sum(_alive(int(p["pid"])) and probe_passes(p.get("probe")) for p in entry["processes"])
        workloads.append(_workload(entry, ready))
    loads, how = fetch_load(state["gateway"]["url"], state["gateway"]["token"], timeout)
    names = {slug: (str(name[0]), str(name[1])) for slug, name in (state.get("models") or {}).items()}
    found, redis, gateway = assemble(workloads, names, loads)
    if models:
        found = select(found, models, "the local cluster")
    return ClusterStatus(
        where=f"local mode on {state['gateway']['url']} (logs in {state['state_dir']}/logs)",
        models=found,
        redis=PartStatus(REDIS, redis, answers=redis_ok, detail=redis_detail),
        gateway=PartStatus(GATEWAY, gateway, answers=loads is not None, detail=how),
        scope={"local": {"gateway": state["gateway"]["url"], "state_dir": state["state_dir"]}},
    )
