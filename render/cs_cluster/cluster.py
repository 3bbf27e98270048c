"""The `Cluster` API of C/S 0.16, on top of the chart: config in, values, manifests, releases out."""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

from . import helm
from .build import build_commands
from .config import ModelConfig, load_worker_config
from .errors import ConfigError, ToolError, ValuesRefusedError
from .render import DEFAULT_KUBERNETES_VERSIONS, RenderedChart, parse_manifests, validate_objects
from .values import (
    SplitValues,
    build_values,
    dump_values,
    load_previous,
    secrets_path_for,
    select_models,
    writable_target,
    write_private_file,
)
from .watch import SchedulingWatcher, StuckPod


def chart_defaults(chart: Path) -> dict[str, Any]:
    """The chart's own values.yaml: the defaults models are checked against."""
    try:
        return yaml.safe_load((chart / "values.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ToolError(f"cannot read the chart's values.yaml in {chart}: {error}") from None


class Cluster:
    """A compute cluster described by a worker_config, deployed with the cs-workers chart.

    As in C/S 0.16::

        cluster = Cluster(config="worker_config.dev.yaml", tag="oct30.1",
                          project="cs-workers-dev", models=["OG-USA"])
        cluster.build()   # build and push images, write values/cs-workers-dev.yaml
        cluster.apply()   # helm upgrade --install with that values file

    `previous` is the values file to keep other models' tags from; by default the values file
    this cluster writes (`values_file`), when it exists.
    """

    def __init__(
        self,
        config: str | Path,
        tag: str,
        project: str,
        models: Sequence[str] | None = None,
        *,
        registry: str | None = None,
        values_file: str | Path | None = None,
        previous: str | Path | Literal["auto"] | None = "auto",
        secrets_file: str | Path | None = None,
        chart: str | Path | None = None,
        release: str = "cs-workers",
        namespace: str = "cs-workers",
        helm_binary: str | None = None,
        allow_empty: bool = False,
    ) -> None:
        self.config_path = Path(config)
        self.tag = tag
        self.project = project
        self.selected = list(models or [])
        self.registry = registry
        self.chart = Path(chart) if chart else helm.default_chart()
        self.values_path = Path(values_file) if values_file else Path("values") / f"{project}.yaml"
        self.secrets_path = Path(secrets_file) if secrets_file else secrets_path_for(self.values_path)
        if previous == "auto":
            previous = self.values_path if self.values_path.exists() else None
        self.previous_path = Path(previous) if previous else None
        self.release = release
        self.namespace = namespace
        self.helm_binary = helm_binary
        default_resources = (chart_defaults(self.chart).get("modelDefaults") or {}).get("sim", {}).get("resources")
        # An empty config is refused unless allow_empty: its values would remove every model.
        self.models: list[ModelConfig] = load_worker_config(self.config_path, default_resources,
                                                            allow_empty=allow_empty)
        self._split: SplitValues | None = None
        self._manifests: dict[bool, str] = {}

    # -- values -----------------------------------------------------------------------------
    def split_values(self) -> SplitValues:
        """The values for git and the secret values, computed once."""
        if self._split is None:
            previous = load_previous(self.previous_path) if self.previous_path else None
            self._split = build_values(
                self.models,
                tag=self.tag,
                project=self.project,
                registry=self.registry,
                selected=self.selected,
                previous=previous,
                previous_path=str(self.previous_path or "--previous (none given)"),
            )
        return self._split

    def values(self) -> dict[str, Any]:
        """The Helm values users commit (no secret values in them)."""
        return self.split_values().values

    def selected_models(self) -> list[ModelConfig]:
        return select_models(self.models, self.selected) if self.selected else list(self.models)

    def _header(self) -> str:
        return (
            f"# Written by cs-cluster from {self.config_path} (tag {self.tag}).\n"
            "# Secret values are not in this file: see 'Where secrets live' in the README.\n"
        )

    def write_values(self, path: str | Path | None = None, secrets_path: str | Path | None = None) -> Path:
        """Write the values file (and the 0600 secrets file when models have secrets)."""
        split = self.split_values()
        target = Path(path) if path else self.values_path
        secrets_target = Path(secrets_path) if secrets_path else (
            secrets_path_for(target) if path else self.secrets_path
        )
        self.check()
        for written in ([secrets_target] if split.secrets else []) + [target]:
            writable_target(written)  # all checked before any is written
        if split.secrets:
            write_private_file(secrets_target, dump_values(split.secrets, "# Secret values: keep out of git.\n"), 0o600)
        write_private_file(target, dump_values(split.values, self._header()))
        return target

    def values_files(self) -> list[Path]:
        """The files `apply` hands to helm: the values file, then the secrets file if any."""
        files = [self.values_path]
        if self.secrets_path.exists():
            files.append(self.secrets_path)
        return files

    # -- rendering ------------------------------------------------------------------------------
    def template(self, *, include_secrets: bool = True) -> str:
        """The manifests, as `helm template` renders them for these values (rendered once).

        Raises ValuesRefusedError, naming the config, when the chart's schema or checks refuse them.
        """
        if include_secrets not in self._manifests:
            split = self.split_values()
            values = _deep_merge(split.values, split.secrets) if include_secrets else split.values
            try:
                self._manifests[include_secrets] = helm.template(
                    values, release=self.release, namespace=self.namespace, chart=self.chart, helm=self.helm_binary)
            except ValuesRefusedError as error:
                made_from = f" (with {self.previous_path})" if self.previous_path else ""
                raise ValuesRefusedError(error.detail + made_from, path=str(self.config_path)) from None
        return self._manifests[include_secrets]

    def check(self) -> None:
        """Refuse whatever the chart refuses, before anything is written or built: the chart's
        schema and checks are the one statement of those rules, so they run here as a render."""
        self.template()

    def render(self, kubernetes_versions: Sequence[str] = DEFAULT_KUBERNETES_VERSIONS) -> RenderedChart:
        """The rendered objects, each validated against the strict Kubernetes schemas."""
        manifests = self.template()
        objects = parse_manifests(manifests)
        validate_objects(objects, kubernetes_versions)
        return RenderedChart(objects, manifests)

    # -- deploying ------------------------------------------------------------------------------
    def build(self, *, dry_run: bool = False, push: bool = True, runtime_image: str | None = None,
              repo_root: Path | None = None) -> list[list[str]]:
        """Build, tag and push the selected models' images (all: also the gateway's), then
        write the values file.

        With `dry_run` the docker commands are printed, not run, and nothing is written.
        """
        self.check()
        root = repo_root or self.chart.parent.parent
        # A full build (no --models) also builds the gateway, tagged with the chart's appVersion,
        # the tag the chart deploys it with by default.
        gateway_tag = None if self.selected else str(
            (yaml.safe_load((self.chart / "Chart.yaml").read_text()) or {}).get("appVersion", self.tag))
        commands = build_commands(
            self.selected_models(), tag=self.tag, project=self.project,
            registry=self.split_values().values["modelImages"]["registry"], repo_root=root,
            config_dir=self.config_path.parent, push=push, runtime_image=runtime_image, gateway_tag=gateway_tag,
        )
        if dry_run:
            for command in commands:
                print(shlex.join(command))
            return commands
        for number, command in enumerate(commands, 1):
            print(f"[{number}/{len(commands)}] {shlex.join(command)}", file=sys.stderr, flush=True)
            _run_tool(command, "docker")
        self.write_values()
        return commands

    def helm_upgrade_command(self, *, wait: bool = True, timeout: str = "10m",
                             extra: Sequence[str] = ()) -> list[str]:
        command = [self.helm_binary or helm.find_helm(), "upgrade", "--install", self.release, str(self.chart),
                   "--namespace", self.namespace, "--create-namespace"]
        for path in self.values_files():
            command += ["-f", str(path)]
        if wait:
            command += ["--wait", "--timeout", timeout]
        return command + list(extra)

    def apply(self, *, dry_run: bool = False, wait: bool = True, timeout: str = "10m",
              extra: Sequence[str] = ()) -> list[str]:
        """Write the values file and `helm upgrade --install` it; `dry_run` only prints the command."""
        if dry_run:
            command = self.helm_upgrade_command(wait=wait, timeout=timeout, extra=extra)
            print(shlex.join(command))
            return command
        self.write_values()
        command = self.helm_upgrade_command(wait=wait, timeout=timeout, extra=extra)
        print(f"running: {shlex.join(command)}", file=sys.stderr, flush=True)
        if not wait:
            _run_tool(command, "helm")
            return command
        # While helm waits, name any pod no node can take, instead of only timing out later.
        def report(pod: StuckPod) -> None:
            print(f"cs-cluster: {pod.describe()}; helm will time out after {timeout} unless a node can take it",
                  file=sys.stderr, flush=True)

        with SchedulingWatcher(self.namespace, self.release, report) as watcher:
            try:
                _run_tool(command, "helm")
            except ToolError as error:
                if watcher.reported:
                    raise ToolError(f"{error}; " + "; ".join(p.describe() for p in watcher.reported)) from None
                raise
        return command


def _run_tool(command: list[str], tool: str) -> None:
    try:
        result = subprocess.run(command, check=False)
    except FileNotFoundError:
        raise ToolError(
            f"{tool} not found"
            + (": a real build needs a Docker engine; --dry-run prints the commands" if tool == "docker" else "")
        ) from None
    if result.returncode != 0:
        raise ToolError(f"{tool} failed (exit status {result.returncode}): {shlex.join(command)}")


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


__all__ = ["Cluster", "ConfigError"]
