"""Every cs-cluster subcommand, driven with hostile arguments and paths: one line on stderr, a
non-zero exit status (2 for the user's mistakes), never a traceback, and nothing that is not a
regular file replaced."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import cs_cluster, write_config

COMMON = ["--tag", "t1", "--project", "p"]


@pytest.fixture
def place(tmp_path: Path) -> Iterator[Path]:
    """A directory of hostile things to point options at."""
    write_config(tmp_path, [{"owner": "a", "title": "b", "secrets": {"KEY": "v"}}], "c.yaml")
    (tmp_path / "a-directory").mkdir()
    os.mkfifo(tmp_path / "a-fifo")
    (tmp_path / "a-link-to-a-directory").symlink_to(tmp_path / "a-directory")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "a-socket"))
    if os.geteuid() == 0:
        # A private copy of /dev/full (as root, -o /dev/full once replaced the machine's own node).
        os.mknod(tmp_path / "a-device", stat.S_IFCHR | 0o666, os.makedev(1, 7))
    yield tmp_path
    listener.close()


# (id, arguments; {d} is the place; expected exit status, words the one line holds)
CASES: list[tuple[str, list[str], int, str]] = [
    ("values -o directory", ["values", "--config", "{d}/c.yaml", *COMMON, "-o", "{d}/a-directory"], 2,
     "is a directory, not a regular file"),
    ("values -o link to directory", ["values", "--config", "{d}/c.yaml", *COMMON, "-o", "{d}/a-link-to-a-directory"],
     2, "is a directory, not a regular file"),
    ("values -o fifo", ["values", "--config", "{d}/c.yaml", *COMMON, "-o", "{d}/a-fifo"], 2, "is a FIFO"),
    ("values -o socket", ["values", "--config", "{d}/c.yaml", *COMMON, "-o", "{d}/a-socket"], 2, "is a socket"),
    ("values -o device", ["values", "--config", "{d}/c.yaml", *COMMON, "-o", "{d}/a-device"], 2,
     "is a character device"),
    ("values -o under a file", ["values", "--config", "{d}/c.yaml", *COMMON, "-o", "{d}/c.yaml/v.yaml"], 1,
     "cannot write"),
    ("values --secrets-output directory", ["values", "--config", "{d}/c.yaml", *COMMON, "--secrets-output",
                                           "{d}/a-directory"], 2, "is a directory"),
    ("values --config directory", ["values", "--config", "{d}/a-directory", *COMMON], 2, "cannot read"),
    ("values --config fifo-less missing", ["values", "--config", "{d}/nope.yaml", *COMMON], 2, "file not found"),
    ("values --previous directory", ["values", "--config", "{d}/c.yaml", *COMMON, "--previous", "{d}/a-directory",
                                     "--secrets-output", "{d}/s.yaml"], 2, "cannot read"),
    ("values --chart not a chart", ["values", "--config", "{d}/c.yaml", *COMMON, "--chart", "{d}/a-directory"], 2,
     "is not a chart directory"),
    ("values --chart a file", ["values", "--config", "{d}/c.yaml", *COMMON, "--chart", "{d}/c.yaml"], 2,
     "is not a packaged chart"),
    ("template --chart-version, no oci", ["template", "--config", "{d}/c.yaml", *COMMON, "--chart-version", "1.0.0"],
     2, "apply to an oci:// --chart only"),
    ("template --chart oci, no registry", ["template", "--config", "{d}/c.yaml", *COMMON, "--chart",
                                           "oci://127.0.0.1:1/charts/cs-workers", "--plain-http"], 1,
     "helm pull failed"),
    ("values --tag empty", ["values", "--config", "{d}/c.yaml", "--tag", "", "--project", "p"], 2,
     "not a valid image tag"),
    ("template old kubernetes", ["template", "--config", "{d}/c.yaml", *COMMON, "--kubernetes-version", "1.20"], 2,
     "no Kubernetes schemas for version '1.20'"),
    ("template kubernetes nonsense", ["template", "--config", "{d}/c.yaml", *COMMON, "--kubernetes-version", "x"], 2,
     "no Kubernetes schemas"),
    ("template bad release", ["template", "--config", "{d}/c.yaml", *COMMON, "--release", "Bad_Name"], 2,
     "not a valid Helm release name"),
    ("template bad namespace", ["template", "--config", "{d}/c.yaml", *COMMON, "--namespace", "a b"], 2,
     "not a valid namespace"),
    ("apply --values-file directory", ["apply", "--config", "{d}/c.yaml", *COMMON, "--values-file",
                                       "{d}/a-directory"], 2, "Is a directory"),
    ("apply bad timeout", ["apply", "--config", "{d}/c.yaml", *COMMON, "--timeout", "5", "--dry-run"], 2,
     "not a duration"),
    ("apply --helm-arg --dry-run", ["apply", "--config", "{d}/c.yaml", *COMMON, "--helm-arg=--dry-run=server"], 2,
     "`cs-cluster plan` shows what would change"),
    ("apply --helm-arg -n", ["apply", "--config", "{d}/c.yaml", *COMMON, "--helm-arg=-nother"], 2,
     "use --namespace"),
    ("apply --helm-arg --reuse-values", ["apply", "--config", "{d}/c.yaml", *COMMON, "--helm-arg=--reuse-values"],
     2, "values file does not hold"),
    # plan exits 2 when something would change: its bad input is 3 (docs/plan.md).
    ("plan bad timeout", ["plan", "--config", "{d}/c.yaml", *COMMON, "--timeout", "5"], 3, "not a duration"),
    ("plan unknown option", ["plan", "--config", "{d}/c.yaml", *COMMON, "--bogus"], 3, "unrecognized arguments"),
    ("plan --output yaml", ["plan", "--config", "{d}/c.yaml", *COMMON, "--output", "yaml"], 3, "invalid choice"),
    ("plan --helm-arg --atomic", ["plan", "--config", "{d}/c.yaml", *COMMON, "--helm-arg=--atomic"], 3,
     "on by default"),
    ("plan --offline, no previous", ["plan", "--config", "{d}/c.yaml", *COMMON, "--offline",
                                     "--release", "r"], 3,
     "give --previous FILE"),
    ("plan --config directory", ["plan", "--config", "{d}/a-directory", *COMMON], 3, "cannot read"),
    ("rollback revision 0", ["rollback", "0"], 2, "not a revision number"),
    ("rollback no values file", ["rollback"], 2, "--no-values-file"),
    ("rollback bad release", ["rollback", "--release", "Bad_Name", "--no-values-file"], 2,
     "not a valid Helm release name"),
    ("build --chart missing", ["build", "--config", "{d}/c.yaml", *COMMON, "--dry-run", "--chart", "{d}/none"], 2,
     "is not a chart directory"),
    ("build bad release", ["build", "--config", "{d}/c.yaml", *COMMON, "--dry-run", "--release", "x_y"], 2,
     "not a valid Helm release name"),
    ("schema --chart missing", ["schema", "--chart", "{d}/none"], 2, "is not a chart directory"),
    ("schema --write --chart directory", ["schema", "--write", "--chart", "{d}/a-directory"], 2,
     "is not a chart directory"),
    ("local up port too high", ["local", "up", "--config", "{d}/c.yaml", "--port", "99999"], 2, "not a port number"),
    ("local up --chart", ["local", "up", "--config", "{d}/c.yaml", "--chart", "{d}/a-fifo"], 2,
     "is not a chart directory"),
    ("local webserver negative port", ["local", "webserver", "--port", "-1"], 2, "not a port number"),
    ("local webserver port word", ["local", "webserver", "--port", "http"], 2, "not a port number"),
    ("no subcommand", ["local"], 2, "required"),
]


@pytest.mark.parametrize(("arguments", "status", "words"), [case[1:] for case in CASES], ids=[c[0] for c in CASES])
def test_hostile_arguments_get_one_line_and_replace_nothing(
    place: Path, arguments: list[str], status: int, words: str
) -> None:
    if "{d}/a-device" in arguments and not (place / "a-device").exists():
        pytest.skip("making a device node needs root")
    before = {path.name: path.lstat() for path in place.iterdir()}
    result = cs_cluster(*[argument.replace("{d}", str(place)) for argument in arguments], cwd=place, timeout=60)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == status, result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("usage:")
             and not line.startswith(" ")]
    assert len(lines) == 1 and words in lines[0], result.stderr
    for path in place.iterdir():
        was = before.get(path.name)
        assert was is not None, f"{path.name} was written"
        now = path.lstat()
        assert (stat.S_IFMT(now.st_mode), now.st_ino) == (stat.S_IFMT(was.st_mode), was.st_ino), path.name
    assert not [p for p in place.rglob(".*") if p.is_file()], "a temporary file was left behind"


def test_a_symlink_is_written_through_and_stays_a_symlink(place: Path) -> None:
    link = place / "values.yaml"
    link.symlink_to("kept/real.yaml")
    result = cs_cluster("values", "--config", place / "c.yaml", *COMMON, "-o", link)
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and "image" in (place / "kept" / "real.yaml").read_text()
    assert (place / "kept" / "real.secrets.yaml").exists() or (place / "values.secrets.yaml").exists()


@pytest.mark.parametrize("command", [["template"], ["template", "--no-validate"], ["values", "--secrets-output",
                                                                                       "{d}/s.yaml"]])
def test_a_closed_standard_output_ends_quietly(place: Path, command: list[str]) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    arguments = [command[0], "--config", str(place / "c.yaml"), *COMMON,
                 *[a.replace("{d}", str(place)) for a in command[1:]]]
    result = subprocess.run([sys.executable, "-m", "cs_cluster", *arguments], stdout=write_end,
                            stderr=subprocess.PIPE, text=True, timeout=120, check=False)
    os.close(write_end)
    assert result.stderr == ""
    assert result.returncode == 141


def test_output_into_missing_directories_creates_them(place: Path) -> None:
    output = place / "new" / "deeper" / "v.yaml"
    result = cs_cluster("values", "--config", place / "c.yaml", *COMMON, "-o", output)
    assert result.returncode == 0, result.stderr
    assert output.is_file() and stat.S_IMODE((place / "new" / "deeper" / "v.secrets.yaml").stat().st_mode) == 0o600
