"""Finding and running helm: one place that turns helm's failures into our errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import ToolError, ValuesRefusedError


def cache_dir() -> Path:
    """Where ci/install-tools.sh keeps helm; read here so a plain `cs-cluster` finds it too."""
    base = os.environ.get("CS_WORKERS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cs-workers"
    )
    return Path(base)


def find_helm(major: int | None = None) -> str:
    """A helm binary: CS_HELM, else CS_HELM<major>, else helm on PATH, else the cached one."""
    candidates: list[str | None] = []
    if major is None:
        candidates += [os.environ.get("CS_HELM"), shutil.which("helm")]
        majors: Sequence[int] = (4, 3)
    else:
        majors = (major,)
    for number in majors:
        candidates += [os.environ.get(f"CS_HELM{number}"), shutil.which(f"helm{number}"),
                       str(cache_dir() / "bin" / f"helm{number}")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    wanted = f"helm {major}" if major else "helm"
    raise ToolError(f"{wanted} not found: run ci/install-tools.sh, or put helm on PATH, or set CS_HELM")


def run_helm(arguments: Sequence[str], *, helm: str | None = None, check: bool = True,
             timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run helm and raise ToolError with helm's own message when it fails."""
    binary = helm or find_helm()
    try:
        result = subprocess.run([binary, *arguments], capture_output=True, text=True, timeout=timeout,
                                check=False)
    except FileNotFoundError:
        raise ToolError(f"helm not found at {binary}") from None
    except subprocess.TimeoutExpired:
        raise ToolError(f"helm {arguments[0]} did not finish in {timeout} s") from None
    if check and result.returncode != 0:
        refusal = values_refusal(result.stderr)
        if refusal:
            raise ValuesRefusedError(f"the chart refuses the values: {refusal}")
        message = " ".join(line.strip() for line in result.stderr.strip().splitlines()[-3:])
        raise ToolError(f"helm {arguments[0]} failed: {message or 'exit status ' + str(result.returncode)}")
    return result


# How Helm 3 and 4 report values the chart refuses: a `fail` in a template, or the schema.
_FAILED_CHECK = re.compile(r"execution error at \([^)]*\): (?P<message>.*?)\s*(?:Use --debug flag.*)?$", re.S)
_SCHEMA_HEADER = "values don't meet the specifications of the schema"


def values_refusal(stderr: str) -> str | None:
    """The chart's own words when helm failed on the values, as one line; None for other failures."""
    failed = _FAILED_CHECK.search(stderr)
    if failed:
        return " ".join(failed["message"].split())
    if _SCHEMA_HEADER in stderr:
        problems = [line.strip()[2:] for line in stderr.split(_SCHEMA_HEADER, 1)[1].splitlines()
                    if line.strip().startswith("- ")]
        return "; ".join(problems) or " ".join(stderr.split())
    return None


# What YAML may hold unescaped: its c-printable set, less the byte-order mark and what YAML 1.1
# takes for line breaks inside a quoted scalar (NEL, U+2028, U+2029).
_NOT_YAML_PRINTABLE = re.compile(
    "[^\t\n\r\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]")


def _json_for_yaml(values: dict[str, Any]) -> str:
    """JSON that Helm's YAML reader reads back as `values`: characters beyond the BMP as
    themselves (it refuses json's surrogate-pair escapes), the rest of what YAML forbids raw as
    \\u escapes. Raises ValueError for NaN or infinity."""
    text = json.dumps(values, allow_nan=False, ensure_ascii=False)
    return _NOT_YAML_PRINTABLE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


@contextmanager
def values_file(values: dict[str, Any] | None) -> Iterator[list[str]]:
    """Yield helm's `-f FILE` arguments for a values dict, in a private temporary file.

    The file is JSON, which Helm reads as the YAML it is: every string quoted, so none can be read
    as something else, and about 10x faster to write than YAML (0.2 s at 1000 models). Raises
    ValueError for NaN or infinity, which neither JSON nor the chart's schema accepts.
    """
    if not values:
        yield []
        return
    with tempfile.TemporaryDirectory(prefix="cs-cluster-") as directory:
        path = Path(directory) / "values.yaml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as handle:
            handle.write(_json_for_yaml(values))
        yield ["-f", str(path)]


def template(values: dict[str, Any] | None = None, *, values_files: Sequence[str | Path] = (),
             release: str = "cs-workers", namespace: str = "cs-workers", chart: str | Path | None = None,
             show_only: Sequence[str] = (), kube_version: str | None = None, helm: str | None = None,
             extra: Sequence[str] = ()) -> str:
    """`helm template` the chart with these values and return the manifests. `chart` is any form
    cs_cluster.chart.resolve_chart takes (None: the default chart)."""
    from .chart import resolve_chart

    chart_path = str(resolve_chart(chart))
    with values_file(values) as inline:
        arguments = ["template", release, chart_path, "--namespace", namespace]
        for path in values_files:
            arguments += ["-f", str(path)]
        arguments += inline
        for template_name in show_only:
            arguments += ["--show-only", template_name]
        if kube_version:
            arguments += ["--kube-version", kube_version]
        arguments += list(extra)
        manifests = run_helm(arguments, helm=helm).stdout
    _record(manifests)
    return manifests


def _record(manifests: str) -> None:
    """With CS_RECORD_RENDERS_DIR set, keep a copy of every render, e.g. to scan them all in CI."""
    directory = os.environ.get("CS_RECORD_RENDERS_DIR")
    if not directory:
        return
    os.makedirs(directory, exist_ok=True)
    fd, _ = tempfile.mkstemp(prefix="render-", suffix=".yaml", dir=directory)
    with os.fdopen(fd, "w") as handle:
        handle.write(manifests)
