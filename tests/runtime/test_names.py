"""Names follow docs/runtime-contract.md exactly: the chart computes the same ones."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from cs_runtime.names import ModelNames, clean, model_slug


def test_contract_examples() -> None:
    names = ModelNames("PSLmodels", "OG-USA")
    assert clean("OG-USA") == "ogusa"
    assert names.key == "pslmodels_ogusa"
    assert names.slug == "pslmodels-ogusa" == model_slug("PSLmodels", "OG-USA")
    assert names.inputs_queue == "pslmodels_ogusa_inputs_queue"
    assert names.sim_queue == "pslmodels_ogusa_queue"
    assert [names.task(kind) for kind in ("inputs_get", "inputs_parse", "inputs_version", "sim")] == [
        "pslmodels_ogusa_tasks.inputs_get",
        "pslmodels_ogusa_tasks.inputs_parse",
        "pslmodels_ogusa_tasks.inputs_version",
        "pslmodels_ogusa_tasks.sim",
    ]
    assert names.queue_for("sim") == names.sim_queue
    assert names.queue_for("inputs_parse") == names.inputs_queue


def test_example_models() -> None:
    assert ModelNames("cs-examples", "Celery-Sum").key == "csexamples_celerysum"
    assert ModelNames("cs-examples", "Dask-Pi").slug == "csexamples-daskpi"


@given(st.text())
def test_clean_keeps_lowercase_ascii_alphanumerics_only(word: str) -> None:
    cleaned = clean(word)
    assert re.fullmatch(r"[a-z0-9]*", cleaned)
    assert clean(cleaned) == cleaned


@given(st.text(), st.text())
def test_runtime_and_chart_tooling_agree(owner: str, title: str) -> None:
    """render/cs_cluster computes the chart's names; both sides must give the same."""
    from cs_cluster import names as chart_names
    assert clean(owner) == chart_names.clean(owner)
    assert model_slug(owner, title) == chart_names.model_slug(owner, title)
    assert ModelNames(owner, title).inputs_queue == chart_names.inputs_queue(owner, title)
    assert ModelNames(owner, title).sim_queue == chart_names.sim_queue(owner, title)
