"""The routing table: the contract's format, and reloads without a restart."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cs_runtime.errors import RoutingTableError, UnknownModelError
from cs_runtime.routing import RoutingTable, parse_routing_table

from .support import CELERY_SUM, DASK_PI, route_entry, write_routes

# Verbatim from docs/runtime-contract.md.
CONTRACT_EXAMPLE = """
{"models": {"pslmodels-ogusa": {
  "owner": "PSLmodels", "title": "OG-USA", "clusterType": "dask",
  "inputsQueue": "pslmodels_ogusa_inputs_queue", "simQueue": "pslmodels_ogusa_queue",
  "tasks": {"inputs_get": "pslmodels_ogusa_tasks.inputs_get",
            "inputs_parse": "pslmodels_ogusa_tasks.inputs_parse",
            "inputs_version": "pslmodels_ogusa_tasks.inputs_version",
            "sim": "pslmodels_ogusa_tasks.sim"},
  "daskSchedulerAddress": "tcp://RELEASE-pslmodels-ogusa-dask-scheduler:8786",
  "simTimeLimit": 3600, "inputsTimeLimit": 10}}}
"""


class Clock:
    """A clock the test moves by hand (for the periodic re-check)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_contract_example_parses() -> None:
    route = parse_routing_table(CONTRACT_EXAMPLE)["pslmodels-ogusa"]
    assert route.tasks["sim"] == "pslmodels_ogusa_tasks.sim"
    assert route.inputs_queue == "pslmodels_ogusa_inputs_queue" and route.sim_queue == "pslmodels_ogusa_queue"
    assert (route.sim_time_limit, route.inputs_time_limit) == (3600, 10)
    assert route.dask_scheduler_address == "tcp://RELEASE-pslmodels-ogusa-dask-scheduler:8786"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: e.pop("simQueue"), "'simQueue' is missing"),
        (lambda e: e["tasks"].pop("inputs_version"), "tasks.inputs_version is missing"),
        (lambda e: e.update(simTimeLimit=-1), "'simTimeLimit' must be a positive"),
        (lambda e: e.update(simTimeLimit=True), "'simTimeLimit' is missing or has the wrong type"),
        (lambda e: e.update(clusterType="spark"), "unknown clusterType"),
        (lambda e: e.update(title="Other"), "key must be 'pslmodels-other'"),
        (lambda e: e.update(daskSchedulerAddress=8786), "daskSchedulerAddress must be a string or null"),
    ],
)
def test_bad_entries_are_refused_with_the_reason(mutate: object, message: str) -> None:
    table = json.loads(CONTRACT_EXAMPLE)
    mutate(table["models"]["pslmodels-ogusa"])  # type: ignore[operator]
    with pytest.raises(RoutingTableError, match=message):
        parse_routing_table(json.dumps(table))


@pytest.mark.parametrize("text", ["", "{", "[]", '{"models": []}'])
def test_bad_tables_are_refused(text: str) -> None:
    with pytest.raises(RoutingTableError):
        parse_routing_table(text)


def test_lookup_uses_the_cleaned_owner_and_title(tmp_path: Path) -> None:
    table = RoutingTable(write_routes(tmp_path / "routes.json", route_entry(CELERY_SUM)))
    assert table.lookup("CS-Examples", "celery_sum").slug == "csexamples-celerysum"
    with pytest.raises(UnknownModelError, match="unknown model cs-examples/Dask-Pi"):
        table.lookup("cs-examples", "Dask-Pi")


def test_a_new_model_is_seen_without_a_restart(tmp_path: Path) -> None:
    path = write_routes(tmp_path / "routes.json", route_entry(CELERY_SUM))
    table = RoutingTable(path)
    assert set(table.routes()) == {"csexamples-celerysum"}
    write_routes(path, route_entry(CELERY_SUM), route_entry(DASK_PI, "dask", "tcp://s:8786"))
    assert set(table.routes()) == {"csexamples-celerysum", "csexamples-daskpi"}


def test_same_size_same_mtime_edit_is_seen_at_the_periodic_recheck(tmp_path: Path) -> None:
    path = write_routes(tmp_path / "routes.json", route_entry(CELERY_SUM, inputs_time_limit=10))
    clock = Clock()
    table = RoutingTable(path, recheck_seconds=5, clock=clock)
    assert table.routes()["csexamples-celerysum"].inputs_time_limit == 10
    stat = path.stat()
    path.write_text(path.read_text().replace('"inputsTimeLimit": 10', '"inputsTimeLimit": 20'))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # an edit the stat cannot see
    if (path.stat().st_ino, path.stat().st_size) == (stat.st_ino, stat.st_size):
        assert table.routes()["csexamples-celerysum"].inputs_time_limit == 10
    clock.now = 6
    assert table.routes()["csexamples-celerysum"].inputs_time_limit == 20


def test_a_broken_update_keeps_the_last_good_table(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_routes(tmp_path / "routes.json", route_entry(CELERY_SUM))
    table = RoutingTable(path)
    table.routes()
    path.write_text('{"models": {"x-y": {}}}')
    assert set(table.routes()) == {"csexamples-celerysum"}
    assert "refused (keeping the previous table)" in caplog.text
    path.unlink()
    assert set(table.routes()) == {"csexamples-celerysum"}


def test_no_table_at_all_is_an_error_naming_the_file(tmp_path: Path) -> None:
    table = RoutingTable(tmp_path / "missing.json")
    with pytest.raises(RoutingTableError, match=r"missing\.json"):
        table.routes()
