"""Field-by-field differences between two versions of a Kubernetes object, as rendered.

Lists of named items (containers, env, volumes, ports) are compared by name, so a variable added
in the middle of `env` is one change, not a shifted list. Resource quantities are compared by
value, as the API server stores them (`cpu: 1` and `cpu: "1"`, `1000m` and `1` are the same), so
only differences the cluster would see count.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .quantities import QuantityError, parse_quantity


class _Absent:
    """The side of a change where the field is not set."""

    def __repr__(self) -> str:
        return "absent"


ABSENT: Any = _Absent()

Path = tuple[str, ...]


@dataclass(frozen=True)
class FieldChange:
    """One field that differs. Items of named lists appear in `path` as `[name]`."""

    path: Path
    before: Any
    after: Any

    @property
    def dotted(self) -> str:
        return ".".join(self.path).replace(".[", "[")


def _named(items: list[Any]) -> dict[str, Any] | None:
    """A list of mappings with unique `name`s, by name; None for any other list."""
    if not items or not all(isinstance(item, dict) and isinstance(item.get("name"), str) for item in items):
        return None
    by_name = {item["name"]: item for item in items}
    return by_name if len(by_name) == len(items) else None


def _quantity(value: Any) -> Decimal | None:
    try:
        return parse_quantity(value)
    except QuantityError:
        return None


def _same_leaf(path: Path, before: Any, after: Any) -> bool:
    if before == after and type(before) is type(after):
        return True
    if len(path) >= 2 and path[-2] in ("requests", "limits"):
        first, second = _quantity(before), _quantity(after)
        return first is not None and first == second
    return False


def diff(before: Any, after: Any, path: Path = ()) -> list[FieldChange]:
    """Every field that differs between `before` and `after` (either may be ABSENT)."""
    if isinstance(before, dict) and isinstance(after, dict):
        changes: list[FieldChange] = []
        for key in [*before, *(k for k in after if k not in before)]:
            changes += diff(before.get(key, ABSENT), after.get(key, ABSENT), (*path, str(key)))
        return changes
    if isinstance(before, list) and isinstance(after, list):
        named_before, named_after = _named(before), _named(after)
        if named_before is not None and named_after is not None:
            return [change for key in [*named_before, *(k for k in named_after if k not in named_before)]
                    for change in diff(named_before.get(key, ABSENT), named_after.get(key, ABSENT),
                                       (*path, f"[{key}]"))]
        if len(before) == len(after):
            return [change for index, (first, second) in enumerate(zip(before, after, strict=True))
                    for change in diff(first, second, (*path, f"[{index}]"))]
    if _same_leaf(path, before, after):
        return []
    return [FieldChange(path, before, after)]


def differs(before: Any, after: Any) -> bool:
    return bool(diff(before, after))
