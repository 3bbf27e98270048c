"""`cs-cluster rollback [REVISION]`: the release back to an earlier revision, and the values files
that went with it back on disk, so the next partial update starts from what runs.

The files come from the revision itself (`cs-cluster apply` keeps their text in the release,
cs_cluster.release), so nothing else has to be kept. Everything is checked before helm runs
(the revision exists, it holds its files, they agree with what it ran, they can be written); the
files are written only once helm's rollback succeeded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import helm, release
from .errors import ConfigError, UsageError
from .values import writable_target, write_private_file


@dataclass
class RollbackResult:
    release: str
    target: int
    new_revision: int
    written: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)


def target_revision(name: str, revisions: list[release.Revision], wanted: int | None) -> release.Revision:
    """`wanted`, or without it the newest revision before the current one that ran (deployed or
    superseded; a failed one never ran as a whole)."""
    kept = ", ".join(f"{r.number} ({r.status})" for r in revisions)
    if wanted is None:
        earlier = [r for r in revisions[:-1] if r.status in release.GOOD_STATUSES]
        if not earlier:
            raise UsageError(f"release {name} has no earlier revision that ran to roll back to (revisions: {kept})")
        return earlier[-1]
    for revision in revisions:
        if revision.number == wanted:
            return revision
    raise UsageError(f"release {name} has no revision {wanted} (revisions helm keeps: {kept})")


def _tags(values: Any) -> dict[str, str]:
    models = (values or {}).get("models") if isinstance(values, dict) else None
    return {slug: str(((entry or {}).get("image") or {}).get("tag")) for slug, entry in (models or {}).items()
            if isinstance(entry, dict) and "image" in entry}


def check_recorded(name: str, number: int, recorded: release.RecordedFiles, config: dict[str, Any]) -> None:
    """Refuse a values file that no longer says what its revision ran: the models and their tags
    differ when the release was changed with plain helm (`--set models.x.image.tag=...`) after
    cs-cluster applied it."""
    try:
        stored = yaml.safe_load(recorded.values)
    except yaml.YAMLError:
        stored = None
    ran, said = _tags(config), _tags(stored)
    different = sorted(slug for slug in set(ran) | set(said) if ran.get(slug) != said.get(slug))
    if different:
        slug = different[0]
        raise ConfigError(
            f"revision {number} of release {name} ran model {slug} with tag {ran.get(slug, '(none)')}, but the "
            f"values file kept with it says {said.get(slug, '(none)')}: the release was changed by plain helm "
            "after cs-cluster applied it; --no-values-file rolls back the release alone")


def rollback(name: str, namespace: str, wanted: int | None, *, values_path: Path | None,
             secrets_path: Path | None, binary: str | None = None, wait: bool = True,
             timeout: str = "10m") -> RollbackResult:
    """Roll back and restore the files (`values_path` None: the release alone).

    Raises UsageError (no such release or revision), ConfigError (the revision holds no values
    file, or one that disagrees with it), ToolError (helm failed: the files are left as they were).
    """
    helm_binary = binary or helm.find_helm()
    revisions = release.history(name, namespace, helm_binary)
    target = target_revision(name, revisions, wanted)
    recorded = None
    if values_path is not None:
        config = release.revision_values(name, namespace, target.number, helm_binary)
        recorded = release.recorded_files(config)
        if recorded is None:
            raise ConfigError(f"revision {target.number} of release {name} holds no values file: it was not made by "
                              "cs-cluster apply; --no-values-file rolls back the release alone")
        check_recorded(name, target.number, recorded, config)
        writable_target(values_path)
        if secrets_path is not None:
            writable_target(secrets_path)
    command = ["rollback", name, str(target.number), "--namespace", namespace]
    if wait:
        command += ["--wait", "--timeout", timeout]
    helm.run_helm(command, helm=helm_binary)
    result = RollbackResult(release=name, target=target.number,
                            new_revision=release.history(name, namespace, helm_binary)[-1].number)
    if recorded is None or values_path is None:
        return result
    if secrets_path is not None:
        if recorded.secrets is not None:
            result.written.append(write_private_file(secrets_path, recorded.secrets, 0o600))
        elif secrets_path.exists():
            # The revision ran without a secrets file: one left here would go into the next apply.
            secrets_path.unlink()
            result.removed.append(secrets_path)
    result.written.append(write_private_file(values_path, recorded.values, 0o644))
    return result
