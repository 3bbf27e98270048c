"""`cs-cluster apply -f FILE`: the user's own values files reach helm after the generated ones,
so they override them; a file that is not there is one line and exit 2, before helm runs."""

from __future__ import annotations

import shlex
from pathlib import Path

from helpers import EXAMPLE_CONFIG, cs_cluster


def apply_dry_run(tmp_path: Path, *options: str | Path) -> tuple[int, str, str]:
    result = cs_cluster("apply", "--config", EXAMPLE_CONFIG, "--tag", "v1", "--project", "cs-test", "--values-file",
                        tmp_path / "values.yaml", "--dry-run", *options)
    return result.returncode, result.stdout, result.stderr


def test_values_files_follow_the_generated_one_in_order(tmp_path: Path) -> None:
    first, second = tmp_path / "secrets.yaml", tmp_path / "placement.yaml"
    first.write_text("workerSecret: {values: {COMP_URL: http://10.0.0.1:8000}}\n")
    second.write_text("gateway: {replicas: 2}\n")
    code, out, err = apply_dry_run(tmp_path, "-f", first, "--values", second)
    assert code == 0, err
    command = shlex.split(out.strip())
    files = [command[i + 1] for i, word in enumerate(command) if word == "-f"]
    assert files == [str(tmp_path / "values.yaml"), str(first), str(second)]


def test_a_missing_values_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    code, out, err = apply_dry_run(tmp_path, "-f", tmp_path / "nope.yaml")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        f"cs-cluster: error: --values {tmp_path / 'nope.yaml'}: no such file (a values file for helm, e.g. your "
        "secrets or placement)"]
