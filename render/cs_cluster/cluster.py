"""The `Cluster` API of C/S 0.16, on top of the chart: config in, values, manifests, releases out."""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from . import helm, planning, release
from .build import BuildStep, build_steps, deployed_gateway_image
from .chart import chart_metadata, chart_values, checkout_root, resolve_chart
from .config import ModelConfig, load_worker_config
from .errors import ConfigError, ToolError, ValuesRefusedError
from .plan import Plan
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
        # A directory or a packaged .tgz (an oci:// reference is pulled once): what helm gets.
        self.chart = resolve_chart(chart)
        self.values_path = Path(values_file) if values_file else Path("values") / f"{project}.yaml"
        self.secrets_path = Path(secrets_file) if secrets_file else secrets_path_for(self.values_path)
        if previous == "auto":
            previous = self.values_path if self.values_path.exists() else None
        self.previous_path = Path(previous) if previous else None
        self.release = release
        self.namespace = namespace
        self.helm_binary = helm_binary
        default_resources = (chart_values(self.chart).get("modelDefaults") or {}).get("sim", {}).get("resources")
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
        target = Path(path) if path else self.values_path
        secrets_target = Path(secrets_path) if secrets_path else (
            secrets_path_for(target) if path else self.secrets_path
        )
        for written, text, mode in reversed(self._files_to_write(target, secrets_target)):
            write_private_file(written, text, mode)  # the secrets first: never values without them
        return target

    def _files_to_write(self, target: Path, secrets_target: Path) -> list[tuple[Path, str, int]]:
        """(path, text, mode) of the values file and, when models have secrets, the 0600 secrets
        file, in helm's -f order; after the chart's checks, with every path checked before any is
        written."""
        split = self.split_values()
        self.check()
        files = [(target, dump_values(split.values, self._header()), 0o644)]
        if split.secrets:
            files.append((secrets_target, dump_values(split.secrets, "# Secret values: keep out of git.\n"), 0o600))
        for written, _, _ in files:
            writable_target(written)
        return files

    @contextlib.contextmanager
    def _staged_values(self, *, commit: bool = True) -> Iterator[list[Path]]:
        """The values files for helm, staged in a private directory, written to values_path (and
        the secrets file) only when the block succeeds: a failed release never leaves a values file
        naming a tag that was never deployed, which the next partial update would take as the truth.
        With `commit` False (plan) they are never written there."""
        files = self._files_to_write(self.values_path, self.secrets_path)
        with tempfile.TemporaryDirectory(prefix="cs-cluster-apply-") as directory:
            staged = [write_private_file(Path(directory) / f"{number}-{path.name}", text, mode)
                      for number, (path, text, mode) in enumerate(files)]
            if not self.split_values().secrets and self.secrets_path.exists():
                staged.append(self.secrets_path)  # secrets written before, kept as values_files() does
            yield staged
        if not commit:
            return
        for path, text, mode in reversed(files):
            write_private_file(path, text, mode)

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
              base_image: str | None = None, network: str | None = None,
              repo_root: Path | None = None) -> list[list[str]]:
        """Build, tag and push the images of the selected models and the runtime base (a full
        build, without `models`, also the gateway's), under the names the chart deploys, then
        write the values file.

        `base_image` (default: $CS_BASE_IMAGE, else the Dockerfiles' python:3.11-slim-bookworm) is
        the runtime and gateway images' base; `network` is `docker build --network` (default:
        `host` when the engine has no bridge network, as on ci/'s engines, else docker's own).
        With `dry_run` the docker commands are printed, not run, and nothing is written.
        `repo_root` (default: the checkout this package runs from) holds the images' sources in
        images/. Raises ConfigError (a model without a buildable repo_url) before anything is
        built, ToolError outside a checkout, and ToolError naming the image when docker fails.
        """
        self.check()
        root = repo_root or checkout_root()
        if root is None:
            raise ToolError("cs-cluster build needs a checkout of the cs-workers repository: the images' "
                            "Dockerfiles and the runtime's source are in its images/; run it from there")
        values = self.split_values().values
        # A full build (no --models) also builds the gateway, named as the chart deploys it.
        gateway = None if self.selected else deployed_gateway_image(values, self._app_version())
        if base_image is None:
            base_image = os.environ.get("CS_BASE_IMAGE") or None

        def compose(build_network: str | None) -> list[BuildStep]:
            return build_steps(
                self.selected_models(), tag=self.tag, project=self.project,
                registry=values["modelImages"]["registry"], repo_root=root, config_path=self.config_path,
                push=push, runtime_image=runtime_image, gateway=gateway, base_image=base_image,
                network=build_network,
            )

        steps = compose(network)  # refuses a model that cannot be built before docker is asked anything
        if not dry_run and network is None:
            steps = compose(_engine_build_network())
        commands = [step.command for step in steps]
        if dry_run:
            for command in commands:
                print(shlex.join(command))
            return commands
        for number, step in enumerate(steps, 1):
            print(f"[{number}/{len(steps)}] {shlex.join(step.command)}", file=sys.stderr, flush=True)
            started = time.monotonic()
            _run_tool(step.command, "docker", f"docker {step.action} of {step.image}")
            print(f"[{number}/{len(steps)}] {step.action} of {step.image}: {time.monotonic() - started:.0f} s",
                  file=sys.stderr, flush=True)
        self.write_values()
        return commands

    def _app_version(self) -> str:
        chart = chart_metadata(self.chart)
        return str(chart.get("appVersion") or chart.get("version") or "")

    def helm_upgrade_command(self, *, wait: bool = True, timeout: str = "10m",
                             extra: Sequence[str] = (), files: Sequence[Path] | None = None) -> list[str]:
        command = [self.helm_binary or helm.find_helm(), "upgrade", "--install", self.release, str(self.chart),
                   "--namespace", self.namespace, "--create-namespace"]
        for path in self.values_files() if files is None else files:
            command += ["-f", str(path)]
        if wait:
            command += ["--wait", "--timeout", timeout]
        return command + list(extra)

    def plan(self, *, extra: Sequence[str] = (), offline: bool = False,
             capacity_check: bool = True) -> planning.PlanResult:
        """What `apply` with these `extra` helm arguments would change, against the live release
        (or, `offline`, against the previous values file), and its capacity check. Changes nothing."""
        with self._staged_values(commit=False) as staged:
            if offline:
                previous = [self.previous_path] if self.previous_path else []
                if previous and self.secrets_path.exists():
                    previous.append(self.secrets_path)
                found = planning.against_files(
                    previous, staged, extra, chart=self.chart, release_name=self.release, namespace=self.namespace,
                    binary=self.helm_binary, values_after=self.values(),
                    values_before=load_previous(self.previous_path) if self.previous_path else {})
                return planning.PlanResult(found, None, "--offline: no cluster to read nodes from")
            found = self._plan_against_release(staged, extra)
        if not capacity_check:
            return planning.PlanResult(found, None, "--skip-capacity-check")
        return planning.PlanResult(found, planning.capacity(found))

    def _plan_against_release(self, staged: Sequence[Path], extra: Sequence[str]) -> Plan:
        command = self.helm_upgrade_command(wait=False, extra=extra, files=staged)
        return planning.against_release(command, release_name=self.release, namespace=self.namespace,
                                        values_after=self.values())

    def apply(self, *, dry_run: bool = False, wait: bool = True, timeout: str = "10m",
              extra: Sequence[str] = (), atomic: bool = True, capacity_check: bool = True) -> list[str]:
        """`helm upgrade --install` the values, then write the values file (only once the release
        succeeded: a failed one leaves the file as it was); `dry_run` only prints the command.

        `atomic` (when waiting): a release that fails goes back to its last good revision. Before
        helm runs, `capacity_check` refuses (CapacityError) pods no node can ever take. The values
        files' text is kept in the release (cs_cluster.release) for `cs-cluster rollback`.
        """
        binary = self.helm_binary or helm.find_helm()
        flags = [release.rollback_on_failure_flag(binary)] if atomic and wait else []
        if dry_run:
            command = self.helm_upgrade_command(wait=wait, timeout=timeout, extra=[*flags, *extra])
            print(shlex.join(command))
            return command
        # While helm waits, name any pod no node can take, instead of only timing out later.
        def report(pod: StuckPod) -> None:
            print(f"cs-cluster: {pod.describe()}; helm will time out after {timeout} unless a node can take it",
                  file=sys.stderr, flush=True)

        with self._staged_values() as staged:
            if capacity_check:
                capacity = planning.capacity(self._plan_against_release(staged, extra))
                capacity.refuse_if_never()
                for finding in capacity.findings:  # only warnings are left
                    print(f"cs-cluster: capacity: {finding.line()[2:]}", file=sys.stderr, flush=True)
            flags += release.record_arguments(staged[0], staged[1] if len(staged) > 1 else None)
            command = self.helm_upgrade_command(wait=wait, timeout=timeout, extra=[*flags, *extra], files=staged)
            print(f"running: {shlex.join(command)}", file=sys.stderr, flush=True)
            if not wait:
                _run_tool(command, "helm")
            else:
                with SchedulingWatcher(self.namespace, self.release, report) as watcher:
                    try:
                        _run_tool(command, "helm")
                    except ToolError as error:
                        if watcher.reported:
                            raise ToolError(
                                f"{error}; " + "; ".join(p.describe() for p in watcher.reported)) from None
                        raise
        print(f"wrote {self.values_path}", file=sys.stderr)
        return command


_NO_DOCKER = "docker not found: a real build needs a Docker engine; --dry-run prints the commands"


def _run_tool(command: list[str], tool: str, what: str | None = None) -> None:
    """Run a tool with its output on ours; its failure becomes one ToolError naming `what`
    (e.g. `docker build of IMAGE`), or the whole command when not given."""
    try:
        result = subprocess.run(command, check=False)
    except FileNotFoundError:
        raise ToolError(_NO_DOCKER if tool == "docker" else f"{tool} not found") from None
    if result.returncode != 0:
        if what:
            raise ToolError(f"{what} failed (exit status {result.returncode}); {tool}'s output is above")
        raise ToolError(f"{tool} failed (exit status {result.returncode}): {shlex.join(command)}")


def _engine_build_network() -> str | None:
    """`host` when the Docker engine has no bridge network (dockerd --bridge=none, as ci/ starts
    it): build steps there would have no network for pip and apt. None (docker's default)
    otherwise. Also the check that an engine answers, before anything is built."""
    try:
        found = subprocess.run(["docker", "network", "ls", "--format", "{{.Name}}"], capture_output=True,
                               text=True, check=False, timeout=60)
    except FileNotFoundError:
        raise ToolError(_NO_DOCKER) from None
    except subprocess.TimeoutExpired:
        raise ToolError("no answer from the Docker engine in 60 s") from None
    if found.returncode != 0:
        detail = (found.stderr.strip().splitlines() or ["no output"])[-1]
        raise ToolError(f"no Docker engine answers (DOCKER_HOST={os.environ.get('DOCKER_HOST', 'unset')}): {detail}")
    return None if "bridge" in found.stdout.split() else "host"


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


__all__ = ["Cluster", "ConfigError"]
