"""Run the cs-workers benchmarks and print a Markdown table per benchmark.

    .venv/bin/python benchmarks/run.py                 # everything: about 30 min on 2 cores (mutation 8, upgrade 10)
    .venv/bin/python benchmarks/run.py --quick         # every benchmark tiny: a smoke run for CI
    .venv/bin/python benchmarks/run.py --only gateway end-to-end

Benchmarks measure; they never fail on a slow result. A non-zero exit status means a benchmark
could not run (a command failed), not that a target was missed. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

# This directory's modules (harness, render_scaling, ...) import each other by their plain names.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import blast_radius
import cold_start
import dask_scaling
import end_to_end
import gateway_peer
import gateway_submit
import mutation
import render_scaling
import upgrade_cost
from harness import RunSettings, Table, machine_table

Benchmark = Callable[[RunSettings, Callable[[str], None]], list[Table]]

# In the order they run: the render first (no processes of ours running), Dask scaling last
# (it waits for quiet cores, and the earlier benchmarks have stopped their processes by then).
BENCHMARKS: dict[str, Benchmark] = {
    "render": render_scaling.run,
    "blast-radius": blast_radius.run,
    # On the local control plane (ci/cluster): what an apply costs as the models grow.
    "upgrade": upgrade_cost.run,
    "gateway": gateway_submit.run,
    "gateway-peer": gateway_peer.run,
    "end-to-end": end_to_end.run,
    "dask-scaling": dask_scaling.run,
    # Last: it runs pytest on copies of the repository, mutant by mutant.
    "mutation": mutation.run,
    # Only when asked (--only cold-start): needs root, the real node and KEDA (built once, 10-17 min).
    "cold-start": cold_start.run,
}
# Not part of a run without --only.
OPT_IN = {"cold-start"}


def log(message: str) -> None:
    """Progress goes to stderr, so stdout is only the tables."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="run every benchmark tiny (seconds each)")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), metavar="NAME",
                        help="run only these benchmarks: " + ", ".join(BENCHMARKS))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    settings = RunSettings(quick=arguments.quick)
    chosen = arguments.only or [name for name in BENCHMARKS if name not in OPT_IN]
    print(machine_table().markdown(), flush=True)
    started = time.monotonic()
    for name in BENCHMARKS:
        if name not in chosen:
            continue
        log(f"{name}: starting")
        begun = time.monotonic()
        for table in BENCHMARKS[name](settings, log):
            print(table.markdown(), flush=True)
        log(f"{name}: done in {time.monotonic() - begun:.0f} s")
    log(f"all done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
