"""Kubernetes quantities, one rule (issue 11). The grammar is values.schema.yaml's `quantity`
(helm checks it on every render), and cs_cluster.quantities checks the same pattern; a quantity's
value is the Kubernetes Python client's (kubernetes.utils.parse_quantity). The chart's own
arithmetic on quantities, Dask's --nthreads from a CPU limit, is held to that value for every
kind of quantity the API server accepts: the whole CPUs, at least 1."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import pytest
import yaml
from helpers import CHART, model, values_with
from kubernetes.utils import parse_quantity as client_parse_quantity

from cs_cluster import render_chart
from cs_cluster.errors import ValuesRefusedError
from cs_cluster.quantities import QUANTITY_PATTERN, QuantityError, parse_quantity

# Each form of the grammar: plain, fractional, every decimal suffix, exponents (signed, either
# case), binary suffixes (whole and fractional, exact and not), and numbers as values files give them.
CPUS: list[Any] = [
    "2000000u", "0.5", "1500m", "2", "1e3", "2E0", "1E3", "+2", ".5", "2.", "3k", "100n",
    "1999999999n", "2999999999999999999n", "2.9999", "1e-1", "1e+2", "12.5e1", "0", "0.001M",
    "1Ki", "1.5Ki", "0.0029296875Ki", "2.0009765625Ki", "0.001Mi",
    2, 0.5, 1.5, 1000000, 1e-7, 1e21,
]
# What the API server refuses (k8s.io/apimachinery's parseQuantityString), although the client's
# parser reads some of it (1e3m as 1, -1 as -1): the reason the grammar is checked first.
REFUSED = ["1e3m", "1ki", "-1", "2 cpus", "1.5.5", "1Mi2", "e3", "0x10", "1K", ""]


def dask_worker_threads(cpu: Any) -> str:
    values = values_with(model("PSLmodels", "OG-USA", "dask",
                               daskWorker={"resources": {"requests": {"cpu": cpu}, "limits": {"cpu": cpu}}}))
    worker = render_chart(values).one("Deployment", component="dask-worker", model="pslmodels-ogusa")
    command: list[str] = worker["spec"]["template"]["spec"]["containers"][0]["command"]
    return command[command.index("--nthreads") + 1]


@pytest.mark.parametrize("cpu", CPUS, ids=[repr(cpu) for cpu in CPUS])
def test_threads_are_the_whole_cpus_of_the_limit(cpu: Any) -> None:
    value = parse_quantity(cpu)
    assert value == Decimal(client_parse_quantity(str(cpu)))
    assert dask_worker_threads(cpu) == str(max(1, math.floor(value)))


@pytest.mark.parametrize("text", REFUSED, ids=[repr(text) for text in REFUSED])
def test_what_kubernetes_refuses_is_refused_on_both_sides(text: str) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(text)
    with pytest.raises(ValuesRefusedError, match="cpu"):
        dask_worker_threads(text)


def test_the_grammar_is_the_charts() -> None:
    schema = yaml.safe_load((CHART / "values.schema.yaml").read_text())["definitions"]["quantity"]
    assert [form.get("pattern") for form in schema["oneOf"] if form["type"] == "string"] == [QUANTITY_PATTERN]
