"""The render harness itself: it must reject what the strict schemas reject."""

from __future__ import annotations

import copy

import pytest

from cs_cluster import ManifestError, RenderedChart
from cs_cluster.render import validate_objects


def test_a_valid_render_passes_and_lookups_work(example_chart: RenderedChart) -> None:
    validate_objects(example_chart.objects, ["1.33", "1.37"])
    assert example_chart.one("Service", component="gateway")["metadata"]["name"] == "cs-workers-gateway"
    with pytest.raises(LookupError):
        example_chart.one("Deployment")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["spec"].update(replica=2), "'replica' was unexpected"),
        (lambda d: d["spec"].update(replicas="two"), "'two' is not of type 'integer'"),
        (lambda d: d["spec"]["template"]["spec"]["containers"][0].update(imagePullPolicy=7), "7 is not of type"),
        (lambda d: d.update(apiVersion="apps/v9"), "no Kubernetes 1.33 schema"),
    ],
)
def test_invalid_objects_are_rejected(example_chart: RenderedChart, change, message: str) -> None:  # type: ignore[no-untyped-def]
    deployment = copy.deepcopy(example_chart.one("Deployment", component="gateway"))
    change(deployment)
    with pytest.raises(ManifestError, match=message):
        validate_objects([deployment], ["1.33"])
