"""A render's pods as Docker containers, for the `images` tests.

Nothing here restates the chart: each container runs the rendered command, environment (Secrets
and fieldRefs resolved as the kubelet resolves them, `$(VAR)` expanded), volumes (ConfigMaps
read-only, emptyDirs and the Redis volume as tmpfs the pod's user owns) and security context
(uid/gid, read-only root, no privilege escalation, capabilities dropped, resource limits). All
pods share one network namespace of their own (a "sandbox" container with no network, so no
port here or on the host can clash), where every Service name is 127.0.0.1: a node with a
perfect kube-proxy, as long as each Service port is its target port (the tests set the gateway
Service's port to its container port).

Secrets reach containers through a 0600 env file, never a command line.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from helpers import CHART, REPO

from cs_cluster.local import expand_references
from cs_cluster.quantities import parse_quantity

TAG = "images-test"
PROJECT = "cs-images-test"
REGISTRY = "localhost:5000"
GATEWAY_TOKEN = "images-test-gateway-token"
WEBSERVER_TOKEN = "images-test-webserver-token"
WEBSERVER_PORT = 8000
STANDIN_SCRIPT = REPO / "ci" / "cluster.d" / "standin-images.sh"


@dataclass(frozen=True)
class BuiltRelease:
    """What `cs-cluster build` made and what the chart renders for the values it wrote."""

    values_file: Path
    build_log: str
    base_image: str | None
    redis_image: str
    runtime_image: str
    release: Release

    def images(self, obj: dict[str, Any]) -> list[str]:
        return [container["image"] for container in pod_spec(obj)["containers"]]

    def run_image(self, image: str) -> str:
        """The image to run for a rendered one: the Redis stand-in for the chart's Redis."""
        return self.redis_image if image == chart_redis_image() else image


def chart_redis_image() -> str:
    image = yaml.safe_load((CHART / "values.yaml").read_text())["redis"]["image"]
    return f"{image['repository']}:{image['tag']}"


# Labels put on everything started here, so a failed session can be cleaned up by label.
SESSION_LABEL = "dev.cs-workers.test-session"


def docker(*arguments: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the docker client; a failure raises with docker's own words."""
    result = subprocess.run(["docker", *arguments], capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {shlex.join(arguments[:3])}... failed ({result.returncode}): "
                           f"{result.stderr.strip()[-2000:]}")
    return result


def engine_problem() -> str | None:
    """Why no Docker engine can be used here (None when one answers)."""
    if not os.environ.get("DOCKER_HOST"):
        return "DOCKER_HOST is not set: the images tests need a Docker engine (ci/cluster up --real-node starts one)"
    try:
        info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                              timeout=30, check=False)
    except FileNotFoundError:
        return "the docker client is not installed"
    except subprocess.TimeoutExpired:
        return f"the Docker engine at {os.environ['DOCKER_HOST']} did not answer in 30 s"
    if info.returncode != 0:
        return f"no Docker engine answers at {os.environ['DOCKER_HOST']}: {info.stderr.strip()[-300:]}"
    return None


def image_config(image: str) -> dict[str, Any]:
    """`docker image inspect`'s Config of an image in the engine."""
    config: dict[str, Any] = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", image).stdout)
    return config


def pod_spec(obj: Mapping[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"] if obj["kind"] == "Pod" else obj["spec"]["template"]["spec"]
    return spec


def _bytes(quantity: object) -> int:
    return int(parse_quantity(quantity))


@dataclass
class Release:
    """The Secrets and Services of one render, and where its pods' files go."""

    objects: list[dict[str, Any]]
    workdir: Path
    namespace: str = "cs-workers"

    def secret_data(self, name: str) -> dict[str, str] | None:
        for obj in self.objects:
            if obj["kind"] == "Secret" and obj["metadata"]["name"] == name:
                data = {key: base64.b64decode(value).decode() for key, value in (obj.get("data") or {}).items()}
                return {**data, **(obj.get("stringData") or {})}
        return None

    def config_map_data(self, name: str) -> dict[str, str]:
        for obj in self.objects:
            if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == name:
                return dict(obj.get("data") or {})
        raise LookupError(f"ConfigMap {name} is not in the render")

    def service_names(self) -> list[str]:
        return sorted(obj["metadata"]["name"] for obj in self.objects if obj["kind"] == "Service")

    def environment(self, container: Mapping[str, Any], pod_name: str) -> dict[str, str]:
        """The container's environment as the kubelet builds it."""
        environment: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            reference = source.get("secretRef") or {}
            data = self.secret_data(reference.get("name", ""))
            if data is None and not reference.get("optional"):
                raise LookupError(f"envFrom Secret {reference.get('name')} is not rendered and not optional")
            environment.update(data or {})
        fields = {"metadata.name": pod_name, "metadata.namespace": self.namespace, "status.podIP": "127.0.0.1"}
        for item in container.get("env") or []:
            if "value" in item:
                environment[item["name"]] = expand_references(str(item["value"]), environment)
                continue
            source = item.get("valueFrom") or {}
            if "secretKeyRef" in source:
                reference = source["secretKeyRef"]
                data = self.secret_data(reference["name"]) or {}
                if reference["key"] in data:
                    environment[item["name"]] = data[reference["key"]]
                elif not reference.get("optional"):
                    raise LookupError(f"Secret {reference['name']} has no key {reference['key']}")
            elif "fieldRef" in source:
                environment[item["name"]] = fields[source["fieldRef"]["fieldPath"]]
            else:
                raise LookupError(f"env {item['name']}: unsupported valueFrom {sorted(source)}")
        return environment


@dataclass
class Container:
    """One started container of a pod, with the rendered spec it came from."""

    name: str
    pod_name: str
    spec: dict[str, Any]
    image: str

    def logs(self, lines: int = 40) -> str:
        done = docker("logs", "--tail", str(lines), self.name, check=False)
        return (done.stdout + done.stderr).strip()

    def running(self) -> bool:
        state = docker("inspect", "--format", "{{.State.Running}}", self.name, check=False).stdout.strip()
        return state == "true"

    def exit_code(self, timeout: float) -> int:
        return int(docker("wait", self.name, timeout=timeout).stdout.strip())


@dataclass
class Sandbox:
    """A network namespace the pods share; every Service name resolves to its loopback."""

    release: Release
    image: str
    user: str = "10001:10001"
    name: str = field(default_factory=lambda: f"cs-images-{uuid.uuid4().hex[:8]}")
    started: list[Container] = field(default_factory=list)

    def start(self) -> None:
        hosts = [f"--add-host={service}:127.0.0.1" for service in self.release.service_names()]
        docker("run", "--detach", "--name", self.name, "--label", f"{SESSION_LABEL}={self.name}", "--network", "none",
               "--read-only", "--user", self.user, "--cap-drop", "ALL", *hosts, self.image, "sleep", "infinity")

    def stop(self) -> None:
        names = [container.name for container in self.started] + [self.name]
        docker("rm", "--force", "--volumes", *names, check=False, timeout=180)

    def exec(self, *command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """A command in the sandbox (the runtime image): what the kubelet's HTTP probes and a
        client on the node would do."""
        return docker("exec", self.name, *command, timeout=timeout, check=False)

    def http_get(self, url: str, timeout: float = 10) -> int:
        """The status of GET url from inside the namespace (0 when nothing answers)."""
        code = ("import sys, urllib.request, urllib.error\n"
                "try:\n"
                f"    print(urllib.request.urlopen(sys.argv[1], timeout={timeout}).status)\n"
                "except urllib.error.HTTPError as error:\n"
                "    print(error.code)\n"
                "except OSError:\n"
                "    print(0)\n")
        done = self.exec("python3", "-c", code, url, timeout=timeout + 30)
        return int(done.stdout.strip() or 0)

    def run_pod(self, obj: Mapping[str, Any], images: Callable[[str], str] = lambda image: image,
                replica: int = 0, detach: bool = True) -> list[Container]:
        """Start every container of a rendered Pod or Deployment's pod template (one replica).
        `images` maps a rendered image to the one to run (a stand-in for the chart's Redis)."""
        spec = pod_spec(obj)
        pod_name = obj["metadata"]["name"] + (f"-{replica}" if obj["kind"] != "Pod" else "")
        volumes = {volume["name"]: volume for volume in spec.get("volumes") or []}
        pod_security = spec.get("securityContext") or {}
        started = []
        for container in spec["containers"]:
            name = f"{self.name}-{pod_name}-{container['name']}"[:120]
            arguments = self._run_arguments(container, pod_name, pod_security, volumes, name)
            image = images(container["image"])
            command = [*container.get("command", []), *container.get("args", [])]
            environment = self.release.environment(container, pod_name)
            command = [expand_references(word, environment) for word in command]
            entrypoint = ["--entrypoint", command[0]] if container.get("command") else []
            rest = command[1:] if container.get("command") else command
            docker("run", *(["--detach"] if detach else []), *arguments, *entrypoint, image, *rest,
                   timeout=600 if not detach else 120)
            record = Container(name, pod_name, container, image)
            self.started.append(record)
            started.append(record)
        return started

    def _run_arguments(self, container: Mapping[str, Any], pod_name: str, pod_security: Mapping[str, Any],
                       volumes: Mapping[str, Any], name: str) -> list[str]:
        security = {**pod_security, **(container.get("securityContext") or {})}
        user, group = security.get("runAsUser"), security.get("runAsGroup")
        arguments = ["--name", name, "--label", f"{SESSION_LABEL}={self.name}", "--network", f"container:{self.name}"]
        if user is not None:
            arguments += ["--user", f"{user}:{group if group is not None else user}"]
        if pod_security.get("fsGroup") is not None:
            arguments += ["--group-add", str(pod_security["fsGroup"])]
        if security.get("readOnlyRootFilesystem"):
            arguments.append("--read-only")
        if security.get("allowPrivilegeEscalation") is False:
            arguments += ["--security-opt", "no-new-privileges"]
        for capability in (security.get("capabilities") or {}).get("drop") or []:
            arguments += ["--cap-drop", capability]
        limits = (container.get("resources") or {}).get("limits") or {}
        if "memory" in limits:
            arguments += ["--memory", str(_bytes(limits["memory"]))]
        if "cpu" in limits:
            arguments += ["--cpus", str(parse_quantity(limits["cpu"]).quantize(Decimal("0.001")))]
        pod_dir = self.release.workdir / name
        for mount in container.get("volumeMounts") or []:
            arguments += self._mount(volumes[mount["name"]], mount, pod_dir, user, pod_security.get("fsGroup"))
        env_file = pod_dir / "env"
        env_file.parent.mkdir(parents=True, exist_ok=True)
        environment = self.release.environment(container, pod_name)
        if any("\n" in value for value in environment.values()):
            raise ValueError(f"{pod_name}: an env value with a newline cannot go through docker's --env-file")
        # 0600 from the start: the file holds Secret values.
        descriptor = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.writelines(f"{key}={value}\n" for key, value in environment.items())
        return [*arguments, "--env-file", str(env_file)]

    def _mount(self, volume: Mapping[str, Any], mount: Mapping[str, Any], pod_dir: Path, user: object,
               fs_group: object) -> list[str]:
        target = mount["mountPath"]
        if "configMap" in volume:
            directory = pod_dir / "volumes" / volume["name"]
            directory.mkdir(parents=True, exist_ok=True)
            data = self.release.config_map_data(volume["configMap"]["name"])
            items = volume["configMap"].get("items") or [{"key": key, "path": key} for key in data]
            for item in items:
                (directory / item["path"]).write_text(data[item["key"]])
            directory.chmod(0o755)
            return ["--volume", f"{directory}:{target}:ro"]
        if "secret" in volume:
            # As the kubelet projects a Secret: one file per key, with the volume's defaultMode
            # (0644 unless set) or the item's mode.
            directory = pod_dir / "volumes" / volume["name"]
            directory.mkdir(parents=True, exist_ok=True)
            source = volume["secret"]
            data = self.release.secret_data(source["secretName"])
            if data is None:
                if source.get("optional"):
                    data = {}
                else:
                    raise LookupError(f"volume {volume['name']}: Secret {source['secretName']} is not rendered")
            mode = int(source.get("defaultMode", 0o644))
            items = source.get("items") or [{"key": key, "path": key} for key in data]
            for item in items:
                path = directory / item["path"]
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(descriptor, "w") as handle:
                    handle.write(data[item["key"]])
                file_mode = int(item.get("mode", mode))
                if fs_group is not None:
                    # The kubelet gives a Secret's files to the pod's fsGroup and adds group read
                    # (pkg/volume's SetVolumeOwnership), so a 0400 Secret reads as 0440.
                    os.chown(path, 0, int(str(fs_group)))
                    file_mode |= 0o440 & ~0o400 if file_mode & 0o400 else 0
                path.chmod(file_mode)
            directory.chmod(0o755)
            return ["--volume", f"{directory}:{target}:ro"]
        if "emptyDir" in volume or "persistentVolumeClaim" in volume:
            # Docker ignores a tmpfs mode on a path the image has; owning it is what the pod's user
            # gets from an emptyDir (0777) or a fresh volume with fsGroup.
            owner = f"uid={user},gid={fs_group if fs_group is not None else user}" if user is not None else ""
            return ["--tmpfs", f"{target}:{','.join(filter(None, [owner, 'mode=1777']))}"]
        raise ValueError(f"volume {volume['name']}: no Docker equivalent here for {sorted(volume)}")


def probe_passes(sandbox: Sandbox, container: Container, probe: Mapping[str, Any]) -> bool:
    """One run of a rendered probe: exec in the container, httpGet from the namespace."""
    if "exec" in probe:
        timeout = float(probe.get("timeoutSeconds", 1)) + 30
        done = docker("exec", container.name, *probe["exec"]["command"], timeout=timeout, check=False)
        return done.returncode == 0
    if "httpGet" in probe:
        port = probe["httpGet"]["port"]
        if isinstance(port, str):
            port = next(p["containerPort"] for p in container.spec.get("ports") or [] if p.get("name") == port)
        url = f"http://127.0.0.1:{port}{probe['httpGet'].get('path', '/')}"
        return 200 <= sandbox.http_get(url) < 400
    if "tcpSocket" in probe:
        port = probe["tcpSocket"]["port"]
        done = sandbox.exec("python3", "-c", "import socket, sys; socket.create_connection(('127.0.0.1', "
                            "int(sys.argv[1])), timeout=5).close()", str(port))
        return done.returncode == 0
    raise ValueError(f"unsupported probe {sorted(probe)}")


def wait_for_probes(sandbox: Sandbox, containers: Iterable[Container], timeout: float = 180) -> dict[str, str]:
    """Wait until every container's startup, readiness and liveness probes pass. Returns, per
    container that did not get there, why (its probe and the end of its log)."""
    pending = {container.name: container for container in containers}
    deadline = time.monotonic() + timeout
    failures: dict[str, str] = {}
    while pending and time.monotonic() < deadline:
        for name, container in list(pending.items()):
            if not container.running():
                failures[name] = f"exited:\n{container.logs()}"
                del pending[name]
                continue
            probes = [container.spec[kind] for kind in ("startupProbe", "readinessProbe", "livenessProbe")
                      if kind in container.spec]
            if all(probe_passes(sandbox, container, probe) for probe in probes):
                del pending[name]
        if pending:
            time.sleep(2)
    for name, container in pending.items():
        failures[name] = f"probes still failing after {timeout:.0f} s:\n{container.logs()}"
    return failures


def pods_directory(parent: Path) -> Path:
    """A directory for the pods' env files and ConfigMap contents; 0700 since env files hold Secrets."""
    directory = parent / "pods"
    directory.mkdir(mode=0o700)
    return directory
