"""Kubernetes resource quantities (500m, 2, 1.5, 512Mi, 7G, 1e3): their value from the Kubernetes
Python client's own parser, kubernetes.utils.parse_quantity, after the grammar the API server
accepts.

Two decisions:
- The grammar comes first, because the client's parser also takes what the API server refuses
  (`1e3m`, a suffix after an exponent; `-1`). It is the chart's: values.schema.yaml's `quantity`
  pattern, which helm checks on every render (tests/chart/test_quantities.py holds the two
  equal, and the chart's own CPU-to-threads conversion to this module's values).
- The client's quantity module is loaded by itself: `import kubernetes.utils` imports the whole
  API client first (0.29 s here, measured with -X importtime, on every `cs-cluster values`) for
  one function that needs only `decimal`.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

# values.schema.yaml's definitions.quantity pattern, verbatim (a test checks), after
# k8s.io/apimachinery's resource.Quantity grammar.
QUANTITY_PATTERN = r"^(\+)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?[0-9]+))?$"
_QUANTITY = re.compile(QUANTITY_PATTERN)


class QuantityError(ValueError):
    """Not a quantity Kubernetes would accept."""


@functools.cache
def _client_parser() -> Callable[[str], Decimal]:
    """kubernetes.utils.parse_quantity, from kubernetes/utils/quantity.py loaded on its own (the
    package's __init__ imports the API client); the ordinary import when that file is not where
    this client version keeps it."""
    loaded = sys.modules.get("kubernetes.utils.quantity")
    if loaded is None:
        package = importlib.util.find_spec("kubernetes")  # finds it without running its __init__
        path = Path(package.origin).parent / "utils" / "quantity.py" if package and package.origin else None
        spec = importlib.util.spec_from_file_location("cs_cluster._kubernetes_quantity", path) if path else None
        if spec is None or spec.loader is None or path is None or not path.is_file():
            from kubernetes.utils import parse_quantity

            return cast(Callable[[str], Decimal], parse_quantity)
        loaded = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loaded)
    return cast(Callable[[str], Decimal], loaded.parse_quantity)


def parse_quantity(value: Any) -> Decimal:
    """The exact value of a quantity, in its unit (CPUs for cpu, bytes for memory), as a Decimal:
    "500m" -> 0.5, "2" -> 2, "1.5" -> 1.5, "512Mi" -> 536870912, "7G" -> 7000000000. A number
    (as YAML reads `cpu: 2` or `cpu: 0.5`) is read as it is written, not as its binary float.
    Raises QuantityError for anything the API server would refuse."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise QuantityError(f"{value!r} is not a quantity (use e.g. 500m, 2, 512Mi, 7G)")
    text = str(value).strip()
    if not _QUANTITY.match(text):
        raise QuantityError(f"{text!r} is not a quantity Kubernetes accepts (use e.g. 500m, 2, 512Mi, 7G)")
    try:
        return Decimal(_client_parser()(text))
    except ValueError as error:  # pragma: no cover - the grammar admits only what the client parses
        raise QuantityError(f"{text!r}: {error}") from None
