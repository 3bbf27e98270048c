"""Local mode: the cluster a worker_config describes, as real processes on this machine.

Nothing here restates what the chart renders. `helm template` renders the same values the cluster
would get; each Deployment's container command and environment become a process (one per
replica), with Kubernetes' own rules applied locally: secretKeyRef and envFrom read the rendered
Secrets, `$(VAR)` expands in arguments, and Service addresses map to loopback ports. So a test
that passes here ran the chart's processes, not a hand-written copy of them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cluster import Cluster, _deep_merge
from .errors import ConfigError, ToolError
from .render import parse_manifests

LOCAL_TAG = "local"
LOCAL_PROJECT = "local"
_VARIABLE_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
# Processes inherit only these from our environment; the rest comes from the rendered manifests.
_INHERITED_ENVIRONMENT = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "VIRTUAL_ENV")


@dataclass
class ProcessSpec:
    """One process to start: what a pod's container would run."""

    name: str
    command: list[str]
    environment: dict[str, str]
    component: str
    ready: Callable[[], bool] | None = None
    # The container's readinessProbe, mapped to this machine (cs_cluster.status_local.Probe).
    probe: dict[str, Any] | None = None


@dataclass
class RunningProcess:
    spec: ProcessSpec
    process: subprocess.Popen[bytes]
    log_path: Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def port_is_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def expand_references(text: str, environment: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion in command arguments; unknown references stay as written."""
    return _VARIABLE_REFERENCE.sub(lambda match: environment.get(match[1], match[0]), text)


class LocalCluster:
    """Start, watch and stop the processes of one worker_config on loopback.

    `values` are chart values merged over those the config gives (e.g. celery.visibilityTimeout).
    """

    def __init__(
        self,
        config: str | Path,
        *,
        port: int = 5050,
        comp_url: str | None = None,
        comp_api_token: str | None = None,
        gateway_token: str | None = None,
        values: dict[str, Any] | None = None,
        state_dir: str | Path | None = None,
        chart: str | Path | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.config_path = Path(config).resolve()
        self.cluster = Cluster(self.config_path, tag=LOCAL_TAG, project=LOCAL_PROJECT, previous=None,
                               values_file=Path(tempfile.gettempdir()) / "cs-local-unused.yaml", chart=chart,
                               release="local")
        self.gateway_port = port
        self.comp_url = comp_url
        self.comp_api_token = comp_api_token
        self.requested_gateway_token = gateway_token
        self.extra_values = values or {}
        self.gateway_token: str | None = None
        self._owns_state_dir = state_dir is None
        self.state_dir = Path(state_dir) if state_dir else Path(tempfile.mkdtemp(prefix="cs-local-"))
        self.log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        self.running: list[RunningProcess] = []
        self.service_ports: dict[str, dict[int, int]] = {}
        self.objects: list[dict[str, Any]] = []
        # What `cs-cluster local status` reads (cs_cluster.status_local): each Deployment and its
        # processes, the models' names, where Redis is.
        self.workloads: list[dict[str, Any]] = []
        self.model_names: dict[str, tuple[str, str]] = {}
        self.redis_port: int | None = None
        self.redis_password: str | None = None

    # -- rendering into process specs ---------------------------------------------------------------
    def _render(self) -> list[dict[str, Any]]:
        split = self.cluster.split_values()
        values = _deep_merge(split.values, split.secrets)
        worker_secret = {key: value for key, value in (("COMP_URL", self.comp_url),
                                                         ("COMP_API_TOKEN", self.comp_api_token)) if value}
        if worker_secret:
            values = _deep_merge(values, {"workerSecret": {"values": worker_secret}})
        if self.requested_gateway_token:
            values = _deep_merge(values, {"gateway": {"auth": {"token": self.requested_gateway_token}}})
        values = _deep_merge(values, self.extra_values)
        from . import helm

        manifests = helm.template(values, release="local", chart=self.cluster.chart)
        return parse_manifests(manifests)

    def _find(self, kind: str, component: str | None = None) -> list[dict[str, Any]]:
        found = []
        for obj in self.objects:
            labels = obj["metadata"].get("labels") or {}
            if obj["kind"] == kind and (component is None or labels.get("app.kubernetes.io/component") == component):
                found.append(obj)
        return found

    def _secret_data(self, name: str) -> dict[str, str] | None:
        for secret in self._find("Secret"):
            if secret["metadata"]["name"] == name:
                return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
        return None

    def _allocate_service_ports(self) -> None:
        """Each Service port gets a loopback port; the gateway gets the one asked for."""
        for service in self._find("Service"):
            name = service["metadata"]["name"]
            component = service["metadata"]["labels"].get("app.kubernetes.io/component")
            ports = {}
            for port in service["spec"]["ports"]:
                ports[port["port"]] = self.gateway_port if component == "gateway" else free_port()
            self.service_ports[name] = ports

    def _map_address(self, value: str) -> str:
        """Rewrite `tcp://service:port` and bare `service` to loopback, as cluster DNS would route them."""
        for service, ports in self.service_ports.items():
            for cluster_port, local_port in ports.items():
                value = value.replace(f"{service}:{cluster_port}", f"127.0.0.1:{local_port}")
        return "127.0.0.1" if value in self.service_ports else value

    def _container_environment(self, container: dict[str, Any], pod_name: str) -> dict[str, str]:
        environment: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            reference = source.get("secretRef") or {}
            data = self._secret_data(reference.get("name", ""))
            if data is None and not reference.get("optional"):
                raise ToolError(f"envFrom Secret {reference.get('name')} is not rendered and not optional")
            environment.update(data or {})
        for item in container.get("env") or []:
            if "value" in item:
                environment[item["name"]] = self._map_address(expand_references(str(item["value"]), environment))
                continue
            value_from = item.get("valueFrom") or {}
            if "secretKeyRef" in value_from:
                reference = value_from["secretKeyRef"]
                data = self._secret_data(reference["name"]) or {}
                if reference["key"] in data:
                    environment[item["name"]] = data[reference["key"]]
                elif not reference.get("optional"):
                    raise ToolError(f"Secret {reference['name']} has no key {reference['key']}")
            elif value_from.get("fieldRef", {}).get("fieldPath") == "metadata.name":
                environment[item["name"]] = pod_name
        return self._map_host_port_pairs(container, environment)

    def _map_host_port_pairs(self, container: dict[str, Any], environment: dict[str, str]) -> dict[str, str]:
        """`X_HOST: <service>` with `X_PORT: <service port>` becomes the loopback port of that Service."""
        plain = {item["name"]: str(item["value"]) for item in container.get("env") or [] if "value" in item}
        for name, host in plain.items():
            if not name.endswith("_HOST") or host not in self.service_ports:
                continue
            port_name = name[: -len("_HOST")] + "_PORT"
            if port_name in plain and plain[port_name].isdigit():
                environment[port_name] = str(self.service_ports[host][int(plain[port_name])])
        return environment

    def _model_code_path(self, labels: dict[str, str]) -> str | None:
        slug = labels.get("compute.studio/model")
        if not slug:
            return None
        model = next(m for m in self.cluster.models if m.slug == slug)
        if not model.repo_url:
            raise ConfigError("local mode needs repo_url: a directory with the model's cs-config/",
                              path=str(self.config_path), model=model.name, field="repo_url")
        directory = (self.config_path.parent / model.repo_url).resolve()
        code = directory / "cs-config"
        if not (code / "cs_config" / "functions.py").is_file():
            raise ConfigError(f"{code}/cs_config/functions.py not found; local mode runs models from a local "
                              "directory laid out as C/S models are", path=str(self.config_path), model=model.name,
                              field="repo_url")
        return str(code)

    def _process_command(self, command: list[str], component: str, deployment: str, name: str,
                         ports: dict[int, int]) -> list[str]:
        """Loopback-only adjustments: bind addresses and ports, and unique Celery node names.
        `ports` maps the container's ports to this process's loopback ports (filled here)."""
        adjusted = list(command)
        replacements: dict[str, str] = {}
        if component == "gateway":
            replacements["--bind"] = f"127.0.0.1:{self.gateway_port}"
        elif component == "dask-scheduler":
            service = self.service_ports[deployment]
            replacements["--port"] = str(service[8786])
            replacements["--dashboard-address"] = f"127.0.0.1:{service[8787]}"
            ports.update(service)
            adjusted += ["--host", "127.0.0.1"]
        elif component == "dask-worker":
            # A port of its own (not 0), so that its readiness probe (/health there) can be asked.
            if "--dashboard-address" in adjusted:
                rendered = adjusted[adjusted.index("--dashboard-address") + 1].rpartition(":")[2]
                local_port = free_port()
                if rendered.isdigit():
                    ports[int(rendered)] = local_port
                replacements["--dashboard-address"] = f"127.0.0.1:{local_port}"
            adjusted += ["--host", "127.0.0.1"]
        elif component in ("model-io", "model-sim"):
            # In a cluster %h is the pod's own host name; here all share one host.
            replacements["--hostname"] = f"{name}@%h"
        for flag, value in replacements.items():
            if flag in adjusted:
                adjusted[adjusted.index(flag) + 1] = value
        return _local_executable(adjusted)

    def _probe(self, container: dict[str, Any], environment: dict[str, str], ports: dict[int, int],
               secret_names: set[str]) -> dict[str, Any] | None:
        """The container's readinessProbe as it can be run here: an exec probe's command with the
        container's environment (less what came from Secrets: a probe file never holds them), an
        httpGet probe's port mapped to the process's loopback port. None: no probe, or one that
        cannot be asked here (then a live process counts as ready)."""
        probe = container.get("readinessProbe") or {}
        timeout = float(probe.get("timeoutSeconds", 1))
        if "exec" in probe:
            command = [expand_references(word, environment) for word in probe["exec"]["command"]]
            return {"exec": _local_executable(command), "timeout": timeout, "cwd": str(self.state_dir),
                    "env": {key: value for key, value in environment.items() if key not in secret_names}}
        if "httpGet" in probe:
            port = probe["httpGet"]["port"]
            if not isinstance(port, int):  # a named port: the container's port of that name
                port = next((p["containerPort"] for p in container.get("ports") or [] if p.get("name") == port), None)
            if port not in ports:
                return None
            return {"http": f"http://127.0.0.1:{ports[port]}{probe['httpGet'].get('path', '/')}", "timeout": timeout}
        return None

    def _secret_names(self, container: dict[str, Any]) -> set[str]:
        """The environment variables of a container whose values come from Secrets."""
        names = {item["name"] for item in container.get("env") or []
                 if "secretKeyRef" in (item.get("valueFrom") or {})}
        for source in container.get("envFrom") or []:
            names.update(self._secret_data((source.get("secretRef") or {}).get("name", "")) or {})
        return names

    def _redis_spec(self) -> ProcessSpec:
        """Redis as its container runs it: the rendered command and environment, each volume mount
        a directory here holding what Kubernetes would mount (the ConfigMap's and Secrets' files,
        an empty directory, the data volume), with the config's port, bind address and directory
        set for loopback."""
        if not shutil.which("redis-server"):
            raise ToolError("redis-server not found: run `bash ci/setup.sh` (or `apt-get install redis-server`)")
        deployment = self._find("Deployment", "redis")[0]
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        service = self._find("Service", "redis")[0]["metadata"]["name"]
        port = next(iter(self.service_ports[service].values()))
        root = self.state_dir / "redis"
        volumes = {volume["name"]: volume for volume in pod.get("volumes") or []}
        mounts = {mount["mountPath"]: root / mount["name"] for mount in container.get("volumeMounts") or []}
        # Longest first, so that a mount inside another maps to its own directory.
        pattern = re.compile("|".join(re.escape(path) for path in sorted(mounts, key=len, reverse=True)))

        def mapped(text: str) -> str:
            return pattern.sub(lambda match: str(mounts[match[0]]), text)

        for mount in container.get("volumeMounts") or []:
            directory = mounts[mount["mountPath"]]
            directory.mkdir(parents=True, exist_ok=True)
            volume = volumes[mount["name"]]
            files: dict[str, str] = {}
            if "configMap" in volume:
                (config_map,) = [o for o in self._find("ConfigMap")
                                 if o["metadata"]["name"] == volume["configMap"]["name"]]
                files = {name: mapped(text) for name, text in (config_map.get("data") or {}).items()}
            elif "secret" in volume:
                files = self._secret_data(volume["secret"]["secretName"]) or {}
            for name, text in files.items():
                if name == "redis.conf":
                    text = "\n".join({"port": f"port {port}", "bind": "bind 127.0.0.1"}.get(line.split(" ", 1)[0], line)
                                     for line in text.splitlines()) + "\n"
                descriptor = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(descriptor, "w") as handle:
                    handle.write(text)
        environment = {key: os.environ[key] for key in _INHERITED_ENVIRONMENT if key in os.environ}
        environment.update(self._container_environment(container, "redis"), REDIS_PORT=str(port))
        command = [mapped(word) for word in container["command"]]
        self.redis_port, self.redis_password = port, environment.get("REDIS_PASSWORD")
        self.workloads.append(_workload(deployment, container, ["redis"]))
        return ProcessSpec("redis", command, environment, "redis", ready=lambda: port_is_open(port))

    def process_specs(self) -> list[ProcessSpec]:
        """Every process, in start order: Redis, Dask schedulers, Dask workers, Celery workers, gateway."""
        self.objects = self._render()
        self._allocate_service_ports()
        self.workloads = []
        routes_map = self._find("ConfigMap", "gateway")[0]
        routes = json.loads(routes_map["data"]["routes.json"])
        self.model_names = {slug: (entry["owner"], entry["title"]) for slug, entry in routes["models"].items()}
        for entry in routes["models"].values():
            if entry.get("daskSchedulerAddress"):
                entry["daskSchedulerAddress"] = self._map_address(entry["daskSchedulerAddress"])
        routes_path = self.state_dir / "routes" / "routes.json"
        routes_path.parent.mkdir(parents=True, exist_ok=True)
        routes_path.write_text(json.dumps(routes, indent=2))

        specs = [self._redis_spec()]
        order = ("dask-scheduler", "dask-worker", "model-io", "model-sim", "gateway")
        for component in order:
            for deployment in self._find("Deployment", component):
                name = deployment["metadata"]["name"]
                labels = deployment["metadata"]["labels"]
                pod = deployment["spec"]["template"]["spec"]
                container = pod["containers"][0]
                code_path = self._model_code_path(labels)
                replicas = int(deployment["spec"].get("replicas", 1))
                self.workloads.append(_workload(deployment, container, [f"{name}-{r}" for r in range(replicas)]))
                for replica in range(replicas):
                    pod_name = f"{name}-{replica}"
                    environment = self._container_environment(container, pod_name)
                    if "CS_HEARTBEAT_FILE" in environment:
                        # In a pod /tmp is the pod's own; here every worker shares one host.
                        environment["CS_HEARTBEAT_FILE"] = str(self.state_dir / "heartbeats" / pod_name)
                        (self.state_dir / "heartbeats").mkdir(exist_ok=True)
                    if component == "gateway":
                        environment["CS_ROUTING_TABLE"] = str(routes_path)
                        self.gateway_token = environment.get("CS_GATEWAY_TOKEN")
                    base = {key: os.environ[key] for key in _INHERITED_ENVIRONMENT if key in os.environ}
                    if code_path:
                        base["PYTHONPATH"] = code_path
                    base["PYTHONUNBUFFERED"] = "1"
                    full_environment = {**base, **environment}
                    command = [expand_references(word, full_environment) for word in container["command"]]
                    ports: dict[int, int] = {}
                    if component == "gateway":
                        ports = {int(p["containerPort"]): self.gateway_port for p in container.get("ports") or []
                                 if p.get("name") == "http"}
                    command = self._process_command(command, component, name, pod_name, ports)
                    probe = self._probe(container, full_environment, ports, self._secret_names(container))
                    specs.append(ProcessSpec(pod_name, command, full_environment, component,
                                             ready=self._ready_check(component, name), probe=probe))
        return specs

    def _ready_check(self, component: str, deployment: str) -> Callable[[], bool] | None:
        if component == "dask-scheduler":
            port = self.service_ports[deployment][8786]
            return lambda: port_is_open(port)
        if component == "gateway":
            return self.gateway_answers
        return None

    def gateway_answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.gateway_port}/health", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    # -- running ----------------------------------------------------------------------------------
    def start(self, timeout: float = 120) -> None:
        """Start every process and wait until each that can say so is ready. Raises ToolError,
        saying what to install, when this Python environment lacks the runtime."""
        check_runtime()
        if port_is_open(self.gateway_port):
            raise ToolError(f"port {self.gateway_port} is already in use; pass --port")
        specs = self.process_specs()
        logs = self.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        try:
            for number, spec in enumerate(specs, 1):
                self.log(f"[{number}/{len(specs)}] starting {spec.name}")
                log_path = logs / f"{spec.name}.log"
                with open(log_path, "wb") as log_file:
                    # A session of its own, so stop() can end the whole process group (Celery's
                    # pool children, gunicorn's workers, Dask's nannies) and leave no orphans.
                    process = subprocess.Popen(spec.command, env=spec.environment, stdout=log_file,
                                               stderr=subprocess.STDOUT, start_new_session=True,
                                               cwd=self.state_dir)
                self.running.append(RunningProcess(spec, process, log_path))
                if spec.ready:
                    self._wait(spec, process, log_path, timeout)
            self._write_state()
        except BaseException:
            self.stop()
            raise

    def _write_state(self) -> None:
        """What `cs-cluster local status --port PORT` reads: a private file (cs_cluster.status_local)."""
        from .status_local import write_state

        processes = {running.spec.name: running for running in self.running}
        write_state(self.gateway_port, {
            "supervisor_pid": os.getpid(),
            "state_dir": str(self.state_dir),
            "gateway": {"url": f"http://127.0.0.1:{self.gateway_port}", "token": self.gateway_token},
            "redis": {"port": self.redis_port, "password": self.redis_password},
            "models": {slug: list(name) for slug, name in self.model_names.items()},
            "workloads": [{**workload, "processes": [
                {"name": name, "pid": processes[name].process.pid, "probe": processes[name].spec.probe}
                for name in workload["processes"] if name in processes]} for workload in self.workloads],
        })

    def _wait(self, spec: ProcessSpec, process: subprocess.Popen[bytes], log_path: Path, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        assert spec.ready is not None
        while not spec.ready():
            if process.poll() is not None:
                raise ToolError(f"{spec.name} exited with status {process.returncode}: {self.log_tail(log_path)}")
            if time.monotonic() > deadline:
                raise ToolError(f"{spec.name} was not ready after {timeout:.0f} s: {self.log_tail(log_path)}")
            time.sleep(0.2)

    @staticmethod
    def log_tail(log_path: Path, lines: int = 5) -> str:
        try:
            return " | ".join(log_path.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def exited(self) -> list[RunningProcess]:
        """Processes that stopped on their own."""
        return [running for running in self.running if running.process.poll() is not None]

    def restart(self, name: str, timeout: float = 120) -> RunningProcess:
        """Start process `name` again with the same command, environment and log (appended), as a
        pod's container restarts; if it still runs, it is stopped first (SIGTERM to its group,
        SIGKILL after 15 s). For fault tests: kill a process, then bring it back."""
        index = next((i for i, running in enumerate(self.running) if running.spec.name == name), None)
        if index is None:
            raise ToolError(f"no process named {name}; running: {', '.join(r.spec.name for r in self.running)}")
        old = self.running[index]
        if old.process.poll() is None:
            _signal_group(old.process, signal.SIGTERM)
            try:
                old.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                _signal_group(old.process, signal.SIGKILL)
                old.process.wait(timeout=5)
        with open(old.log_path, "ab") as log_file:
            process = subprocess.Popen(old.spec.command, env=old.spec.environment, stdout=log_file,
                                       stderr=subprocess.STDOUT, start_new_session=True, cwd=self.state_dir)
        self.running[index] = RunningProcess(old.spec, process, old.log_path)
        self._write_state()
        if old.spec.ready:
            self._wait(old.spec, process, old.log_path, timeout)
        return self.running[index]

    def stop(self, grace: float = 15) -> None:
        """SIGTERM every process group (workers finish or requeue), then SIGKILL what is left."""
        if self.running:
            from .status_local import remove_state

            remove_state(self.gateway_port, os.getpid())
        for running in reversed(self.running):
            _signal_group(running.process, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for running in reversed(self.running):
            with contextlib.suppress(subprocess.TimeoutExpired):
                running.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        for running in self.running:
            _signal_group(running.process, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                running.process.wait(timeout=5)
        self.running = []
        if self._owns_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# What `local up` needs in this Python environment: the runtime the chart's containers run
# (cs_runtime, with Celery, gunicorn and Dask), installed by the `local` extra.
RUNTIME_MODULE = "cs_runtime"
RUNTIME_INSTALL = "pip install 'cs-workers[local]' (the cs-workers-runtime package; Python 3.11 or later)"


def check_runtime() -> None:
    """Raise ToolError saying what to install when the runtime cannot be imported here."""
    import importlib.util

    if importlib.util.find_spec(RUNTIME_MODULE) is None:
        raise ToolError(f"local mode runs the runtime from this Python environment, and it is not installed: "
                        f"{RUNTIME_INSTALL}")


def _local_executable(command: list[str]) -> list[str]:
    """A container's command with its program taken from this Python's environment when it is
    there (celery, gunicorn, python, dask: what the image would have on its PATH)."""
    executable = Path(sys.executable).parent / command[0]
    return [str(executable), *command[1:]] if command and executable.exists() else list(command)


def _workload(deployment: dict[str, Any], container: dict[str, Any], processes: list[str]) -> dict[str, Any]:
    """A Deployment as `local status` reports it: its labels, the replicas it wants, the image the
    chart renders for it (local mode runs the model's code from its directory, under that tag)."""
    labels = deployment["metadata"].get("labels") or {}
    return {"kind": deployment["kind"], "name": deployment["metadata"]["name"],
            "component": labels.get("app.kubernetes.io/component"), "model": labels.get("compute.studio/model"),
            "replicas": int(deployment["spec"].get("replicas", 1)), "image": container.get("image", ""),
            "processes": processes}


def _signal_group(process: subprocess.Popen[bytes], number: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, number)


@dataclass
class _StopRequest:
    signal_number: signal.Signals | int | None = None
    handlers: dict[signal.Signals, Any] = field(default_factory=dict)


def run_foreground(cluster: LocalCluster) -> int:
    """`cs-cluster local up`: start, say ready, run until SIGINT/SIGTERM or a process dies."""
    request = _StopRequest()

    def on_signal(number: int, _frame: object) -> None:
        request.signal_number = number

    for number in (signal.SIGINT, signal.SIGTERM):
        request.handlers[number] = signal.signal(number, on_signal)
    try:
        cluster.start()
        models = ", ".join(m.name for m in cluster.cluster.models)
        token_note = ""
        if cluster.gateway_token and not cluster.requested_gateway_token:
            # Never print the token itself: a private file says it instead.
            token_file = cluster.state_dir / "gateway-token"
            descriptor = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(cluster.gateway_token + "\n")
            token_note = f"; send 'Authorization: Bearer <token>', the token is in {token_file}"
        print(f"ready: gateway on http://127.0.0.1:{cluster.gateway_port} serving {models} "
              f"(logs in {cluster.state_dir / 'logs'}{token_note})", flush=True)
        while request.signal_number is None:
            dead = cluster.exited()
            if dead:
                first = dead[0]
                cluster.log(f"{first.spec.name} exited with status {first.process.returncode}: "
                            f"{cluster.log_tail(first.log_path)}")
                return 1
            time.sleep(0.5)
        cluster.log("stopping")
        return 0
    finally:
        cluster.stop()
        for number, handler in request.handlers.items():
            signal.signal(number, handler)
