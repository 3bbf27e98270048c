"""Names follow docs/runtime-contract.md exactly: the chart computes the same ones."""

from __future__ import annotations

import dataclasses
import re
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cs_runtime.gateway import create_app
from cs_runtime.names import ModelNames, clean, model_slug
from cs_runtime.settings import GatewaySettings

from .support import RedisServer, route_entry, write_routes


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


# Names a webserver may send, as written (C/S pasted them into the URL) and percent-encoded.
ROUTABLE = ["OG-USA", "Tax Brain", "Ünïcode-Model", "a+b", "a&b", "a.b", "a~b", "(x)", "a:b", "a@b", "a;b", "a=b",
            "a'b", "a\\b", "a,b", "a!b", "a*b", "a$b"]
UNROUTABLE = ["a/b", "a?b", "a#b", "a%41b"]


@pytest.mark.parametrize("title", ROUTABLE + UNROUTABLE)
def test_the_config_accepts_a_name_exactly_when_the_gateway_can_route_it(
    title: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    """The worker_config refuses an owner or title the gateway could not route to (issue 10,
    item 9); every name it accepts reaches its model, sent raw or percent-encoded."""
    from cs_cluster.config import parse_worker_config
    from cs_cluster.errors import ConfigError

    try:
        parse_worker_config([{"owner": "cs-tests", "title": title}], "worker_config.yaml")
        accepted = True
    except ConfigError as error:
        assert "could never route to it" in str(error)
        accepted = False
    names = ModelNames("cs-tests", title)
    routes = write_routes(tmp_path / "routes.json", route_entry(names))
    gateway = create_app(GatewaySettings(routing_table_path=routes, redis_url=redis_server.url)).test_client()
    job_id = uuid.uuid4()

    def routed(path_title: str) -> bool:
        answer = gateway.get(f"/cs-tests/{path_title}/query/{job_id}").get_json()
        # Reaching the model's route: the job id is unknown to it (not the model, not the URL).
        return answer == {"error": f"unknown job {job_id} for this model"}

    routable = routed(title) and routed(quote(title, safe=""))
    assert accepted == routable == (title in ROUTABLE)


def test_model_names_are_values() -> None:
    """Names are computed once per model and shared; none can change under a worker or the gateway."""
    names = ModelNames("PSLmodels", "OG-USA")
    with pytest.raises(dataclasses.FrozenInstanceError):
        names.owner = "x"  # type: ignore[misc]
