"""What every benchmark shares: timing, statistics, tables, the machine, the load, test configs.

Benchmarks are measurements, not tests: nothing here asserts on speed. A benchmark that cannot
run (a command fails) raises; a benchmark that runs slowly just reports it.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "cs-workers"
EXAMPLES = REPO / "examples"
EXAMPLE_CONFIG = EXAMPLES / "worker_config.yaml"


# -- settings ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSettings:
    """What the command line asked for. `quick` makes every benchmark tiny (a smoke run)."""

    quick: bool = False


# -- timing and statistics -----------------------------------------------------------------------
def seconds_taken(action: Callable[[], Any]) -> float:
    """Wall-clock seconds `action` takes (perf_counter: monotonic, highest resolution)."""
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def interleaved(contenders: dict[str, Callable[[], Any]], repetitions: int) -> dict[str, list[float]]:
    """Time each contender once per repetition, alternating (A, B, A, B, ...).

    The order is rotated every repetition (A B, B A, A B, ...) so that neither side always
    runs first, right after a quiet moment or right after the other side warmed a cache.
    Alternating in one process means a busy spell on this shared machine hits both sides.
    """
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in names}
    for repetition in range(repetitions):
        shift = repetition % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(seconds_taken(contenders[name]))
    return times


@dataclass(frozen=True)
class Command:
    """A command line to time, with its environment (None: ours)."""

    argv: list[str]
    env: dict[str, str] | None = None


@dataclass
class CommandTimes:
    """Wall-clock and CPU seconds of each run of named commands, in run order."""

    wall: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)

    def extend(self, other: CommandTimes) -> None:
        for mine, theirs in ((self.wall, other.wall), (self.cpu, other.cpu)):
            for name, values in theirs.items():
                mine.setdefault(name, []).extend(values)


def interleaved_commands(commands: dict[str, Command], repetitions: int) -> CommandTimes:
    """`interleaved` for commands: wall-clock from `interleaved`, CPU seconds from the children."""
    cpu: dict[str, list[float]] = {name: [] for name in commands}

    def runner(name: str) -> Callable[[], None]:
        def run() -> None:
            cpu[name].append(run_checked(commands[name].argv, commands[name].env))
        return run

    wall = interleaved({name: runner(name) for name in commands}, repetitions)
    return CommandTimes(wall, cpu)


def percentile(values: Sequence[float], fraction: float) -> float:
    """The `fraction` quantile (0.99 for p99), interpolated between the nearest samples."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def pair_ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Ratio of each measured pair: the two sides of one repetition ran back to back."""
    return [a / b for a, b in zip(numerators, denominators, strict=True)]


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares slope and intercept of ys against xs."""
    fit = statistics.linear_regression(xs, ys)
    return fit.slope, fit.intercept


# -- formatting ----------------------------------------------------------------------------------
def fmt_seconds(value: float) -> str:
    """Seconds in the unit that keeps three significant digits readable."""
    if value < 0:
        return "-" + fmt_seconds(-value)
    if value < 1e-3:
        return f"{value * 1e6:.0f} µs"
    if value < 1:
        return f"{value * 1e3:.3g} ms"
    return f"{value:.3g} s"


def fmt_spread(values: Sequence[float], unit: Callable[[float], str] = fmt_seconds) -> str:
    """`median (min to max, n)`: the median and the whole range of the repetitions."""
    if len(values) == 1:
        return f"{unit(values[0])} (n=1)"
    return f"{unit(median(values))} ({unit(min(values))} to {unit(max(values))}, n={len(values)})"


def fmt_ratio(value: float) -> str:
    return f"{value:.2f}x"


def verdict(met: bool, detail: str = "") -> str:
    return ("met" if met else "MISSED") + (f": {detail}" if detail else "")


@dataclass
class Table:
    """One result table, printed as Markdown so it can go into benchmarks/README.md as is."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([str(cell) for cell in cells])

    def note(self, text: str) -> None:
        self.notes.append(text)

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |",
                 "|" + "|".join(" --- " for _ in self.columns) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.notes:
            lines.append("")
            lines += [f"- {text}" for text in self.notes]
        return "\n".join(lines) + "\n"


# -- the machine and its load --------------------------------------------------------------------
def load_average() -> float:
    """The 1-minute load average: runnable processes, ours included, averaged over a minute."""
    return os.getloadavg()[0]


def load_text() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min)"


def wait_for_quiet(threshold: float, longest: float, log: Callable[[str], None]) -> tuple[float, float]:
    """Wait up to `longest` seconds for the 1-minute load to fall under `threshold`.

    Returns (load when we stopped waiting, seconds waited). Bounded on purpose: on a machine
    others share, the load may never fall, and a benchmark run must still end; the caller
    reports the load it measured under instead.
    """
    started = time.monotonic()
    announced = False
    while load_average() >= threshold and time.monotonic() - started < longest:
        if not announced:
            log(f"waiting up to {longest:.0f} s for the load ({load_average():.2f}) to fall under {threshold}")
            announced = True
        time.sleep(2)
    return load_average(), time.monotonic() - started


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_total_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return float("nan")


def tool_version(command: Sequence[str]) -> str:
    try:
        result = subprocess.run(list(command), capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    return (result.stdout or result.stderr).strip().splitlines()[0] if (result.stdout or result.stderr) else "?"


def machine_table() -> Table:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    table = Table("Machine", ["what", "value"])
    table.add("CPUs usable (nproc)", cpus)
    table.add("CPU model", cpu_model())
    table.add("memory", f"{memory_total_gib():.1f} GiB")
    table.add("OS", f"{platform.system()} {platform.release()}")
    table.add("Python", platform.python_version())
    table.add("redis-server", tool_version(["redis-server", "--version"]))
    table.add("repository commit", tool_version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
              + " (plus whatever is uncommitted in the work tree)")
    table.add("load average at start", load_text())
    return table


# -- generated worker_configs --------------------------------------------------------------------
def model_entry(index: int, build_num: int = 0) -> dict[str, Any]:
    """Model number `index` of a generated worker_config: even ones Celery, odd ones Dask.

    Resources are the kind C/S models asked for: a Celery model one core and a few GB, a Dask
    model two single-core-per-thread workers of 2 cores and 7 GB (OG-USA's shape).
    """
    dask = index % 2 == 1
    size = {"cpu": 2, "memory": "7G"} if dask else {"cpu": 1, "memory": "2G"}
    return {
        "owner": f"Owner{index:04d}",
        "title": f"Model-{index:04d}",
        "branch": "master",
        "repo_url": f"https://github.com/owner{index:04d}/model-{index:04d}",
        "cluster_type": "dask" if dask else "single-core",
        "replicas": 2 if dask else 1,
        "sim_time_limit": 3600,
        "resources": {"requests": dict(size), "limits": dict(size)},
        "env": {"BUILD_NUM": build_num},
        "secrets": {},
    }


def write_worker_config(path: Path, models: int, build_nums: dict[int, int] | None = None) -> Path:
    """A worker_config of `models` models, half Celery, half Dask; `build_nums` overrides BUILD_NUM."""
    build_nums = build_nums or {}
    entries = [model_entry(index, build_nums.get(index, 0)) for index in range(models)]
    path.write_text(yaml.safe_dump(entries, sort_keys=False))
    return path


def run_checked(command: Sequence[str], env: dict[str, str] | None = None) -> float:
    """Run a command, its output thrown away, and return the CPU seconds (user + system) it and its
    children used. CPU time moves less than wall clock when other processes compete for the cores
    (it still grows with contention for caches and shared cores), so it cross-checks wall-clock
    ratios on a busy machine. A failure is an error: the numbers would be void.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(list(command), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
