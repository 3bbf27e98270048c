"""Benchmark 1: worker_config -> manifests with `cs-cluster template`, against bare `helm template`.

Both sides are real processes, as users run them: `python -m cs_cluster template --config ...`
(start-up, reading the config, building values, helm, printing) and `helm template` on the very
values file cs-cluster hands helm. Bare helm is the floor: cs-cluster cannot be faster than the
helm it runs. Pairs run back to back and alternate, so each ratio compares like with like.

Validation (every object against the strict schemas of two Kubernetes versions, the default of
`cs-cluster template`) runs as a third command in the same interleaved repetitions, at every
size: `validating_table` sets the default command against bare helm (issue 15's target) and
takes validation's cost per object from the whole commands, validating minus --no-validate,
pair by pair. (Before issue 15 it cost minutes at 1000 models and was estimated in-process.)
"""

from __future__ import annotations

import contextlib
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from harness import (
    CHART,
    Command,
    CommandTimes,
    RunSettings,
    Table,
    fmt_ratio,
    fmt_seconds,
    fmt_spread,
    interleaved_commands,
    linear_fit,
    load_text,
    median,
    pair_ratios,
    run_checked,
    seconds_taken,
    tool_version,
    verdict,
    write_worker_config,
)
from validation_cost import estimate_validation_seconds, validation_table

from cs_cluster import Cluster, helm
from cs_cluster.cli import main as cs_cluster_main
from cs_cluster.render import parse_manifests

TARGET_RATIO = 1.3
LINEAR_TOLERANCE = 0.25
TAG, PROJECT = "v1", "bench"


@dataclass(frozen=True)
class SizePlan:
    """How many models, how many measured pairs, and how many of them also run validating."""

    models: int
    repetitions: int
    validating_runs: int


FULL_PLAN = (SizePlan(10, 7, 7), SizePlan(100, 5, 5), SizePlan(1000, 5, 5))
QUICK_PLAN = (SizePlan(2, 2, 1), SizePlan(4, 2, 2))


@dataclass
class SizeResult:
    plan: SizePlan
    objects: int
    times: CommandTimes  # "helm", "cs-cluster" (--no-validate) and, for some sizes, "validating"
    validation_estimate: float = 0.0
    validation_sampled: bool = False

    @property
    def helm_times(self) -> list[float]:
        return self.times.wall["helm"]

    @property
    def cs_cluster_times(self) -> list[float]:
        return self.times.wall["cs-cluster"]

    @property
    def validating_times(self) -> list[float]:
        return self.times.wall.get("validating", [])

    @property
    def ratios(self) -> list[float]:
        return pair_ratios(self.cs_cluster_times, self.helm_times)

    @property
    def cpu_ratios(self) -> list[float]:
        return pair_ratios(self.times.cpu["cs-cluster"], self.times.cpu["helm"])


# -- the two commands ----------------------------------------------------------------------------
def cs_cluster_command(config: Path, validate: bool) -> list[str]:
    command = [sys.executable, "-m", "cs_cluster", "template", "--config", str(config),
               "--tag", TAG, "--project", PROJECT]
    return command if validate else [*command, "--no-validate"]


def bare_helm_command(helm_binary: str, values_file: Path, *extra: str) -> list[str]:
    # The same release, namespace and values cs-cluster's `template` passes (no --kube-version:
    # cs-cluster template does not pass one to helm either).
    return [helm_binary, "template", "cs-workers", str(CHART), "--namespace", "cs-workers",
            "-f", str(values_file), *extra]


def environment_with_helm(helm_binary: str) -> dict[str, str]:
    """Our environment with cs-cluster pinned to `helm_binary` (CS_HELM), and no render recording."""
    environment = {k: v for k, v in os.environ.items() if k != "CS_RECORD_RENDERS_DIR"}
    environment["CS_HELM"] = helm_binary
    return environment


def prepare_inputs(models: int, directory: Path) -> tuple[Path, Path, Cluster]:
    """A generated worker_config and the values file cs-cluster renders from it."""
    config = write_worker_config(directory / f"worker_config_{models}.yaml", models)
    cluster = Cluster(config, tag=TAG, project=PROJECT, previous=None,
                      values_file=directory / f"values_{models}.yaml")
    values_file = cluster.write_values()
    return config, values_file, cluster


# -- measuring one size --------------------------------------------------------------------------
def measure_size(plan: SizePlan, helm_binary: str, directory: Path, log: Callable[[str], None]) -> SizeResult:
    config, values_file, _ = prepare_inputs(plan.models, directory)
    environment = environment_with_helm(helm_binary)
    pair = {"helm": Command(bare_helm_command(helm_binary, values_file)),
            "cs-cluster": Command(cs_cluster_command(config, validate=False), environment)}
    triplet = {**pair, "validating": Command(cs_cluster_command(config, validate=True), environment)}
    log(f"render: {plan.models} models, {plan.repetitions} pairs ({plan.validating_runs} with a validating run)")
    # First the repetitions that also run the validating command (as a third, interleaved), then pairs.
    times = interleaved_commands(triplet, plan.validating_runs)
    times.extend(interleaved_commands(pair, plan.repetitions - plan.validating_runs))
    objects = parse_manifests(helm.template(values_files=[values_file], release="cs-workers", helm=helm_binary))
    estimate, sampled = estimate_validation_seconds(objects)
    return SizeResult(plan, len(objects), times, estimate, sampled)


# -- tables --------------------------------------------------------------------------------------
def target_cell(ratio: float) -> str:
    if ratio <= TARGET_RATIO:
        return verdict(True, f"{fmt_ratio(ratio)}")
    return verdict(False, f"{fmt_ratio(ratio)}, {(ratio - TARGET_RATIO) * 100:.0f} points over")


def validating_cell(result: SizeResult) -> str:
    if result.validating_times:
        return fmt_spread(result.validating_times)
    return f"~{fmt_seconds(median(result.cs_cluster_times) + result.validation_estimate)} (est.)"


def ratio_cell(ratios: list[float]) -> str:
    return f"{fmt_ratio(median(ratios))} ({fmt_ratio(min(ratios))} to {fmt_ratio(max(ratios))})"


def main_table(results: list[SizeResult], helm_name: str) -> Table:
    largest = results[-1]
    table = Table(
        f"Render scaling: cs-cluster template vs bare helm template ({helm_name})",
        ["models", "objects", "bare helm template (floor)", "cs-cluster template --no-validate",
         "ratio, wall clock (paired)", "ratio, CPU time (paired)", f"target ≤{TARGET_RATIO}x at {largest.plan.models}",
         "validation, 1.33 + 1.37 schemas", "cs-cluster template (validating, default)"],
    )
    for result in results:
        target = target_cell(median(result.ratios)) if result is largest else "-"
        validation = fmt_seconds(result.validation_estimate) + (" (est. from a sample of each kind)"
                                                                if result.validation_sampled else "")
        table.add(result.plan.models, result.objects, fmt_spread(result.helm_times),
                  fmt_spread(result.cs_cluster_times), ratio_cell(result.ratios), ratio_cell(result.cpu_ratios),
                  target, validation, validating_cell(result))
    table.note("times: wall clock, median (min to max, n) of n runs; ratios: median and range of the per-pair "
               "ratios (each pair ran back to back, order alternating). CPU time is user + system of the "
               "command and its children (helm): it depends less on what else runs, so it cross-checks the "
               "wall-clock ratio on this shared machine.")
    table.note("validation: in-process `validate_objects` on the rendered objects (what `template` does "
               "after helm); the validating column is the real command where measured, else no-validate + "
               "that estimate.")
    table.note(f"load average after: {load_text()}")
    return table


def marginal_costs(sizes: Sequence[int], times: Sequence[float]) -> list[float | None]:
    """Seconds per extra model between each size and the one before it."""
    costs: list[float | None] = [None]
    for index in range(1, len(sizes)):
        costs.append((times[index] - times[index - 1]) / (sizes[index] - sizes[index - 1]))
    return costs


def linearity_verdict(sizes: Sequence[int], medians: Sequence[float]) -> str:
    """Linear growth: the cost of one more model does not rise with the size (noise allowed)."""
    costs = [cost for cost in marginal_costs(sizes, medians) if cost is not None]
    if len(costs) < 2:
        return "target, linear growth: needs three sizes"
    change = costs[-1] / costs[-2] - 1
    return (f"target, linear growth: {verdict(change <= LINEAR_TOLERANCE)}: the marginal cost per model of "
            f"cs-cluster --no-validate changed {change:+.0%} between the last two intervals (a superlinear "
            f"cost would keep rising; up to +{LINEAR_TOLERANCE:.0%} is taken as noise)")


def linearity_table(results: list[SizeResult]) -> Table:
    sizes = [r.plan.models for r in results]
    helm_medians = [median(r.helm_times) for r in results]
    cs_medians = [median(r.cs_cluster_times) for r in results]
    validation = [r.validation_estimate for r in results]
    table = Table("Render scaling: cost per model (linearity)",
                  ["models", "helm per model", "cs-cluster --no-validate per model",
                   "cs-cluster marginal per extra model", "validation per model"])
    for size, helm_time, cs_time, marginal, check in zip(
            sizes, helm_medians, cs_medians, marginal_costs(sizes, cs_medians), validation, strict=True):
        table.add(size, fmt_seconds(helm_time / size), fmt_seconds(cs_time / size),
                  "-" if marginal is None else fmt_seconds(marginal), fmt_seconds(check / size))
    table.note(linearity_verdict(sizes, cs_medians))
    for name, medians in (("bare helm", helm_medians), ("cs-cluster --no-validate", cs_medians),
                          ("validation", validation)):
        slope, intercept = linear_fit(sizes, medians)
        table.note(f"{name}: least-squares fit over the sizes: {fmt_seconds(slope)} per model "
                   f"+ {fmt_seconds(intercept)} fixed")
    return table


def validating_table(results: list[SizeResult], versions: int = 2) -> Table:
    """The default, validating `cs-cluster template` against bare helm, paired; validation's cost
    per object and Kubernetes version from the whole commands (validating minus --no-validate)."""
    largest = results[-1]
    table = Table("Render: the default, validating cs-cluster template vs bare helm template (issue 15)",
                  ["models", "objects", "bare helm template", "cs-cluster template (validating)",
                   "ratio, wall clock (paired)", "ratio, CPU time (paired)",
                   "validation per object and version (validating minus --no-validate, paired)",
                   f"target ≤{TARGET_RATIO}x at {largest.plan.models}"])
    for result in results:
        runs = result.plan.validating_runs
        if not runs:
            continue
        helm_times, validating = result.helm_times[:runs], result.validating_times
        ratios = pair_ratios(validating, helm_times)
        cpu = pair_ratios(result.times.cpu["validating"], result.times.cpu["helm"][:runs])
        extra = [(v - c) / (result.objects * versions) for v, c in zip(validating, result.cs_cluster_times[:runs],
                                                                       strict=True)]
        target = target_cell(median(ratios)) if result is largest else "-"
        table.add(result.plan.models, result.objects, fmt_spread(helm_times), fmt_spread(validating),
                  ratio_cell(ratios), ratio_cell(cpu),
                  f"{fmt_seconds(median(extra))} ({fmt_seconds(min(extra))} to {fmt_seconds(max(extra))})", target)
    table.note("the three commands (bare helm, --no-validate, validating) ran back to back in each repetition, "
               "order rotating; validating = parse (k8s-yaml-json) + jsonschema-rs against the 1.33 and 1.37 "
               "strict schemas + image references.")
    table.note(f"load average after: {load_text()}")
    return table


# -- helm 3 once, for comparison -----------------------------------------------------------------
def helm3_table(models: int, helm3: str, helm4_result: SizeResult, directory: Path) -> Table:
    config, values_file, _ = prepare_inputs(models, directory)
    times = interleaved_commands({
        "helm": Command(bare_helm_command(helm3, values_file)),
        "cs-cluster": Command(cs_cluster_command(config, False), environment_with_helm(helm3)),
    }, 1)
    helm_time, cs_time = times.wall["helm"][0], times.wall["cs-cluster"][0]
    table = Table(f"Render at {models} models: helm 3 once, next to helm 4",
                  ["helm", "bare helm template", "cs-cluster template --no-validate", "ratio, wall clock",
                   "ratio, CPU time"])
    table.add(tool_version([helm3, "version", "--short"]), fmt_seconds(helm_time), fmt_seconds(cs_time),
              fmt_ratio(cs_time / helm_time), fmt_ratio(times.cpu["cs-cluster"][0] / times.cpu["helm"][0]))
    table.add("helm 4 (medians above)", fmt_seconds(median(helm4_result.helm_times)),
              fmt_seconds(median(helm4_result.cs_cluster_times)), fmt_ratio(median(helm4_result.ratios)),
              fmt_ratio(median(helm4_result.cpu_ratios)))
    table.note("one run each: a single pair on a shared machine, so only a large difference would mean much.")
    return table


# -- where the time goes -------------------------------------------------------------------------
def startup_seconds() -> float:
    """A Python interpreter that imports the CLI and exits: paid by every cs-cluster command."""
    return median([seconds_taken(lambda: run_checked([sys.executable, "-c", "import cs_cluster.cli"]))
                   for _ in range(3)])


def yaml_parse_seconds(path: Path) -> tuple[float, float]:
    """Parsing the worker_config with PyYAML's pure-Python SafeLoader, and with libyaml's."""
    text = path.read_text()
    pure = seconds_taken(lambda: yaml.load(text, Loader=yaml.SafeLoader))
    if not getattr(yaml, "__with_libyaml__", False):
        return pure, float("nan")
    return pure, seconds_taken(lambda: yaml.load(text, Loader=yaml.CSafeLoader))


def yaml_dump_seconds(values: dict[str, Any]) -> tuple[float, float]:
    """Writing the values as `helm.values_file` does (safe_dump), and with libyaml's dumper."""
    pure = seconds_taken(lambda: yaml.safe_dump(values, sort_keys=False))
    if not getattr(yaml, "__with_libyaml__", False):
        return pure, float("nan")
    return pure, seconds_taken(lambda: yaml.dump(values, Dumper=yaml.CSafeDumper, sort_keys=False))


def python_phases(config: Path, directory: Path) -> list[tuple[str, float, str]]:
    """The Python side's phases, timed one by one through the package's public API, in-process."""
    started = time.perf_counter()
    cluster = Cluster(config, tag=TAG, project=PROJECT, previous=None, values_file=directory / "unused.yaml")
    read_config = time.perf_counter() - started
    build_values = seconds_taken(cluster.values)

    def write_values_file() -> None:
        with helm.values_file(cluster.values()):
            pass

    write_values = seconds_taken(write_values_file)
    parse_pure, parse_c = yaml_parse_seconds(config)
    dump_pure, dump_c = yaml_dump_seconds(cluster.values())
    return [
        ("Python start-up + imports", startup_seconds(), "paid once per command"),
        ("reading + checking the worker_config (`Cluster()`)", read_config,
         f"its YAML parse alone: {fmt_seconds(parse_pure)} with PyYAML's pure-Python SafeLoader, "
         f"{fmt_seconds(parse_c)} with libyaml's CSafeLoader"),
        ("building values", build_values, ""),
        ("writing the values file for helm (`helm.values_file`)", write_values,
         f"safe_dump: {fmt_seconds(dump_pure)}; libyaml's CSafeDumper: {fmt_seconds(dump_c)}"),
    ]


def phase_table(models: int, helm_binary: str, directory: Path, log: Callable[[str], None]) -> Table:
    """The Python phases, then helm with and without its values-schema check and the whole command,
    those three interleaved so that they ran under the same load."""
    config, values_file, _ = prepare_inputs(models, directory)
    phases = python_phases(config, directory)
    log(f"render: helm, helm --skip-schema-validation and cs-cluster at {models} models, interleaved")
    times = interleaved_commands({
        "helm": Command(bare_helm_command(helm_binary, values_file)),
        "helm --skip-schema-validation": Command(bare_helm_command(helm_binary, values_file,
                                                                  "--skip-schema-validation")),
        "cs-cluster": Command(cs_cluster_command(config, validate=False), environment_with_helm(helm_binary)),
    }, 2)
    table = Table(f"Render at {models} models: where cs-cluster template --no-validate spends its time",
                  ["part", "wall clock", "CPU time", "note"])
    for phase, seconds, note in phases:
        table.add(phase, fmt_seconds(seconds), "-", note)
    table.add("**Python side, sum of the above**", fmt_seconds(sum(seconds for _, seconds, _ in phases)), "-", "")
    for name, note in (("helm", "the floor, same values file"),
                       ("helm --skip-schema-validation", "helm without checking values.schema.json"),
                       ("cs-cluster", "the whole command, --no-validate")):
        table.add(f"`{name}` (median of 2)", fmt_seconds(median(times.wall[name])),
                  fmt_seconds(median(times.cpu[name])), note)
    table.note("Python phases ran once, in this process; the three commands ran interleaved, twice each.")
    return table


def profile_table(config: Path, top: int = 8) -> Table:
    """cProfile of the CLI in-process: the Python functions with the most time of their own."""
    profiler = cProfile.Profile()
    arguments = ["template", "--config", str(config), "--tag", TAG, "--project", PROJECT, "--no-validate"]
    with contextlib.redirect_stdout(io.StringIO()):
        profiler.runcall(cs_cluster_main, arguments)
    stats = pstats.Stats(profiler)
    rows = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:top]  # type: ignore[attr-defined]
    table = Table(f"cProfile of `cs-cluster template --no-validate` in-process ({config.name}), by own time",
                  ["function", "calls", "own time", "with callees"])
    for (filename, line, name), (_, calls, own, cumulative, _) in rows:
        where = f"{Path(filename).name}:{line} {name}" if line else name
        table.add(f"`{where}`", calls, fmt_seconds(own), fmt_seconds(cumulative))
    table.note("`poll` of select is the wait for the helm subprocess; cProfile slows pure-Python code ~1.5-2x.")
    return table


# -- the benchmark -------------------------------------------------------------------------------
def run(settings: RunSettings, log: Callable[[str], None]) -> list[Table]:
    helm4, helm3 = helm.find_helm(4), helm.find_helm(3)
    plans = QUICK_PLAN if settings.quick else FULL_PLAN
    with tempfile.TemporaryDirectory(prefix="cs-bench-render-") as temporary:
        directory = Path(temporary)
        results = [measure_size(plan, helm4, directory, log) for plan in plans]
        helm_name = tool_version([helm4, "version", "--short"])
        tables = [validating_table(results), main_table(results, f"helm {helm_name}"), linearity_table(results)]
        largest = results[-1]
        log(f"render: helm 3 once at {largest.plan.models} models")
        tables.append(helm3_table(largest.plan.models, helm3, largest, directory))
        # Profiled whatever the verdict: on a shared machine the ratio is noisy, and where the time
        # goes says more than one number does.
        log(f"render: where the time goes at {largest.plan.models} models")
        tables.append(phase_table(largest.plan.models, helm4, directory, log))
        # cProfile at the second size: the Python side costs the same per model, and profiling
        # the largest would add half a minute.
        tables.append(profile_table(directory / f"worker_config_{results[-2].plan.models}.yaml"))
        log("render: where validation's time goes")
        smallest_values = directory / f"values_{results[0].plan.models}.yaml"
        smallest = parse_manifests(helm.template(values_files=[smallest_values], release="cs-workers", helm=helm4))
        tables.append(validation_table(smallest, largest.plan.models, largest.validation_estimate))
    return tables
