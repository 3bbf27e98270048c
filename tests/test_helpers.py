"""The test tools' own rules: a missing tool skips on a developer's machine and fails in CI."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import REPO, skip_or_fail


@pytest.mark.parametrize(
    ("ci", "skip_variable_set", "outcome"),
    [
        ("true", False, pytest.fail.Exception),
        ("true", True, pytest.fail.Exception),
        ("", False, pytest.fail.Exception),
        ("", True, pytest.skip.Exception),
    ],
    ids=["ci", "ci-asked-to-skip", "default", "developer-asked-to-skip"],
)
def test_control_plane_rule_fails_unless_a_developer_asks(monkeypatch: pytest.MonkeyPatch, ci: str,
                                                          skip_variable_set: bool, outcome: type) -> None:
    monkeypatch.setenv("CI", ci)
    monkeypatch.setenv("CS_SKIP_CLUSTER_TESTS", "1" if skip_variable_set else "")
    with pytest.raises(outcome) as raised:
        skip_or_fail("no control plane", skip_variable="CS_SKIP_CLUSTER_TESTS")
    assert str(raised.value).startswith("no control plane")
    if outcome is pytest.fail.Exception and not ci:
        assert "CS_SKIP_CLUSTER_TESTS=1" in str(raised.value)


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)],
                         ids=["ci", "developer"])
def test_missing_tool_skips_here_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch, ci: str, outcome: type) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="strace is not installed"):
        skip_or_fail("strace is not installed")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("environment", "outcome"),
    [({"CI": "true"}, "errors"), ({"CI": ""}, "errors"), ({"CI": "", "CS_SKIP_CLUSTER_TESTS": "1"}, "skipped")],
    ids=["ci", "default", "developer-asked-to-skip"],
)
def test_a_control_plane_that_does_not_start_fails_the_cluster_tests(environment: dict[str, str],
                                                                     outcome: str) -> None:
    """End to end, on a copy of the repository whose `ci/cluster up` fails as a broken build
    would: pytest exits non-zero with the control plane's log, unless a developer asked to skip."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import mutation

    with mutation.repository_copy() as copy:
        (copy / "ci" / "cluster").write_text("#!/usr/bin/env bash\necho 'cluster: etcd exited (log: etcd.log)' >&2\n"
                                             "exit 1\n")
        env = {**mutation.copy_environment(copy), **environment}
        notes = "tests/chart/test_schema_and_lint.py::test_notes_say_what_was_deployed"
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rEs",
                                 "tests/cluster", notes], cwd=copy, env=env, capture_output=True, text=True,
                                timeout=300, check=False)
    summary = result.stdout.strip().splitlines()[-1]
    if outcome == "skipped":
        assert result.returncode == 0 and "1 passed" in summary and "skipped" in summary, result.stdout[-2000:]
        assert "error" not in summary
    else:
        # Every cluster test and the Helm 3 NOTES check error; only the Helm 4 NOTES check runs.
        assert result.returncode == 1 and "error" in summary and "1 passed" in summary, result.stdout[-2000:]
        assert "ERROR tests/chart/test_schema_and_lint.py::test_notes_say_what_was_deployed[helm3]" in result.stdout
        assert "the local control plane could not start (ci/cluster up exited 1)" in result.stdout
    assert "cluster: etcd exited (log: etcd.log)" in result.stdout
