"""The chart's mutation list (benchmarks/mutation.py): each one-line break of a promise the
README makes is caught by a test. Each mutation is applied to a copy of the repository and its
tests run there; a mutation that survives fails here with the promise no test holds."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import mutation  # benchmarks/ is a directory of scripts, not a package

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def copy() -> Iterator[Path]:
    with mutation.repository_copy() as repository:
        yield repository


@pytest.fixture(scope="module")
def baseline(copy: Path) -> Path:
    mutation.unmutated_baseline(copy, [m for m in mutation.CHART_MUTATIONS if not m.needs_cluster])
    return copy


def test_every_mutation_names_its_promise_and_tests() -> None:
    names = [m.name for m in mutation.CHART_MUTATIONS]
    assert len(names) == len(set(names))
    for m in mutation.CHART_MUTATIONS:
        assert m.promise and m.tests and m.old != m.new, m.name
        assert (REPO / "charts" / "cs-workers" / m.file).read_text().count(m.old) == 1, \
            f"{m.name}: its text is no longer in {m.file} exactly once; update benchmarks/mutation.py"


@pytest.mark.parametrize("chart_mutation", [
    pytest.param(m, id=m.name, marks=[pytest.mark.cluster] if m.needs_cluster else [])
    for m in mutation.CHART_MUTATIONS])
def test_mutation_is_killed(chart_mutation: mutation.ChartMutation, baseline: Path,
                            request: pytest.FixtureRequest) -> None:
    if chart_mutation.needs_cluster:
        request.getfixturevalue("kubeconfig")  # the control plane is up (or this fails, as cluster tests do)
    outcome = mutation.try_chart_mutation(baseline, chart_mutation)
    assert outcome.killed, (f"{chart_mutation.name} survived: no test in {' '.join(chart_mutation.tests)} fails when "
                            f"'{chart_mutation.promise}' breaks")
