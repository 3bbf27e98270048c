"""A Helm release as it is in the cluster: its current revision, its history, the values files each
revision was applied from, and what an upgrade would install. Read through helm, never changed.

`cs-cluster apply` keeps the text of the values files it applied in the release itself, under
the chart's `csCluster` key (`--set-file`, so the text round-trips byte for byte), so the history
helm keeps anyway is all `cs-cluster rollback` needs to restore them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import helm
from .errors import ToolError, UsageError, ValuesRefusedError

RECORD_KEY = "csCluster"
_NOT_FOUND = re.compile(r"release: not found")
# Statuses of a revision that ran: the current one (deployed) and the ones it replaced.
GOOD_STATUSES = ("deployed", "superseded")


@dataclass(frozen=True)
class LiveRelease:
    """The release's newest revision: what `helm status -o json` reports."""

    name: str
    namespace: str
    revision: int
    status: str
    chart: str  # name-version
    manifest: str = field(repr=False)
    config: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class Revision:
    number: int
    status: str
    chart: str
    description: str


@lru_cache(maxsize=8)
def helm_major(binary: str) -> int:
    """3 or 4: the flags for rolling back on failure differ (--atomic, --rollback-on-failure)."""
    found = helm.run_helm(["version", "--template", "{{.Version}}"], helm=binary, timeout=60).stdout.strip()
    match = re.match(r"v?(\d+)\.", found)
    if not match:
        raise ToolError(f"cannot tell the version of helm at {binary} (it printed {found!r})")
    return int(match[1])


def rollback_on_failure_flag(binary: str) -> str:
    return "--atomic" if helm_major(binary) < 4 else "--rollback-on-failure"


def _failure(command: str, stderr: str, code: int) -> ToolError:
    message = " ".join(line.strip() for line in stderr.strip().splitlines()[-3:])
    return ToolError(f"helm {command} failed: {message or 'exit status ' + str(code)}")


def _helm_json(arguments: Sequence[str], binary: str) -> Any:
    result = helm.run_helm([*arguments, "--output", "json"], helm=binary, timeout=300)
    try:
        return json.loads(result.stdout or "null")
    except json.JSONDecodeError:
        raise ToolError(f"helm {arguments[0]} printed no JSON: {result.stdout[:200]!r}") from None


def live_release(release: str, namespace: str, binary: str) -> LiveRelease | None:
    """The release's newest revision (whatever its status), or None when there is no release."""
    result = helm.run_helm(["status", release, "--namespace", namespace, "--output", "json"], helm=binary,
                           check=False, timeout=300)
    if result.returncode != 0:
        if _NOT_FOUND.search(result.stderr):
            return None
        raise _failure("status", result.stderr, result.returncode)
    status = json.loads(result.stdout)
    # helm status leaves the chart out of its JSON; the history names it.
    newest = history(release, namespace, binary, newest_only=True)
    return LiveRelease(name=release, namespace=namespace, revision=int(status.get("version") or 0),
                       status=str((status.get("info") or {}).get("status", "")),
                       chart=newest[-1].chart if newest else "",
                       manifest=str(status.get("manifest") or ""), config=status.get("config") or {})


def history(release: str, namespace: str, binary: str, *, newest_only: bool = False) -> list[Revision]:
    """The revisions helm keeps, oldest first; UsageError when there is no such release."""
    limit = ["--max", "1"] if newest_only else []
    result = helm.run_helm(["history", release, "--namespace", namespace, "--output", "json", *limit], helm=binary,
                           check=False, timeout=300)
    if result.returncode != 0:
        if _NOT_FOUND.search(result.stderr):
            raise UsageError(f"no release {release} in namespace {namespace}")
        raise _failure("history", result.stderr, result.returncode)
    return [Revision(number=int(entry["revision"]), status=str(entry.get("status", "")),
                     chart=str(entry.get("chart", "")), description=str(entry.get("description", "")))
            for entry in json.loads(result.stdout or "[]")]


def revision_values(release: str, namespace: str, revision: int, binary: str) -> dict[str, Any]:
    """The values given to one revision (`helm get values --revision N`): the user's, merged."""
    values = _helm_json(["get", "values", release, "--namespace", namespace, "--revision", str(revision)], binary)
    return values if isinstance(values, dict) else {}


@dataclass(frozen=True)
class RecordedFiles:
    """The texts of the values file and the secrets file (None: there was none) of a revision."""

    values: str
    secrets: str | None


def recorded_files(values: dict[str, Any]) -> RecordedFiles | None:
    """What `record_arguments` kept in a revision's values; None for a revision not applied by
    `cs-cluster apply` (plain helm, or an older cs-cluster)."""
    record = values.get(RECORD_KEY)
    if not isinstance(record, dict) or not isinstance(record.get("valuesFile"), str):
        return None
    secrets = record.get("secretsFile")
    return RecordedFiles(values=record["valuesFile"], secrets=secrets if isinstance(secrets, str) else None)


def record_arguments(values_file: Path, secrets_file: Path | None) -> list[str]:
    """helm arguments that keep these files' text in the release (see the module's docstring)."""
    arguments = []
    for key, path in (("valuesFile", values_file), ("secretsFile", secrets_file)):
        if path is None:
            continue
        if "," in str(path):  # helm's --set-file would split the path there
            raise ToolError(f"cannot hand {path} to helm --set-file: its path has a comma (set TMPDIR)")
        arguments += ["--set-file", f"{RECORD_KEY}.{key}={path}"]
    return arguments


def dry_run_manifest(upgrade_command: Sequence[str]) -> str:
    """The manifest `helm upgrade --install` would apply, rendered by helm against the cluster
    (`--dry-run=server`: generated Secrets are looked up, not made anew). Changes nothing."""
    binary, *arguments = upgrade_command
    try:
        result = _helm_json([*arguments, "--dry-run=server"], binary)
    except ValuesRefusedError:
        raise
    except ToolError as error:  # e.g. an object of the same name that the release does not own
        raise ToolError(f"{error} (in a dry run, before the upgrade: nothing was changed)") from None
    return str((result or {}).get("manifest") or "")
