"""Which chart: the one place that decides the chart every command renders, plans and installs.

A chart is named (`--chart`, `Cluster(chart=...)`, `render_chart(chart=...)`, or `CS_CHART`) as
helm names one: a chart directory, a packaged chart (`helm package`'s `.tgz`), or an `oci://`
reference (pulled once per process with `helm pull`). Named nowhere, it is the chart that ships
inside this package (`cs_cluster/charts/cs-workers`, copied from the repository's
`charts/cs-workers` by the build: setup.py), or, run from a checkout of the repository,
`charts/cs-workers` itself. Either way every caller gets a local path helm accepts: a directory or
a `.tgz`.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from .errors import ToolError, UsageError

CHART_NAME = "cs-workers"
OCI_PREFIX = "oci://"
# The environment variable that names the chart when no --chart does, in any of the three forms.
CHART_VARIABLE = "CS_CHART"

_PACKAGE = Path(__file__).resolve().parent
# oci:// references already pulled in this process: (reference, version, plain_http) -> the .tgz.
_pulled: dict[tuple[str, str | None, bool], Path] = {}


def checkout_root() -> Path | None:
    """The repository this package runs from (render/cs_cluster in a checkout or an editable
    install), or None when it was installed from a wheel."""
    root = _PACKAGE.parents[1]
    return root if (root / "charts" / CHART_NAME / "Chart.yaml").is_file() and (root / "render").is_dir() else None


def packaged_chart() -> Path | None:
    """The chart inside the installed package (package data), or None in a checkout."""
    chart = _PACKAGE / "charts" / CHART_NAME
    return chart if (chart / "Chart.yaml").is_file() else None


def default_chart() -> Path:
    """The chart used when none is named: CS_CHART, else the packaged chart, else the checkout's.
    Raises ToolError when there is none (a broken install)."""
    named = os.environ.get(CHART_VARIABLE)
    if named:
        return resolve_chart(named, source=CHART_VARIABLE)
    root = checkout_root()
    chart = packaged_chart() or (root / "charts" / CHART_NAME if root else None)
    if chart is None:
        raise ToolError(f"the {CHART_NAME} chart is not in the installed package (reinstall cs-workers), "
                        f"and no --chart or {CHART_VARIABLE} names one")
    return chart


def resolve_chart(chart: str | Path | None = None, *, version: str | None = None, plain_http: bool = False,
                  source: str = "--chart") -> Path:
    """The local path helm gets for `chart`: a chart directory or a packaged `.tgz` as given, an
    `oci://` reference pulled into a private temporary directory (removed at exit), None the
    default_chart(). `version` (helm's --version: a version or a range, default the newest) and
    `plain_http` (a registry without TLS) apply to an oci:// reference only.

    Raises UsageError, naming `source`, for something that is none of the three, and ToolError
    with helm's words when a pull fails.
    """
    if chart is None or str(chart) == "":
        if version or plain_http:
            raise UsageError("--chart-version and --plain-http apply to an oci:// --chart only")
        return default_chart()
    text = str(chart)
    if text.startswith(OCI_PREFIX):
        return _pull(text, version, plain_http)
    if version or plain_http:
        raise UsageError(f"--chart-version and --plain-http apply to an oci:// {source} only, not {text}")
    path = Path(chart)
    if path.is_dir():
        if not (path / "Chart.yaml").is_file():
            raise UsageError(f"{source} {path} is not a chart directory (no Chart.yaml in it)")
        return path
    if path.is_file():
        _archive_root(path, source)  # refuses what is not a packaged chart
        return path
    missing = "" if path.exists() else ": no such file or directory"
    raise UsageError(f"{source} {text} is not a chart directory, a packaged chart (.tgz) or an "
                     f"{OCI_PREFIX} reference{missing}")


def _pull(reference: str, version: str | None, plain_http: bool) -> Path:
    key = (reference, version, plain_http)
    if key not in _pulled:
        from .helm import run_helm

        directory = Path(tempfile.mkdtemp(prefix="cs-cluster-chart-"))
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        arguments = ["pull", reference, "--destination", str(directory)]
        arguments += [*(["--version", version] if version else []), *(["--plain-http"] if plain_http else [])]
        run_helm(arguments, timeout=300)
        (package,) = directory.glob("*.tgz")
        _pulled[key] = package
    return _pulled[key]


def _archive_root(path: Path, source: str = "--chart") -> str:
    """The directory a packaged chart's files are under (its Chart.yaml's parent in the archive)."""
    refusal = f"{source} {path} is not a packaged chart (a .tgz from helm package, holding CHART/Chart.yaml)"
    try:
        with tarfile.open(path, "r:*") as archive:
            for name in archive.getnames():
                parts = PurePosixPath(name).parts
                if len(parts) == 2 and parts[1] == "Chart.yaml":
                    return parts[0]
    except (tarfile.TarError, OSError):
        raise UsageError(refusal) from None
    raise UsageError(refusal)


def read_chart_file(chart: Path, name: str) -> str:
    """The text of one of the chart's own files (`values.yaml`, `Chart.yaml`), from a chart
    directory or a packaged chart. Raises ToolError when it cannot be read."""
    try:
        if chart.is_dir():
            return (chart / name).read_text(encoding="utf-8")
        root = _archive_root(chart)
        with tarfile.open(chart, "r:*") as archive:
            member = archive.extractfile(f"{root}/{name}")
            if member is None:
                raise OSError(f"{name} is not a file")
            return member.read().decode("utf-8")
    except (OSError, KeyError, tarfile.TarError, UnicodeDecodeError, UsageError) as error:
        raise ToolError(f"cannot read the chart's {name} in {chart}: {error}") from None


def _chart_yaml(chart: Path, name: str) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(read_chart_file(chart, name)) or {}
    except yaml.YAMLError as error:
        raise ToolError(f"cannot read the chart's {name} in {chart}: {error}") from None
    if not isinstance(loaded, dict):
        raise ToolError(f"the chart's {name} in {chart} is not a mapping")
    return loaded


def chart_values(chart: Path) -> dict[str, Any]:
    """The chart's own values.yaml (its defaults)."""
    return _chart_yaml(chart, "values.yaml")


def chart_metadata(chart: Path) -> dict[str, Any]:
    """The chart's Chart.yaml: name, version, appVersion, ..."""
    return _chart_yaml(chart, "Chart.yaml")
