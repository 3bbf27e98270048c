"""The test tools' own rules: a missing tool skips on a developer's machine and fails in CI."""

from __future__ import annotations

import pytest
from helpers import skip_or_fail


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
