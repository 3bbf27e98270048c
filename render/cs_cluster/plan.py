"""`cs-cluster plan`: what an apply would change, per model and per shared part, and whose pods roll.

Two manifests are compared object by object: what the release runs now (its newest revision's
manifest, or the chart rendered for the previous values file) and what apply would install.
Objects belong to a model by their `compute.studio/model` label, the rest to a shared part named
by their component (redis, gateway, ...). Whether pods roll is the Deployment controller's own
rule: a workload rolls exactly when its pod template changes. The descriptions (image tag,
replicas, resources, env, secrets, placement) only name what changed; Secret values are never
read into them, only the names of their keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .objectdiff import ABSENT, FieldChange, diff, differs
from .scheduling import Placement

MODEL_LABEL = "compute.studio/model"
COMPONENT_LABEL = "app.kubernetes.io/component"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet")
# The order descriptions appear in on a model's line.
CATEGORIES = ("image", "replicas", "resources", "env", "secrets", "placement", "config", "labels", "other")
_PLACEMENT_FIELDS = ("nodeSelector", "affinity", "tolerations", "topologySpreadConstraints", "nodeName",
                     "priorityClassName", "schedulerName")
_LONGEST_VALUE = 60

ObjectKey = tuple[str, str]  # (kind, name)


@dataclass(frozen=True)
class Change:
    """One thing that changes, in words; `text` never holds a Secret's value."""

    category: str
    text: str
    object: str


@dataclass
class WorkloadPlan:
    """A workload (Deployment, ...) of a part: its version now and after, and whether it rolls."""

    kind: str
    name: str
    component: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    @property
    def rolls(self) -> bool:
        """The pod template changes: every pod is replaced."""
        return self.before is not None and self.after is not None and differs(
            self.before["spec"].get("template"), self.after["spec"].get("template"))

    @property
    def action(self) -> str:
        if self.before is None:
            return "create"
        if self.after is None:
            return "delete"
        return "update" if differs(self.before, self.after) else "no-op"


@dataclass
class PartPlan:
    """A model (key: its slug) or a shared part (key: its component) and what happens to it."""

    key: str
    name: str
    shared: bool
    action: str = "no-op"
    workloads: list[WorkloadPlan] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)

    @property
    def rolling(self) -> list[str]:
        """Components whose pods roll."""
        return sorted({w.component for w in self.workloads if w.rolls})

    def components(self, action: str) -> list[str]:
        return sorted({w.component for w in self.workloads if w.action == action})

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "key": self.key, "action": self.action, "pods_roll": bool(self.rolling),
                "rolling": self.rolling,
                "rolling_workloads": sorted(f"{w.kind}/{w.name}" for w in self.workloads if w.rolls),
                "changes": [{"category": c.category, "text": c.text, "object": c.object} for c in self.changes]}

    def line(self) -> str:
        """One line for people, e.g. `~ owner/Title: pods roll (model-sim): image tag v1 -> v2`."""
        label = f"{self.name} (shared)" if self.shared else self.name
        if self.action == "create":
            return f"+ {label}: create" + _listed(self.components("create"))
        if self.action == "delete":
            return f"- {label}: destroy" + _listed(self.components("delete"))
        rolls = f"pods roll{_listed(self.rolling)}" if self.rolling else "no pods roll"
        return f"~ {label}: {rolls}: " + "; ".join(change.text for change in self.changes)


def _listed(names: Sequence[str]) -> str:
    return f" ({', '.join(names)})" if names else ""


@dataclass
class Plan:
    """Every part's plan, and where the comparison started from."""

    release: str
    namespace: str
    baseline: str
    parts: list[PartPlan]

    @property
    def changed(self) -> list[PartPlan]:
        return [part for part in self.parts if part.action != "no-op"]

    @property
    def has_changes(self) -> bool:
        return bool(self.changed)

    def workloads(self) -> Iterable[tuple[PartPlan, WorkloadPlan]]:
        for part in self.parts:
            for workload in part.workloads:
                yield part, workload

    def summary(self) -> str:
        models = [part for part in self.parts if not part.shared]
        shared = [part for part in self.parts if part.shared]
        if not self.has_changes:
            return f"No changes: {len(models)} models and the shared parts stay as they are."
        count = {action: sum(part.action == action for part in models) for action in ("create", "update", "delete")}
        rolling = [part.name for part in self.parts if part.rolling]
        shared_changed = [part.name for part in shared if part.action != "no-op"]
        return (f"Plan: {count['create']} model(s) to add, {count['update']} to change, {count['delete']} to destroy, "
                f"{sum(part.action == 'no-op' for part in models)} unchanged; "
                f"pods roll for {', '.join(rolling) if rolling else 'none'}; "
                f"shared parts {'to change: ' + ', '.join(shared_changed) if shared_changed else 'unchanged'}.")


def _index(objects: Iterable[Mapping[str, Any]]) -> dict[ObjectKey, dict[str, Any]]:
    return {(str(o.get("kind")), str((o.get("metadata") or {}).get("name"))): dict(o) for o in objects}


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def _part_key(obj: Mapping[str, Any]) -> tuple[bool, str]:
    labels = _labels(obj)
    if labels.get(MODEL_LABEL):
        return False, labels[MODEL_LABEL]
    return True, labels.get(COMPONENT_LABEL) or "chart"


def _model_name(slug: str, *values: Mapping[str, Any]) -> str:
    """owner/title from whichever values know the model; the slug otherwise."""
    for given in values:
        entry = ((given or {}).get("models") or {}).get(slug) or {}
        if entry.get("owner") and entry.get("title"):
            return f"{entry['owner']}/{entry['title']}"
    return slug


def _short(value: Any) -> str:
    if value is ABSENT or value is None:
        return "none"
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= _LONGEST_VALUE and not isinstance(value, (dict, list)) else "(changed)"


def _image_text(before: Any, after: Any) -> str:
    def split(image: Any) -> tuple[str, str]:
        text = str(image)
        name, _, tag = text.rpartition(":")
        return (name, tag) if name and "/" not in tag else (text, "")

    (old_name, old_tag), (new_name, new_tag) = split(before), split(after)
    if before is not ABSENT and after is not ABSENT and old_name == new_name:
        return f"image tag {old_tag or 'none'} -> {new_tag or 'none'}"
    return f"image {_short(before)} -> {_short(after)}"


def _secret_changes(name: str, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> list[Change]:
    """Keys added, removed or changed: never the values."""
    def keys(obj: Mapping[str, Any] | None) -> dict[str, Any]:
        if obj is None:
            return {}
        return {**(obj.get("stringData") or {}), **(obj.get("data") or {})}

    old, new = keys(before), keys(after)
    changes = []
    for key in sorted(set(old) | set(new)):
        if key not in old:
            what = "added"
        elif key not in new:
            what = "removed"
        elif old[key] != new[key]:
            what = "changed"
        else:
            continue
        changes.append(Change("secrets", f"secret {name} key {key} {what}", f"Secret/{name}"))
    if changes and (after or {}).get("metadata", {}).get("labels", {}).get(MODEL_LABEL):
        # Env from a Secret is read when a container starts: pods that do not roll keep the old values.
        changes[-1] = Change("secrets", changes[-1].text + " (pods see it when they restart)", f"Secret/{name}")
    return changes


def _env_change(component: str, path: tuple[str, ...], change: FieldChange, workload: Mapping[str, Any]) -> Change:
    """A change under containers[c].env[NAME] or envFrom: secret references by name only."""
    where = f"{workload.get('kind')}/{(workload.get('metadata') or {}).get('name')}"
    if path[0] == "envFrom":
        return Change("secrets", f"{component} envFrom changed", where)
    variable = path[1].strip("[]") if len(path) > 1 else "env"
    entry_before = change.before if len(path) == 2 else None
    entry_after = change.after if len(path) == 2 else None
    mentions_secret = any(isinstance(e, dict) and "secretKeyRef" in (e.get("valueFrom") or {})
                          for e in (entry_before, entry_after)) or "secretKeyRef" in path
    if mentions_secret:
        return Change("secrets", f"{component} env {variable} from a secret changed", where)
    if len(path) == 2:
        what = "added" if change.before is ABSENT else "removed" if change.after is ABSENT else "changed"
        return Change("env", f"{component} env {variable} {what}", where)
    if path[-1] == "value":
        return Change("env", f"{component} env {variable} {_short(change.before)} -> {_short(change.after)}", where)
    return Change("env", f"{component} env {variable} changed", where)


def _workload_changes(component: str, before: dict[str, Any], after: dict[str, Any]) -> list[Change]:
    where = f"{after.get('kind')}/{after['metadata']['name']}"
    changes: list[Change] = []
    placement_changed = False
    for change in diff(before, after):
        path = change.path
        if path[:3] == ("spec", "template", "spec"):
            rest = path[3:]
            if rest and rest[0] in _PLACEMENT_FIELDS:
                placement_changed = True
            elif len(rest) >= 3 and rest[0] in ("containers", "initContainers"):
                container_field = rest[2:]
                if container_field[0] == "image":
                    changes.append(Change("image", _image_text(change.before, change.after), where))
                elif container_field[0] == "resources":
                    detail = ".".join(container_field[1:]) or "resources"
                    changes.append(Change("resources", f"{component} {detail} {_short(change.before)} -> "
                                                       f"{_short(change.after)}", where))
                elif container_field[0] in ("env", "envFrom"):
                    changes.append(_env_change(component, container_field, change, after))
                else:
                    changes.append(Change("other", f"{component} {'.'.join(container_field)} changed", where))
            else:
                changes.append(Change("other", f"{component} pod {'.'.join(rest) or 'spec'} changed", where))
        elif path == ("spec", "replicas"):
            changes.append(Change("replicas", f"{component} replicas {_short(change.before)} -> "
                                              f"{_short(change.after)}", where))
        elif path[:2] == ("spec", "template"):
            detail = ".".join(path[3:]) if len(path) > 3 else ".".join(path[2:])
            changes.append(Change("other", f"{component} pod {path[2] if len(path) > 2 else 'template'} "
                                           f"{detail} changed", where))
        else:
            changes.append(_generic_change(where, change))
    if placement_changed:
        old = Placement.from_pod_spec(before["spec"]["template"]["spec"])
        new = Placement.from_pod_spec(after["spec"]["template"]["spec"])
        if old.describe() != new.describe():
            text = f"{component} placement {old.describe()} -> {new.describe()}"
        else:
            text = f"{component} tolerations changed" if old.tolerations != new.tolerations else \
                f"{component} placement changed"
        changes.append(Change("placement", text, where))
    return changes


def _generic_change(where: str, change: FieldChange) -> Change:
    path = change.path
    if path[:2] in (("metadata", "labels"), ("metadata", "annotations")) and len(path) == 3:
        return Change("labels", f"{path[1][:-1]} {path[2]} {_short(change.before)} -> {_short(change.after)}", where)
    if path[:1] in (("data",), ("binaryData",)) and where.startswith("ConfigMap/"):
        return Change("config", f"{where} {'.'.join(path[1:]) or 'data'} changed", where)
    return Change("other", f"{where} {change.dotted} {_short(change.before)} -> {_short(change.after)}", where)


def _object_changes(key: ObjectKey, before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[Change]:
    kind, name = key
    where = f"{kind}/{name}"
    component = _labels(after or before or {}).get(COMPONENT_LABEL, kind)
    if kind == "Secret":
        changes = _secret_changes(name, before, after)
        if before is None:
            changes.insert(0, Change("secrets", f"secret {name} created", where))
        elif after is None:
            changes = [Change("secrets", f"secret {name} removed", where)]
        else:
            outside = [c for c in diff({**before, "data": None, "stringData": None},
                                       {**after, "data": None, "stringData": None})]
            changes += [_generic_change(where, c) for c in outside]
        return changes
    if before is None:
        return [Change("other", f"{where} created", where)]
    if after is None:
        return [Change("other", f"{where} removed", where)]
    if kind in WORKLOAD_KINDS:
        return _workload_changes(component, before, after)
    return [_generic_change(where, change) for change in diff(before, after)]


def _dedupe(changes: Iterable[Change]) -> list[Change]:
    seen: dict[str, Change] = {}
    for change in changes:
        seen.setdefault(change.text, change)
    return sorted(seen.values(), key=lambda c: CATEGORIES.index(c.category))


def make_plan(before_objects: Iterable[Mapping[str, Any]], after_objects: Iterable[Mapping[str, Any]], *,
              release: str, namespace: str, baseline: str, values_before: Mapping[str, Any] | None = None,
              values_after: Mapping[str, Any] | None = None) -> Plan:
    """Compare two sets of rendered objects of one release. `values_*` only name models."""
    before, after = _index(before_objects), _index(after_objects)
    parts: dict[tuple[bool, str], PartPlan] = {}
    seen_in: dict[tuple[bool, str], set[str]] = {}
    for key in [*before, *(k for k in after if k not in before)]:
        old, new = before.get(key), after.get(key)
        shared, part_key = _part_key(new or old or {})
        part = parts.get((shared, part_key))
        if part is None:
            name = part_key if shared else _model_name(part_key, values_after or {}, values_before or {})
            part = parts[(shared, part_key)] = PartPlan(key=part_key, name=name, shared=shared)
        seen_in.setdefault((shared, part_key), set()).update(
            side for side, obj in (("before", old), ("after", new)) if obj is not None)
        if key[0] in WORKLOAD_KINDS:
            component = _labels(new or old or {}).get(COMPONENT_LABEL, key[0])
            part.workloads.append(WorkloadPlan(key[0], key[1], component, old, new))
        if old is None or new is None or differs(old, new):
            part.changes += _object_changes(key, old, new)
    for identity, part in parts.items():
        sides = seen_in[identity]
        if sides == {"after"}:
            part.action = "create"
        elif sides == {"before"}:
            part.action = "delete"
        elif part.changes:
            part.action = "update"
        part.changes = _dedupe(part.changes)
    ordered = sorted(parts.values(), key=lambda p: (p.shared, p.name.lower()))
    return Plan(release=release, namespace=namespace, baseline=baseline, parts=ordered)
