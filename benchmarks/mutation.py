"""Mutation testing: when the code that keeps a promise breaks, does a test fail?

Two parts, both on a copy of the repository (tests included), never on the working tree that
others edit. The copy's packages come first on PYTHONPATH, so every process a test starts (the
CLI, Celery and Dask workers, gunicorn) runs the mutant too, and its chart is the one the tests
render.

- chart: CHART_MUTATIONS, one-line template mutations, each with the promise it breaks and the
  tests that hold it. Each is applied to the copy and those tests run; the mutant is killed when
  they fail (pytest exit status 1). tests/test_mutations.py runs this list in CI.
- python: cosmic-ray (PyPI) mutates PYTHON_TARGETS module by module, each with the test files
  that cover it (a whole-suite run per mutant would take days on 2 cores: see the README's
  testing section for what was measured).

    .venv/bin/python benchmarks/mutation.py chart
    .venv/bin/python benchmarks/mutation.py python [MODULE ...]     # e.g. cs_cluster/quantities.py
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness import REPO, RunSettings, Table

PYTHON = Path(sys.executable)
NOT_CLUSTER = ("-m", "not cluster")


@dataclass(frozen=True)
class ChartMutation:
    """`old` (exactly once in `file`, a path under charts/cs-workers) becomes `new`: `promise`
    breaks, and `tests` (pytest arguments) must fail."""

    name: str
    file: str
    old: str
    new: str
    promise: str
    tests: tuple[str, ...]
    needs_cluster: bool = False


MODEL_WORKERS = "tests/chart/test_model_workers.py"
POD_SECURITY = ("tests/security/test_pod_security.py", "tests/chart/test_model_workers.py")
NETWORK = ("tests/security/test_network_policies.py",)
CHART_MUTATIONS: tuple[ChartMutation, ...] = (
    ChartMutation("visibility-timeout-boundary", "templates/_check-values.tpl",
                  "{{- if le (float64 $.Values.celery.visibilityTimeout) $hard }}",
                  "{{- if lt (float64 $.Values.celery.visibilityTimeout) $hard }}",
                  "the chart refuses a visibility timeout that does not exceed a model's time limit",
                  (MODEL_WORKERS, "-k", "visibility")),
    ChartMutation("sim-grace-period", "templates/model/_worker.tpl", "(add $resolved.simTimeLimit 60)",
                  "(add $resolved.simTimeLimit 0)",
                  "sim pods get their sim time limit plus a minute to finish on a rolling update",
                  (MODEL_WORKERS,)),
    ChartMutation("sim-pdb-one-at-a-time", "templates/model/poddisruptionbudget.yaml", "maxUnavailable: 1",
                  "maxUnavailable: 100%", "a drain takes one sim pod of a model at a time", (MODEL_WORKERS,)),
    ChartMutation("dask-pdb-one-at-a-time", "templates/dask/poddisruptionbudget.yaml", "maxUnavailable: 1",
                  "maxUnavailable: 100%", "a drain takes one Dask worker of a model at a time", (MODEL_WORKERS,)),
    ChartMutation("heartbeat-file-moved", "templates/model/_worker.tpl", "value: /tmp/cs-worker-heartbeat",
                  "value: /var/lib/cs-worker-heartbeat",
                  "probes watch Celery workers through the heartbeat file they write", (MODEL_WORKERS,)),
    ChartMutation("probe-reads-another-file", "templates/model/_worker.tpl",
                  '(list "python" "-m" "cs_runtime.health" "--max-age" "120")',
                  '(list "python" "-m" "cs_runtime.health" "--max-age" "120" "--file" "/tmp/heartbeat")',
                  "probes read the heartbeat file the worker writes", (MODEL_WORKERS,)),
    ChartMutation("writable-root-filesystem", "values.yaml", "readOnlyRootFilesystem: true",
                  "readOnlyRootFilesystem: false", "pods have a read-only root filesystem", POD_SECURITY),
    ChartMutation("privilege-escalation", "values.yaml", "allowPrivilegeEscalation: false",
                  "allowPrivilegeEscalation: true", "no privilege escalation", POD_SECURITY),
    ChartMutation("capabilities-kept", "values.yaml", "drop: [ALL]", "drop: [NET_RAW]",
                  "all capabilities dropped", POD_SECURITY),
    ChartMutation("root-user", "values.yaml", "  runAsUser: 10001\n", "  runAsUser: 0\n",
                  "pods run as uid 10001, not root", POD_SECURITY),
    ChartMutation("service-account-token", "templates/_helpers.tpl",
                  'serviceAccountName: {{ include "cs-workers.serviceAccountName" (list $root .component) }}\n'
                  "automountServiceAccountToken: false",
                  'serviceAccountName: {{ include "cs-workers.serviceAccountName" (list $root .component) }}\n'
                  "automountServiceAccountToken: true",
                  "no API token is mounted in any pod", POD_SECURITY),
    ChartMutation("redis-open-to-dask", "templates/redis/networkpolicy.yaml",
                  '(list "gateway" "model-io" "model-sim")', '(list "gateway" "model-io" "model-sim" "dask-worker")',
                  "Redis accepts only the gateway and the model workers", NETWORK),
    ChartMutation("dask-cluster-shared", "templates/dask/networkpolicy.yaml",
                  '(list "model-sim" "dask-scheduler" "dask-worker") "slug" $slug',
                  '(list "model-sim" "dask-scheduler" "dask-worker")',
                  "a model's Dask cluster accepts only that model's pods", NETWORK),
    ChartMutation("dns-blocked", "templates/_helpers.tpl", "- {port: {{ . }}, protocol: UDP}",
                  "- {port: {{ add . 1 }}, protocol: UDP}", "every pod can resolve DNS", NETWORK),
    ChartMutation("redis-not-append-only", "templates/redis/configmap.yaml", 'appendonly {{ ternary "yes" "no"',
                  'appendonly {{ ternary "no" "no"',
                  "Redis keeps append-only data (no lost work)", ("tests/chart/test_redis.py",)),
    ChartMutation("sim-prefetch", "templates/model/_worker.tpl", '- --prefetch-multiplier\n            - "1"',
                  '- --prefetch-multiplier\n            - "4"',
                  "a worker reserves one task at a time (no sim waits behind a running one)", (MODEL_WORKERS,)),
    ChartMutation("gateway-unwatched", "templates/gateway/deployment.yaml", "livenessProbe:", "startupProbe:",
                  "probes watch every component", ("tests/chart/test_probes.py",)),
    ChartMutation("generated-secret-regenerated", "templates/_helpers.tpl",
                  "{{- if and $existing $existing.data (index $existing.data .key) -}}",
                  "{{- if false -}}",
                  "the generated Redis password and gateway token are kept across upgrades",
                  ("tests/cluster/test_install_upgrade.py", "-k", "secrets_are_kept"), needs_cluster=True),
)


# -- the copy ------------------------------------------------------------------------------------
def repository_files(source: Path) -> list[str]:
    """Tracked and untracked-but-not-ignored files: what a fresh clone plus today's work holds."""
    listed = subprocess.run(["git", "-C", str(source), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.decode()
    return [name for name in listed.split("\0") if name and (source / name).is_file()]


@contextmanager
def repository_copy(source: Path = REPO) -> Iterator[Path]:
    """A throw-away copy of the repository (with a .git of its own for tests that read history)."""
    with tempfile.TemporaryDirectory(prefix="cs-mutation-") as directory:
        copy = Path(directory) / "repo"
        for name in repository_files(source):
            target = copy / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, target)
        yield copy


def copy_environment(copy: Path) -> dict[str, str]:
    """Our environment with the copy's packages first, so subprocesses run the mutant too."""
    paths = [str(copy / "render"), str(copy / "images" / "runtime")]
    existing = os.environ.get("PYTHONPATH")
    # A surrounding pytest session's render recorder must not see the mutants' renders.
    inherited = {name: value for name, value in os.environ.items() if name != "CS_RECORD_RENDERS_DIR"}
    return {**inherited, "PYTHONPATH": os.pathsep.join(paths + ([existing] if existing else [])),
            "PYTHONDONTWRITEBYTECODE": "1"}


def run_tests(copy: Path, arguments: Sequence[str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    command = [str(PYTHON), "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *arguments]
    return subprocess.run(command, cwd=copy, env=copy_environment(copy), capture_output=True, text=True,
                          timeout=timeout, check=False)


# -- the chart -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    name: str
    killed: bool
    seconds: float
    detail: str


class StaleMutation(Exception):
    """A mutation's `old` text is no longer in its file exactly once: update CHART_MUTATIONS."""


@contextmanager
def mutated(copy: Path, mutation: ChartMutation) -> Iterator[None]:
    path = copy / "charts" / "cs-workers" / mutation.file
    original = path.read_text()
    count = original.count(mutation.old)
    if count != 1:
        raise StaleMutation(f"{mutation.name}: {mutation.old!r} occurs {count} times in {mutation.file}, not once; "
                            "update CHART_MUTATIONS in benchmarks/mutation.py")
    path.write_text(original.replace(mutation.old, mutation.new))
    try:
        yield
    finally:
        path.write_text(original)


def selection(mutation: ChartMutation) -> list[str]:
    return list(mutation.tests) + ([] if mutation.needs_cluster else list(NOT_CLUSTER))


def try_chart_mutation(copy: Path, mutation: ChartMutation) -> Outcome:
    """Apply one mutation to the copy, run its tests, put the file back."""
    started = time.monotonic()
    with mutated(copy, mutation):
        result = run_tests(copy, selection(mutation))
    seconds = time.monotonic() - started
    last = (result.stdout.strip().splitlines() or [""])[-1]
    # Killed means a test failed on the mutant. pytest not running (exit 2-5) or a fixture erroring
    # (also exit 1, "N error") proves nothing either way.
    if result.returncode not in (0, 1) or re.search(r"\d+ errors?\b", last):
        raise RuntimeError(f"{mutation.name}: pytest exited {result.returncode} ({last}): cannot judge the mutant: "
                           f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return Outcome(mutation.name, result.returncode == 1 and " failed" in last, seconds, last)


def unmutated_baseline(copy: Path, mutations: Sequence[ChartMutation]) -> None:
    """The selected tests pass on the copy as it is; otherwise a 'kill' would mean nothing."""
    chart_only = [m for m in mutations if not m.needs_cluster]
    selections = [sorted({argument for m in chart_only for argument in m.tests if argument.startswith("tests/")})
                  + list(NOT_CLUSTER)] if chart_only else []
    selections += [selection(m) for m in mutations if m.needs_cluster]
    for arguments in selections:
        result = run_tests(copy, arguments)
        if result.returncode != 0:
            raise RuntimeError(f"the tests fail without any mutation ({' '.join(arguments)}): "
                               f"{result.stdout[-3000:]}{result.stderr[-1000:]}")


def run_chart(mutations: Sequence[ChartMutation], log: Callable[[str], None]) -> list[Outcome]:
    outcomes = []
    with repository_copy() as copy:
        log(f"mutation: baseline of {len(mutations)} chart mutations' tests")
        unmutated_baseline(copy, mutations)
        for mutation in mutations:
            outcome = try_chart_mutation(copy, mutation)
            log(f"mutation: {mutation.name}: {'killed' if outcome.killed else 'SURVIVED'} ({outcome.seconds:.0f} s)")
            outcomes.append(outcome)
    return outcomes


def chart_table(outcomes: Sequence[Outcome]) -> Table:
    by_name = {m.name: m for m in CHART_MUTATIONS}
    killed = sum(o.killed for o in outcomes)
    table = Table(f"Chart mutations: {killed} of {len(outcomes)} killed",
                  ["mutation", "file", "promise", "result", "seconds"])
    for outcome in outcomes:
        mutation = by_name[outcome.name]
        table.add(outcome.name, mutation.file, mutation.promise, "killed" if outcome.killed else "SURVIVED",
                  f"{outcome.seconds:.0f}")
    return table


# -- the Python, with cosmic-ray -----------------------------------------------------------------
@dataclass(frozen=True)
class PythonTarget:
    """A module (path under render/ or images/runtime/) and the tests that cover it."""

    module: str
    tests: tuple[str, ...]


# The modules whose rules the security and liveness promises rest on, each with the tests that
# cover it in-process (a few seconds a mutant). The rest of the Python is reached mostly through
# subprocesses (the CLI, workers, local mode), whose test files take 30 s to minutes a mutant: see
# the README's testing section for the measured cost of a whole run.
PYTHON_TARGETS: tuple[PythonTarget, ...] = (
    PythonTarget("render/cs_cluster/networkpolicy.py", ("tests/security/test_networkpolicy_evaluator.py",
                                                        "tests/security/test_network_policies.py")),
    PythonTarget("render/cs_cluster/podsecurity.py", ("tests/security/test_pod_security.py",)),
    PythonTarget("images/runtime/cs_runtime/names.py", ("tests/runtime/test_names.py",
                                                        "tests/runtime/test_routing.py",
                                                        "tests/runtime/test_redis_acl.py")),
    PythonTarget("images/runtime/cs_runtime/health.py", ("tests/runtime/test_health.py",)),
)


@dataclass(frozen=True)
class PythonScore:
    module: str
    mutants: int
    killed: int
    survived: list[str]
    skipped: dict[str, int]
    seconds: float


# Operators left out, each for a reason: `x == "literal"` against `x is "literal"` (and the
# reverse, and `is None` against `== None`) behave alike in CPython, so every such mutant survives
# without saying anything about the tests.
EXCLUDED_OPERATORS = (r"core/ReplaceComparisonOperator_(Eq_Is|Is_Eq|NotEq_IsNot|IsNot_NotEq)\b",)


def cosmic_ray_config(target: PythonTarget, timeout: float) -> str:
    tests = " ".join(target.tests)
    command = f"{PYTHON} -m pytest -x -q -p no:cacheprovider -m 'not cluster' {tests}"
    excluded = ", ".join(json.dumps(pattern) for pattern in EXCLUDED_OPERATORS)
    return (f'[cosmic-ray]\nmodule-path = "{target.module}"\ntimeout = {timeout}\nexcluded-modules = []\n'
            f"test-command = {json.dumps(command)}\n\n[cosmic-ray.distributor]\nname = \"local\"\n\n"
            f"[cosmic-ray.filters.operators-filter]\nexclude-operators = [{excluded}]\n")


def annotation_lines(source: str) -> set[tuple[int, int, int, int]]:
    """(start row, start col, end row, end col) of every annotation: with `from __future__ import
    annotations` they are never evaluated, so a mutant inside one is equivalent."""
    spans = set()
    for node in ast.walk(ast.parse(source)):
        annotations = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            annotations.append(node.returns)
            arguments = node.args
            for argument in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs, arguments.vararg,
                             arguments.kwarg]:
                annotations.append(argument.annotation if argument else None)
        elif isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
        for annotation in annotations:
            if annotation is not None and annotation.end_lineno is not None and annotation.end_col_offset is not None:
                spans.add((annotation.lineno, annotation.col_offset, annotation.end_lineno, annotation.end_col_offset))
    return spans


def inside(position: tuple[int, int], span: tuple[int, int, int, int]) -> bool:
    return (span[0], span[1]) <= tuple(position) <= (span[2], span[3])


def skip_work(session: Path, module: Path, limit: int | None) -> dict[str, int]:
    """Mark as skipped the mutants inside annotations (equivalent) and, with `limit`, all but the
    first `limit` in file order; returns how many of each."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    future_annotations = "from __future__ import annotations" in module.read_text()
    spans = annotation_lines(module.read_text()) if future_annotations else set()
    skipped = {"in annotations": 0, "beyond --quick's limit": 0}
    with use_db(str(session), WorkDB.Mode.open) as db:
        pending = sorted(db.pending_work_items, key=lambda item: [m.start_pos for m in item.mutations])
        kept = 0
        for item in pending:
            if any(inside(m.start_pos, span) for m in item.mutations for span in spans):
                reason = "in annotations"
            elif limit is not None and kept >= limit:
                reason = "beyond --quick's limit"
            else:
                kept += 1
                continue
            skipped[reason] += 1
            db.set_result(item.job_id, WorkResult(output=f"skipped: {reason}", worker_outcome=WorkerOutcome.SKIPPED))
    return skipped


def run_python_target(copy: Path, target: PythonTarget, log: Callable[[str], None],
                      limit: int | None = None) -> PythonScore:
    """cosmic-ray init, its operators filter, our annotations filter, exec, on one module."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    started = time.monotonic()
    work = copy / ".mutation"
    work.mkdir(exist_ok=True)
    stem = target.module.replace("/", "_")
    config, session = work / f"{stem}.toml", work / f"{stem}.sqlite"
    config.write_text(cosmic_ray_config(target, timeout=300))
    env = copy_environment(copy)
    bin_dir = PYTHON.parent
    subprocess.run([str(bin_dir / "cosmic-ray"), "init", str(config), str(session)], cwd=copy, env=env, check=True,
                   capture_output=True)
    subprocess.run([str(bin_dir / "cr-filter-operators"), str(session), str(config)], cwd=copy, env=env, check=True,
                   capture_output=True)
    skipped = skip_work(session, copy / target.module, limit)
    with use_db(str(session), WorkDB.Mode.open) as db:
        operators_skipped = sum(1 for _, result in db.results if result.worker_outcome == WorkerOutcome.SKIPPED)
        skipped["identity operators"] = operators_skipped - sum(skipped.values())
        to_run = db.num_work_items - db.num_results
    log(f"mutation: {target.module}: {to_run} mutants to run; skipped {skipped}")
    subprocess.run([str(bin_dir / "cosmic-ray"), "exec", str(config), str(session)], cwd=copy, env=env, check=True,
                   capture_output=True)
    survived, killed, ran = [], 0, 0
    with use_db(str(session), WorkDB.Mode.open) as db:
        items = {item.job_id: item for item in db.work_items}
        for job_id, result in db.results:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            ran += 1
            if result.test_outcome == TestOutcome.SURVIVED:
                (spec, *_) = items[job_id].mutations
                survived.append(f"{spec.start_pos[0]}:{spec.operator_name.removeprefix('core/')}")
            else:
                killed += 1  # killed, or incompetent (the mutant could not even run)
    return PythonScore(target.module, ran, killed, survived, skipped, time.monotonic() - started)


def run_python(targets: Sequence[PythonTarget], log: Callable[[str], None], limit: int | None = None
               ) -> list[PythonScore]:
    scores = []
    with repository_copy() as copy:
        for target in targets:
            score = run_python_target(copy, target, log, limit)
            log(f"mutation: {target.module}: {score.killed}/{score.mutants} killed in {score.seconds:.0f} s")
            scores.append(score)
    return scores


def python_table(scores: Sequence[PythonScore]) -> Table:
    mutants, killed = sum(s.mutants for s in scores), sum(s.killed for s in scores)
    percent = f"{100 * killed / mutants:.0f}%" if mutants else "-"
    table = Table(f"Python mutations (cosmic-ray): {killed} of {mutants} killed ({percent})",
                  ["module", "mutants run", "killed", "score", "skipped", "survivors (line:operator)", "seconds"])
    for score in scores:
        share = f"{100 * score.killed / score.mutants:.0f}%" if score.mutants else "-"
        skipped = ", ".join(f"{count} {why}" for why, count in score.skipped.items() if count) or "-"
        table.add(score.module, str(score.mutants), str(score.killed), share, skipped,
                  "; ".join(score.survived[:8]) + (" ..." if len(score.survived) > 8 else ""), f"{score.seconds:.0f}")
    return table


# -- as a benchmark ------------------------------------------------------------------------------
def run(settings: RunSettings, log: Callable[[str], None]) -> list[Table]:
    """--quick: two chart mutations and ten mutants of one module (the tooling works);
    the full run: every chart mutation that needs no cluster, and every PYTHON_TARGET."""
    chart = [m for m in CHART_MUTATIONS if not m.needs_cluster]
    if settings.quick:
        return [chart_table(run_chart(chart[:2], log)),
                python_table(run_python(PYTHON_TARGETS[:1], log, limit=10))]
    return [chart_table(run_chart(chart, log)), python_table(run_python(PYTHON_TARGETS, log))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parts = parser.add_subparsers(dest="part", required=True)
    chart = parts.add_parser("chart", help="the chart mutations")
    chart.add_argument("--with-cluster", action="store_true", help="also those whose tests need the control plane")
    python = parts.add_parser("python", help="cosmic-ray over the Python modules")
    python.add_argument("modules", nargs="*", help="paths as in PYTHON_TARGETS (default: all)")
    arguments = parser.parse_args(argv)

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    if arguments.part == "chart":
        chosen = [m for m in CHART_MUTATIONS if arguments.with_cluster or not m.needs_cluster]
        print(chart_table(run_chart(chosen, log)).markdown())
    else:
        known = {t.module: t for t in PYTHON_TARGETS}
        unknown = [m for m in arguments.modules if m not in known]
        if unknown:
            print(f"mutation: unknown module(s) {', '.join(unknown)}; known: {', '.join(known)}", file=sys.stderr)
            return 2
        targets = [known[m] for m in arguments.modules] or list(PYTHON_TARGETS)
        print(python_table(run_python(targets, log)).markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
