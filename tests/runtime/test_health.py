"""Worker liveness: the heartbeat file the main worker process touches, and the probe the chart
runs (`python -m cs_runtime.health --max-age 120`), which only reads that file's age."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cs_runtime.heartbeat import heartbeat_step
from cs_runtime.names import ModelNames

from .support import (
    CELERY_SUM_CONFIG,
    RedisServer,
    celery_client,
    start_worker,
    wait_until,
    worker_env,
)

HEARTBEAT_MODEL = ModelNames("cs-tests", "Heartbeat")


def probe(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The chart's probe command, as the kubelet runs it."""
    environment = {key: value for key, value in os.environ.items() if key != "CS_HEARTBEAT_FILE"}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "cs_runtime.health", *args],
        env=environment, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    text = (done.stdout + done.stderr).strip()
    assert "\n" not in text, text
    return text


def test_probe_passes_on_a_fresh_heartbeat(tmp_path: Path) -> None:
    beat = tmp_path / "cs-worker-heartbeat"
    beat.touch()
    done = probe("--max-age", "120", env={"CS_HEARTBEAT_FILE": str(beat)})
    assert done.returncode == 0, done.stderr
    assert one_line(done) == "ok"


def test_probe_fails_on_a_stale_heartbeat_with_one_line(tmp_path: Path) -> None:
    beat = tmp_path / "cs-worker-heartbeat"
    beat.touch()
    old = time.time() - 300
    os.utime(beat, (old, old))
    done = probe("--max-age", "120", env={"CS_HEARTBEAT_FILE": str(beat)})
    assert done.returncode == 1
    line = one_line(done)
    assert line.startswith("unhealthy: heartbeat is stale") and "300 s ago (limit 120 s)" in line
    assert probe("--max-age", "600", env={"CS_HEARTBEAT_FILE": str(beat)}).returncode == 0


@pytest.mark.parametrize(
    ("args", "env", "reason"),
    [
        ((), {"CS_HEARTBEAT_FILE": "{missing}"}, "no heartbeat yet"),
        (("--file", "{missing}"), {}, "no heartbeat yet"),
        ((), {}, "CS_HEARTBEAT_FILE is not set"),
        ((), {"CS_HEARTBEAT_FILE": ""}, "CS_HEARTBEAT_FILE is not set"),
        (("--max-age", "0", "--file", "{missing}"), {}, "--max-age must be a positive number"),
        (("--max-age", "-5", "--file", "{missing}"), {}, "--max-age must be a positive number of seconds, got -5"),
        # A path that cannot be read (a file where a directory should be): said, not a traceback.
        (("--file", "{missing}/x"), {}, "cannot read the heartbeat file"),
    ],
)
def test_probe_fails_with_a_reason(tmp_path: Path, args: tuple[str, ...], env: dict[str, str], reason: str) -> None:
    missing = str(tmp_path / "never-written")
    if "{missing}/x" in args:
        Path(missing).write_text("")  # a file, so {missing}/x is not a path that can exist
    environment = {name: value.format(missing=missing) for name, value in env.items()}
    done = probe(*(arg.format(missing=missing) for arg in args), env=environment)
    assert done.returncode == 1
    assert reason in one_line(done)


@pytest.mark.parametrize(("age", "max_age", "stale"), [(119.5, None, False), (120.5, None, True), (10, 10, True),
                                                    (9.5, 10, False), (0.25, 0.5, False), (0.75, 0.5, True)],
                         ids=["default-fresh", "default-stale", "at-the-limit", "below", "fraction-fresh",
                              "fraction-stale"])
def test_probe_limit_is_the_age_in_seconds(tmp_path: Path, age: float, max_age: float | None, stale: bool) -> None:
    """The age is now minus the file's mtime; stale from --max-age on (120 s by default); any
    positive --max-age, fractions included, is a limit."""
    beat = tmp_path / "cs-worker-heartbeat"
    beat.touch()
    os.utime(beat, (time.time() - age,) * 2)
    done = probe(*(["--max-age", str(max_age)] if max_age is not None else []), "--file", str(beat))
    assert done.returncode == (1 if stale else 0), done.stderr


def test_age_is_a_difference_of_clock_readings(tmp_path: Path) -> None:
    from cs_runtime.health import heartbeat_problem

    beat = tmp_path / "cs-worker-heartbeat"
    beat.touch()
    os.utime(beat, (1000, 1000))
    assert heartbeat_problem(beat, 120, now=1100) is None
    assert heartbeat_problem(beat, 120, now=1119.9) is None
    assert heartbeat_problem(beat, 120, now=1120) is not None  # stale from the limit on
    assert heartbeat_problem(beat, 120, now=2000) == f"heartbeat is stale: {beat} was last touched 1000 s ago " \
                                                      "(limit 120 s)"


def test_the_probe_stays_light() -> None:
    """It runs every few seconds in every worker pod: no Celery, Redis or model imports."""
    code = "import sys, cs_runtime.health; print(sorted(m for m in sys.modules if m.split('.')[0] in " \
           "('celery', 'kombu', 'redis', 'dask', 'cs_config')))"  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


# -- the bootstep, in-process: when does it beat? ------------------------------------------------


@dataclass
class StubTimer:
    """A worker timer whose repeated entries never fire: an event loop that does not turn."""

    entries: list[Any] = field(default_factory=list)

    def call_repeatedly(self, secs: float, fun: Any, *args: Any, **kwargs: Any) -> Any:
        entry = StubEntry()
        self.entries.append((fun, entry))
        return entry


@dataclass
class StubEntry:
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class StubConsumer:
    connection: object | None = None


@dataclass
class StubWorker:
    timer: StubTimer = field(default_factory=StubTimer)
    consumer: StubConsumer = field(default_factory=lambda: StubConsumer(connection=object()))


def test_the_step_beats_while_the_loop_turns_or_the_broker_is_away(tmp_path: Path) -> None:
    beat = tmp_path / "beat"
    interval = 0.05
    worker = StubWorker()
    step = heartbeat_step(beat, interval)(worker)
    step.start(worker)
    try:
        wait_until(beat.exists, 5, "the first beat")
        ((turn, entry),) = worker.timer.entries

        def age() -> float:
            return time.time() - beat.stat().st_mtime

        def beats_after(moment: int) -> bool:
            return beat.stat().st_mtime_ns > moment

        # The loop has not turned for 3 intervals and the consumer is connected: a stuck main
        # process, so no more beats. (Only lower bounds on time here: a loaded machine can delay
        # a beat, never make one early.)
        wait_until(lambda: age() > 10 * interval, 5, "the beats to stop")
        stopped_at = beat.stat().st_mtime_ns
        # Each turn of the loop revives them: a beat newer than the last one before the turn.
        turn()
        wait_until(lambda: beats_after(stopped_at), 5, "a beat after the loop turned")
        # Waiting for Redis to come back (Celery cleared consumer.connection) counts as alive.
        wait_until(lambda: age() > 10 * interval, 5, "the beats to stop again")
        stopped_again_at = beat.stat().st_mtime_ns
        worker.consumer.connection = None
        wait_until(lambda: beats_after(stopped_again_at), 5, "a beat while reconnecting")
    finally:
        step.stop(worker)
    assert entry.cancelled
    assert step.thread is not None
    step.thread.join(timeout=5)
    assert not step.thread.is_alive()


# -- a real worker -------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_real_worker_beats_through_a_long_sim_and_a_redis_outage(tmp_path: Path) -> None:
    """The chart's worker command with CS_HEARTBEAT_FILE: the file stays fresh while a sim runs in
    the pool child and while Redis is away; it goes stale when the main process is stopped."""
    redis_server = RedisServer(tmp_path).start()
    beat = tmp_path / "cs-worker-heartbeat"
    env = worker_env(HEARTBEAT_MODEL, "sim", "celery", CELERY_SUM_CONFIG, redis_server,
                     CS_HEARTBEAT_FILE=str(beat), CS_HEARTBEAT_INTERVAL_SECONDS="0.5")  # fmt: skip
    worker = start_worker(HEARTBEAT_MODEL, "sim", env, tmp_path)
    fresh = ["--max-age", "2", "--file", str(beat)]

    def stays_fresh(seconds: float) -> None:
        """The main process keeps beating through `seconds`: the file's mtime moves on (at one beat
        per 0.5 s, 2 to 8 are due; twice is required from 2 s on), the last beat in the window.
        Counting beats, not bounding their gaps, holds on a loaded machine."""
        started_ns, last, beats = time.time_ns(), beat.stat().st_mtime_ns, 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            now = beat.stat().st_mtime_ns
            beats, last = beats + (now != last), now
            time.sleep(0.05)
        assert beats >= (2 if seconds >= 2 else 1) and last >= started_ns, (beats, worker.log()[-2000:])

    try:
        worker.wait_ready()
        wait_until(lambda: probe(*fresh).returncode == 0, 10, "the probe to pass")
        client = celery_client(redis_server)
        job_id = str(uuid.uuid4())
        pending = client.send_task(HEARTBEAT_MODEL.task("sim"), args=[job_id, {}, {"sum": {"sleep": 3}}],
                                   queue=HEARTBEAT_MODEL.sim_queue, task_id=job_id)  # fmt: skip
        wait_until(lambda: pending.state == "STARTED", 10, "the sim to start")
        stays_fresh(2.5)  # the model sleeps in the pool child; the main process beats
        assert pending.get(timeout=20)["status"] == "SUCCESS"

        redis_server.stop()
        wait_until(lambda: "Connection to broker lost" in worker.log(), 20, "the worker to notice")
        stays_fresh(4)  # waiting for the broker is not a reason to restart the pod
        redis_server.start()
        wait_until(lambda: worker.log().count("Connected to redis") >= 2, 30, "the worker to reconnect")
        stays_fresh(1)

        os.kill(worker.process.pid, signal.SIGSTOP)  # the main process hangs
        try:
            time.sleep(2.5)
            stale = probe(*fresh)
            assert stale.returncode == 1 and "heartbeat is stale" in stale.stderr
        finally:
            os.kill(worker.process.pid, signal.SIGCONT)
        wait_until(lambda: probe(*fresh).returncode == 0, 10, "the probe to pass again")
    finally:
        worker.stop()
        redis_server.stop()


@pytest.mark.slow
def test_a_rotated_redis_password_fails_the_probes_of_pods_holding_the_old_one(tmp_path: Path) -> None:
    """redis.auth.existingSecret changed and Redis restarted with the new password: a worker holding
    the old one stops beating, so its liveness probe fails and the kubelet restarts it (reading the
    Secret again), while a Redis that is merely away is still waited for; the gateway's /health
    answers 503 and says why, and its routes say so too."""
    from cs_runtime.gateway import create_app
    from cs_runtime.settings import GatewaySettings

    from .support import route_entry, write_routes

    (tmp_path / "redis-data").mkdir()
    (tmp_path / "restarted").mkdir()
    redis_server = RedisServer(tmp_path / "redis-data").start()
    beat = tmp_path / "cs-worker-heartbeat"
    env = worker_env(HEARTBEAT_MODEL, "sim", "celery", CELERY_SUM_CONFIG, redis_server,
                     CS_HEARTBEAT_FILE=str(beat), CS_HEARTBEAT_INTERVAL_SECONDS="0.5")  # fmt: skip
    worker = start_worker(HEARTBEAT_MODEL, "sim", env, tmp_path)
    fresh = ["--max-age", "2", "--file", str(beat)]
    routes = write_routes(tmp_path / "routes.json", route_entry(HEARTBEAT_MODEL))
    old_gateway = create_app(GatewaySettings(routing_table_path=routes, redis_url=redis_server.url)).test_client()
    rotated: RedisServer | None = None
    try:
        worker.wait_ready()
        wait_until(lambda: probe(*fresh).returncode == 0, 10, "the probe to pass")
        assert old_gateway.get("/health").status_code == 200

        redis_server.stop()
        rotated = RedisServer(tmp_path / "redis-data", port=redis_server.port, password="rotated-s3cret").start()
        wait_until(lambda: "Redis refuses this worker's password" in worker.log(), 30, "the worker to say why")
        wait_until(lambda: probe(*fresh).returncode == 1, 10, "the probe to fail")
        assert "heartbeat is stale" in probe(*fresh).stderr
        time.sleep(2)
        assert probe(*fresh).returncode == 1, "a worker that Redis refuses must stay unhealthy"

        health = old_gateway.get("/health")
        assert health.status_code == 503
        assert health.get_json()["error"].startswith("Redis refuses the gateway's password")
        sim = old_gateway.post(f"/{HEARTBEAT_MODEL.owner}/{HEARTBEAT_MODEL.title}/sim",
                               json={"meta_param_dict": {}, "adjustment": {}})
        assert sim.status_code == 503 and "Redis refuses the gateway's password" in sim.get_json()["error"]

        # The kubelet's restart: the same command, the Secret's new password.
        worker.stop()
        beat.unlink()
        restarted = start_worker(HEARTBEAT_MODEL, "sim", {**env, **rotated.env()}, tmp_path / "restarted")
        try:
            restarted.wait_ready()
            wait_until(lambda: probe(*fresh).returncode == 0, 20, "the restarted worker's probe to pass")
        finally:
            restarted.stop()
        new_gateway = create_app(GatewaySettings(routing_table_path=routes, redis_url=rotated.url)).test_client()
        assert new_gateway.get("/health").status_code == 200
    finally:
        worker.stop()
        (rotated or redis_server).stop()
