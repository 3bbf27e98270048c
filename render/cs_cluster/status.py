"""`cs-cluster status`: what runs, per model, and whether the cluster is healthy. The shapes and
the words; where the numbers come from is cs_cluster.status_kube (a cluster) and
cs_cluster.status_local (local mode).

One source for each number:

- **pods ready / desired** of each workload (model-io, model-sim, dask-scheduler, dask-worker,
  redis, gateway): the workload's own status (`spec.replicas`, `status.readyReplicas`) in a
  cluster; in local mode the processes and the chart's readiness probes;
- **the image tag running**: the running pods' main containers (what runs, not what values say);
  more than one tag while a rollout is under way;
- **sims queued and running, and the last result**: the gateway's `GET /load`
  (docs/runtime-contract.md, "Load (gateway)"): running is what workers took and have not
  acknowledged.

Healthy means: every workload has as many ready pods as it wants (and a rollout that is not stuck),
Redis has a ready pod (local mode: it answers PING), the gateway has a ready pod and answers
`/load`, the gateway routes every model, and each model's last result reached the webserver.
Exit statuses: see `EXIT_*` and docs/status.md.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ToolError

# The chart's labels (charts/cs-workers/templates/_helpers.tpl, cs-workers.selectorLabels and
# cs-workers.podLabels): the stable ones, which every workload, pod and Service of a release carries.
INSTANCE_LABEL = "app.kubernetes.io/instance"
PART_OF_LABEL = "app.kubernetes.io/part-of"
PART_OF = "cs-workers"
COMPONENT_LABEL = "app.kubernetes.io/component"
MODEL_LABEL = "compute.studio/model"

# A model's components, in the table's column order, with their column headers.
MODEL_COMPONENTS = {"model-io": "IO", "model-sim": "SIM", "dask-scheduler": "SCHEDULER", "dask-worker": "WORKERS"}
REDIS, GATEWAY = "redis", "gateway"

# Exit statuses (docs/status.md); 1 and 2 are every command's (an error, bad input).
EXIT_HEALTHY, EXIT_ERROR, EXIT_BAD_INPUT, EXIT_UNHEALTHY = 0, 1, 2, 3


def release_selector(release: str) -> str:
    """The label selector of every workload, pod and ConfigMap of `release`."""
    return f"{INSTANCE_LABEL}={release},{PART_OF_LABEL}={PART_OF}"


def image_tag(image: str) -> str:
    """The tag of an image reference (`registry:5000/project/name:tag@sha256:...` -> `tag`);
    `latest` when it names none, as a container runtime reads it; the digest when it has only one."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        return last.rsplit(":", 1)[1]
    return digest if digest else "latest"


@dataclass(frozen=True)
class Workload:
    """One Deployment (or StatefulSet) of the release, or in local mode the processes of one.

    `tags`: the image tags its running pods run, sorted (empty when none runs). `stuck`: why its
    rollout is stuck (the Deployment's Progressing condition), or None.
    """

    kind: str
    name: str
    component: str
    model: str | None
    desired: int
    ready: int
    tags: tuple[str, ...] = ()
    updated: int | None = None
    stuck: str | None = None

    @property
    def healthy(self) -> bool:
        return self.ready >= self.desired and self.stuck is None

    def counts(self) -> str:
        return f"{self.ready}/{self.desired}"

    def problem(self) -> str | None:
        """One phrase saying what is wrong, or None."""
        if self.stuck is not None:
            return f"{self.component} rollout stuck: {self.stuck}"
        if self.ready < self.desired:
            return f"{self.component} {self.ready}/{self.desired} pods ready"
        return None

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "ready": self.ready, "desired": self.desired,
                "updated": self.updated, "tags": list(self.tags), "stuck": self.stuck, "healthy": self.healthy}


@dataclass(frozen=True)
class LastResult:
    """The last result a model's workers delivered (or tried to), as the gateway reports it."""

    job_id: str | None
    status: str  # SUCCESS or FAIL: the envelope's
    kind: str  # inputs (a parse) or outputs (a sim): the webserver endpoint it went to
    delivered: bool  # False: the webserver never took it
    at: float  # Unix seconds

    def describe(self, now: float) -> str:
        what = {"outputs": "sim", "inputs": "parse"}.get(self.kind, self.kind)
        return f"{self.status} {what} {_age(now - self.at)} ago" + ("" if self.delivered else ", NOT DELIVERED")

    def as_json(self, now: float) -> dict[str, Any]:
        return {"job_id": self.job_id, "status": self.status, "kind": self.kind, "delivered": self.delivered,
                "at": self.at, "age_seconds": round(max(now - self.at, 0.0), 3)}


@dataclass(frozen=True)
class Load:
    """A model's jobs queued and running (inputs: inputs/parse/version jobs; sim: sims)."""

    queued_inputs: int
    queued_sims: int
    running_inputs: int
    running_sims: int
    last_result: LastResult | None

    def as_json(self, now: float) -> dict[str, Any]:
        return {"queued": {"inputs": self.queued_inputs, "sim": self.queued_sims},
                "running": {"inputs": self.running_inputs, "sim": self.running_sims},
                "last_result": self.last_result.as_json(now) if self.last_result else None}


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ToolError(f"the gateway's /load answer has {where} = {value!r}, not a count")
    return value


def parse_loads(answer: Any) -> dict[str, Load]:
    """The gateway's `GET /load` answer (docs/runtime-contract.md, "Load (gateway)"), by model slug.

    Raises ToolError naming the field when the answer is not that shape (another gateway version).
    """
    if not isinstance(answer, dict) or not isinstance(answer.get("models"), list):
        raise ToolError("the gateway's /load answer has no list of models")
    loads = {}
    for entry in answer["models"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("model"), str):
            raise ToolError(f"the gateway's /load answer has a model entry without its slug: {entry!r:.80}")
        slug = entry["model"]
        queued, running = entry.get("queued"), entry.get("running")
        if not isinstance(queued, dict) or not isinstance(running, dict):
            raise ToolError(f"the gateway's /load answer for {slug} lacks queued or running")
        last = entry.get("last_result")
        result = None
        if last is not None:
            if not isinstance(last, dict) or not isinstance(last.get("at"), (int, float)):
                raise ToolError(f"the gateway's /load answer for {slug} has a last_result without its time")
            if not isinstance(last.get("delivered"), bool):
                raise ToolError(f"the gateway's /load answer for {slug} has a last_result without 'delivered'")
            job_id = last.get("job_id")
            result = LastResult(job_id=job_id if isinstance(job_id, str) else None, status=str(last.get("status")),
                                kind=str(last.get("kind")), delivered=last["delivered"], at=float(last["at"]))
        loads[slug] = Load(
            queued_inputs=_count(queued.get("inputs"), f"{slug} queued.inputs"),
            queued_sims=_count(queued.get("sim"), f"{slug} queued.sim"),
            running_inputs=_count(running.get("inputs"), f"{slug} running.inputs"),
            running_sims=_count(running.get("sim"), f"{slug} running.sim"),
            last_result=result)
    return loads


@dataclass
class ModelStatus:
    """One model: its workloads by component, and its load (None when the gateway did not say)."""

    slug: str
    owner: str | None
    title: str | None
    workloads: dict[str, Workload]
    load: Load | None = None
    routed: bool | None = None  # whether the gateway reported it; None when the gateway did not answer

    @property
    def name(self) -> str:
        """owner/title, as worker_configs and the gateway's routes name a model; the slug otherwise."""
        return f"{self.owner}/{self.title}" if self.owner and self.title else self.slug

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(sorted({tag for workload in self.workloads.values() for tag in workload.tags}))

    def problems(self) -> list[str]:
        found = [problem for component in MODEL_COMPONENTS if component in self.workloads
                 if (problem := self.workloads[component].problem())]
        if self.routed is False:
            found.append("the gateway does not route it (its /load does not list the model)")
        last = self.load.last_result if self.load else None
        if last is not None and not last.delivered:
            found.append(f"its last result (job {last.job_id}) never reached the webserver")
        return found

    @property
    def healthy(self) -> bool:
        return not self.problems()

    def as_json(self, now: float) -> dict[str, Any]:
        return {"name": self.name, "slug": self.slug, "owner": self.owner, "title": self.title,
                "healthy": self.healthy, "problems": self.problems(), "tags": list(self.tags),
                "pods": {component: self.workloads[component].as_json()
                         for component in MODEL_COMPONENTS if component in self.workloads},
                "load": self.load.as_json(now) if self.load else None}


@dataclass
class PartStatus:
    """Redis or the gateway: its workload and whether it answers (`detail` says how, or why not)."""

    name: str
    workload: Workload | None
    answers: bool
    detail: str

    @property
    def healthy(self) -> bool:
        return self.answers and self.workload is not None and self.workload.healthy and self.workload.ready > 0

    def line(self) -> str:
        pods = f"{self.workload.counts()} pods ready" if self.workload else "no workload"
        title = {"redis": "Redis", "gateway": "Gateway"}.get(self.name, self.name)
        return f"{title}: {'healthy' if self.healthy else 'UNHEALTHY'} ({pods}; {self.detail})"

    def as_json(self) -> dict[str, Any]:
        return {"healthy": self.healthy, "answers": self.answers, "detail": self.detail,
                "ready": self.workload.ready if self.workload else 0,
                "desired": self.workload.desired if self.workload else 0,
                "tags": list(self.workload.tags) if self.workload else []}


@dataclass
class ClusterStatus:
    """What `cs-cluster status` reports. `where`: the release and namespace, or local mode's address."""

    where: str
    models: list[ModelStatus]
    redis: PartStatus
    gateway: PartStatus
    now: float = field(default_factory=time.time)
    scope: dict[str, Any] = field(default_factory=dict)  # release/namespace, or local mode's gateway URL

    @property
    def healthy(self) -> bool:
        return self.redis.healthy and self.gateway.healthy and all(model.healthy for model in self.models)

    @property
    def exit_code(self) -> int:
        return EXIT_HEALTHY if self.healthy else EXIT_UNHEALTHY

    def lines(self) -> list[str]:
        """The table for people, then Redis, the gateway, one `!` line per problem and a summary."""
        components = [c for c in MODEL_COMPONENTS if any(c in model.workloads for model in self.models)]
        header = ["MODEL", *(MODEL_COMPONENTS[c] for c in components), "TAG", "QUEUED", "RUNNING", "LAST RESULT"]
        rows = [header]
        for model in self.models:
            pods = [model.workloads[c].counts() if c in model.workloads else "-" for c in components]
            rows.append([model.name, *pods, ",".join(model.tags) or "-", *self._load_cells(model)])
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = [f"Status of {self.where}."]
        if self.models:
            lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                      for row in rows]
        else:
            lines.append("No models.")
        lines += [self.redis.line(), self.gateway.line()]
        lines += [f"! {model.name}: {'; '.join(model.problems())}" for model in self.models if not model.healthy]
        return [*lines, self.summary()]

    def _load_cells(self, model: ModelStatus) -> list[str]:
        load = model.load
        if load is None:
            return ["?", "?", "?"]

        def jobs(sims: int, inputs: int) -> str:
            return f"{sims} (+{inputs} io)" if inputs else str(sims)

        last = load.last_result.describe(self.now) if load.last_result else "-"
        return [jobs(load.queued_sims, load.queued_inputs), jobs(load.running_sims, load.running_inputs), last]

    def summary(self) -> str:
        unhealthy = [model.name for model in self.models if not model.healthy]
        parts = [f"{len(self.models)} model(s), {len(self.models) - len(unhealthy)} healthy",
                 f"Redis {'healthy' if self.redis.healthy else 'unhealthy'}",
                 f"gateway {'healthy' if self.gateway.healthy else 'unhealthy'}"]
        return f"{'Healthy' if self.healthy else 'Unhealthy'}: " + "; ".join(parts) + "."

    def as_json(self) -> dict[str, Any]:
        return {**self.scope, "healthy": self.healthy, "time": round(self.now, 3),
                "redis": self.redis.as_json(), "gateway": self.gateway.as_json(),
                "models": [model.as_json(self.now) for model in self.models]}


def _age(seconds: float) -> str:
    """12s, 3m, 2h, 4d: the largest whole unit, as kubectl prints ages."""
    seconds = max(seconds, 0.0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{math.floor(seconds / size)}{unit}"
    return f"{math.floor(seconds)}s"


def select(models: Sequence[ModelStatus], names: Iterable[str], where: str) -> list[ModelStatus]:
    """The models `--models` names (title or owner/title, exactly, as apply matches them);
    UsageError naming `where` for a name that matches none."""
    from .values import select_models

    return select_models(models, list(names), where=where)


def assemble(workloads: Iterable[Workload], names: Mapping[str, tuple[str, str]],
             loads: Mapping[str, Load] | None) -> tuple[list[ModelStatus], Workload | None, Workload | None]:
    """Group workloads into models (by their model label) and the shared parts; `names` gives
    each slug's (owner, title) (the gateway's routes); `loads` the gateway's answer, or None."""
    models: dict[str, ModelStatus] = {}
    shared: dict[str, Workload] = {}
    for workload in workloads:
        if workload.model:
            owner, title = names.get(workload.model, (None, None))
            model = models.setdefault(workload.model, ModelStatus(workload.model, owner, title, {}))
            model.workloads[workload.component] = workload
        elif workload.component in (REDIS, GATEWAY):
            shared[workload.component] = workload
    for model in models.values():
        if loads is not None:
            model.load = loads.get(model.slug)
            model.routed = model.slug in loads
    ordered = sorted(models.values(), key=lambda model: model.name.lower())
    return ordered, shared.get(REDIS), shared.get(GATEWAY)
