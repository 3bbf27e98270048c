"""worker_config -> Helm values: the `models` map, image settings and the partial-update rule.

The values file is what users commit, so it never holds a secret value: those go to a separate
values file (`SplitValues.secrets`) that is written with 0600 permissions and git-ignored.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import yaml

from .config import ModelConfig, load_yaml
from .errors import ConfigError, UsageError, WriteError

DEFAULT_REGISTRY = "gcr.io"
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_PROJECT = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
_REGISTRY = re.compile(r"^[A-Za-z0-9.-]+(?::[0-9]+)?(?:/[a-z0-9._-]+)*$")


@dataclass
class SplitValues:
    """The values for git, and the secret values that must not go there."""

    values: dict[str, Any]
    secrets: dict[str, Any]


def check_image_settings(tag: str, project: str, registry: str) -> None:
    """Reject names Docker and Kubernetes would reject later, with the reason now."""
    if not _TAG.match(tag):
        raise UsageError(f"--tag {tag!r} is not a valid image tag (letters, digits, _ . -; at most 128)")
    if not _PROJECT.match(project):
        raise UsageError(f"--project {project!r} is not a valid image path (lowercase letters, digits, . _ -)")
    if registry and not _REGISTRY.match(registry):
        raise UsageError(f"--registry {registry!r} is not a valid registry host")


class Named(Protocol):
    """What --models matches on: a model's title and its owner/title."""

    @property
    def title(self) -> str | None: ...

    @property
    def name(self) -> str: ...


NamedT = TypeVar("NamedT", bound=Named)


def select_models(models: Sequence[NamedT], names: Sequence[str], where: str = "the config") -> list[NamedT]:
    """The models named by title or owner/title, matched exactly (C/S matched substrings).

    Raises UsageError for a name that matches none (with the nearest spelling) or several.
    """
    selected: list[NamedT] = []
    for name in names:
        matches = [m for m in models if name in (m.title, m.name)]
        if not matches:
            known = [m.name for m in models]
            # Case-insensitive suggestions: 'og-usa' should point at 'OG-USA'.
            spellings = {candidate.lower(): candidate for candidate in known + [m.title for m in models if m.title]}
            close = difflib.get_close_matches(name.lower(), list(spellings), n=1)
            hint = f"did you mean '{spellings[close[0]]}'?" if close else f"models in {where}: " + ", ".join(known)
            raise UsageError(f"--models {name!r} matches no model in {where} ({hint})")
        if len(matches) > 1:
            raise UsageError(
                f"--models {name!r} matches {', '.join(m.name for m in matches)}; write owner/title"
            )
        if matches[0] not in selected:
            selected.append(matches[0])
    return selected


def model_values(model: ModelConfig, tag: str) -> dict[str, Any]:
    """One model's entry under `models:`."""
    entry: dict[str, Any] = {
        "owner": model.owner,
        "title": model.title,
        "clusterType": model.cluster_type,
        "replicas": model.replicas,
        "image": {"tag": tag},
    }
    if model.sim_time_limit is not None:
        entry["simTimeLimit"] = model.sim_time_limit
    if model.resources:
        entry["resources"] = copy.deepcopy(model.resources)
    if model.node_sizes:
        entry["nodeSize"] = list(model.node_sizes)
    return entry


def load_previous(path: str | Path) -> dict[str, Any]:
    """A values file written before (by us or edited by hand)."""
    data = load_yaml(Path(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("must be a Helm values mapping", path=str(path))
    models = data.get("models") or {}
    if not isinstance(models, dict):
        raise ConfigError("'models' must be a mapping keyed by model slug", path=str(path), field="models")
    return data


def build_values(
    models: Sequence[ModelConfig],
    *,
    tag: str,
    project: str,
    registry: str | None = None,
    selected: Sequence[str] = (),
    previous: dict[str, Any] | None = None,
    previous_path: str = "--previous",
) -> SplitValues:
    """Values for these models; with `selected`, only those models get `tag`.

    Everything outside `models` and `modelImages` is taken from `previous` unchanged, so edits a
    user made to the committed values file survive. With `selected`, every other model keeps its
    whole previous entry, so an upgrade rolls only the named models.
    """
    previous = copy.deepcopy(previous or {})
    previous_images = previous.get("modelImages") or {}
    registry = registry if registry is not None else previous_images.get("registry", DEFAULT_REGISTRY)
    check_image_settings(tag, project, registry or "")
    chosen = {m.slug for m in select_models(models, selected)} if selected else {m.slug for m in models}
    previous_models: dict[str, Any] = previous.get("models") or {}

    model_entries: dict[str, Any] = {}
    secrets: dict[str, Any] = {}
    for model in models:
        if model.slug in chosen:
            model_entries[model.slug] = model_values(model, tag)
        elif model.slug in previous_models:
            model_entries[model.slug] = previous_models[model.slug]
        else:
            raise UsageError(
                f"model {model.name} is not in {previous_path}, so it has no tag to keep; "
                f"name it in --models too"
            )
        if model.secrets:
            secrets[model.slug] = {"secrets": {"values": dict(model.secrets)}}

    values = previous
    values["modelImages"] = {**previous_images, "registry": registry, "project": project}
    values["models"] = model_entries
    return SplitValues(values=values, secrets={"models": secrets} if secrets else {})


# Strings Helm's YAML reader (go-yaml) can only take as strings when written bare: they start with
# a letter (go-yaml reads `1e3`, `0o17` and `1_000` as numbers, though PyYAML writes them bare) and
# are not a YAML 1.1 boolean or null (a model titled "N" must stay the string "N").
_SAFE_BARE = re.compile(r"^[A-Za-z]")
_GO_YAML_WORDS = re.compile(r"^(y|yes|n|no|on|off|true|false|null)$", re.IGNORECASE)


_SafeDumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _HelmSafeDumper(_SafeDumper):  # type: ignore[valid-type,misc]
    """A safe dumper (libyaml's when there) that quotes strings Helm would read as something else."""


def _represent_string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = None if _SAFE_BARE.match(value) and not _GO_YAML_WORDS.match(value) else "'"
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_HelmSafeDumper.add_representer(str, _represent_string)


def dump_yaml(data: Any) -> str:
    """YAML for Helm: key order kept, block style, no string Helm could misread."""
    text: str = yaml.dump(data, Dumper=_HelmSafeDumper, sort_keys=False, default_flow_style=False,
                          allow_unicode=True)
    return text


def dump_values(values: dict[str, Any], header: str = "") -> str:
    body = dump_yaml(values)
    return (header + body) if header else body


def _kind_of_file(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def writable_target(path: str | Path) -> Path:
    """The file writing `path` would replace (a symlink's target), after refusing anything there
    that is not a regular file (UsageError). Check every file of a set before writing any."""
    path = Path(path)
    target = Path(os.path.realpath(path))
    try:
        existing = target.stat()
    except FileNotFoundError:
        return target
    except OSError as error:
        raise WriteError(f"cannot write {path}: {error.strerror or error}") from None
    if not stat.S_ISREG(existing.st_mode):
        raise UsageError(f"{path} is {_kind_of_file(existing.st_mode)}, not a regular file: give a file to write")
    return target


def write_private_file(path: str | Path, text: str, mode: int = 0o644) -> Path:
    """Write atomically (temp file beside it, then rename), so a failure never leaves half a file.

    A symlink is followed: its target is written and the link stays. Anything else that is not a
    regular file (a directory, a device such as /dev/full, a FIFO, a socket) is refused with a
    UsageError and never replaced. An OSError while writing (no permission, a full disk) is a
    WriteError naming the path; the temporary file is removed.
    """
    path = Path(path)
    target = writable_target(path)
    temporary: str | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, target)
    except OSError as error:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        raise WriteError(f"cannot write {path}: {error.strerror or error}") from None
    except BaseException:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        raise
    return path


def secrets_path_for(values_path: str | Path) -> Path:
    """`values/x.yaml` -> `values/x.secrets.yaml`, a name .gitignore keeps out of git."""
    path = Path(values_path)
    stem = path.name[: -len(path.suffix)] if path.suffix in (".yaml", ".yml") else path.name
    return path.with_name(f"{stem}.secrets.yaml")
