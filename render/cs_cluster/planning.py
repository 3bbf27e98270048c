"""The two sides of a plan, fetched: what apply would install, and what runs now.

Against the cluster, both come from helm: the release's newest revision (`helm status`: its
manifest and values) and `helm upgrade --install --dry-run=server` with exactly the files and flags
apply would pass (the chart's generated Secrets are looked up there, as in a real upgrade, so
they do not show as changed). Without a cluster (`--offline`), both are `helm template` renders of
this chart: the previous values file against the new values. Generated Secret values are random
in every such render, so keys whose value differs between two renders of the same previous
values are compared by name only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import helm, release
from .capacity import CapacityReport, check_capacity, read_cluster
from .errors import UsageError
from .plan import Plan, make_plan
from .render import parse_manifests

_GENERATED = "(generated)"


@dataclass
class PlanResult:
    """A plan and its capacity check (None when not run, with the reason in `capacity_note`)."""

    plan: Plan
    capacity: CapacityReport | None
    capacity_note: str = ""

    def lines(self) -> list[str]:
        lines = [f"Comparing with {self.plan.baseline}."]
        lines += [part.line() for part in self.plan.changed]
        lines += self.capacity.lines() if self.capacity else [f"Capacity: not checked ({self.capacity_note})."]
        return [*lines, self.plan.summary()]

    def as_json(self) -> dict[str, Any]:
        plan = self.plan
        counts = {action: sum(p.action == action for p in plan.parts if not p.shared)
                  for action in ("create", "update", "delete", "no-op")}
        return {
            "release": plan.release, "namespace": plan.namespace, "baseline": plan.baseline,
            "changed": plan.has_changes,
            "models": [p.as_json() for p in plan.parts if not p.shared],
            "shared": [p.as_json() for p in plan.parts if p.shared],
            "summary": {"add": counts["create"], "change": counts["update"], "destroy": counts["delete"],
                        "unchanged": counts["no-op"], "pods_roll": [p.name for p in plan.parts if p.rolling]},
            "capacity": self.capacity.as_json() if self.capacity else {"checked": False, "reason": self.capacity_note},
        }


def against_release(upgrade_command: Sequence[str], *, release_name: str, namespace: str,
                    values_after: dict[str, Any]) -> Plan:
    """`upgrade_command` (helm upgrade --install ..., without --wait) against the live release."""
    binary = upgrade_command[0]
    live = release.live_release(release_name, namespace, binary)
    after = parse_manifests(release.dry_run_manifest(upgrade_command))
    if live is None:
        return make_plan([], after, release=release_name, namespace=namespace, values_after=values_after,
                         baseline=f"nothing: no release {release_name} in namespace {namespace} yet")
    baseline = f"release {release_name} revision {live.revision} ({live.status}, {live.chart}) in namespace {namespace}"
    return make_plan(parse_manifests(live.manifest), after, release=release_name, namespace=namespace,
                     baseline=baseline, values_before=live.config, values_after=values_after)


def against_files(previous: Sequence[Path], desired: Sequence[Path], extra: Sequence[str], *, chart: Path,
                  release_name: str, namespace: str, binary: str | None, values_before: dict[str, Any],
                  values_after: dict[str, Any]) -> Plan:
    """The chart rendered for `previous` values files against `desired` ones, each followed by the
    same `extra` helm arguments."""
    if not previous:
        raise UsageError("plan --offline compares with the previous values file: give --previous FILE, "
                         "or keep the values file apply writes (--values-file)")

    def render(files: Sequence[Path]) -> list[dict[str, Any]]:
        return parse_manifests(helm.template(values_files=files, release=release_name, namespace=namespace,
                                             chart=chart, helm=binary, extra=extra))

    before, again, after = render(previous), render(previous), render(desired)
    _mask_generated(before, again, after)
    return make_plan(before, after, release=release_name, namespace=namespace,
                     baseline=f"the chart rendered for {', '.join(map(str, previous))} (--offline)",
                     values_before=values_before, values_after=values_after)


def _secrets(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o.get("kind") == "Secret"}


def _mask_generated(before: list[dict[str, Any]], again: list[dict[str, Any]], after: list[dict[str, Any]]) -> None:
    """Give keys generated anew by each render (they differ between `before` and `again`) one
    placeholder value in `before` and `after`, so that only their names are compared."""
    second, desired = _secrets(again), _secrets(after)
    for name, secret in _secrets(before).items():
        for key, value in (secret.get("data") or {}).items():
            if ((second.get(name) or {}).get("data") or {}).get(key) != value:
                secret["data"][key] = _GENERATED
                if key in ((desired.get(name) or {}).get("data") or {}):
                    desired[name]["data"][key] = _GENERATED
    # A model added since: its generated keys have no counterpart in `before`, so they show as added.


def capacity(plan: Plan) -> CapacityReport:
    nodes, pods = read_cluster()
    return check_capacity(plan, nodes, pods)
