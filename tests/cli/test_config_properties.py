"""Property: any worker_config either renders schema-valid manifests or fails cleanly.

Hypothesis generates configs near the valid ones (right keys, wrong values, odd names, stray
keys). `cs-cluster template` must then exit 0 with manifests that validate against the strict
Kubernetes schemas, or exit 2 with one line on stderr and nothing on stdout; never a traceback,
never helm's own failure (exit 1), which would mean the converter let through what the chart rejects.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cs_cluster.cli import main

names = st.one_of(
    st.sampled_from(["PSLmodels", "OG-USA", "Tax-Brain", "hdoupe", "a", "--", "", "Ünïcode-Modél", "x" * 70]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12),
)
quantities = st.one_of(
    st.sampled_from(["1", "500m", "2", "0.5", "1.5", "7G", "512Mi", "1e3", "two", "-1", "1Gi", "500m ", "", "10x"]),
    st.integers(-2, 64),
    st.floats(-1, 64, allow_nan=False),
    st.booleans(),
)
resource_lists = st.dictionaries(st.sampled_from(["cpu", "memory", "gpu"]), quantities, max_size=2)
scalars = st.one_of(st.integers(-5, 5), st.text(max_size=6), st.booleans(), st.none(), st.floats(allow_nan=False))
flat_maps = st.one_of(
    st.dictionaries(st.sampled_from(["BUILD_NUM", "API_KEY", "1BAD", "ok_name", "with space"]), scalars, max_size=3),
    st.just({"NESTED": {"a": 1}}),
    st.just(["not", "a", "map"]),
)


@st.composite
def models(draw: st.DrawFn) -> dict[str, Any]:
    entry: dict[str, Any] = {"owner": draw(names), "title": draw(names)}
    optional = {
        "cluster_type": st.sampled_from(["dask", "single-core", "celery", "spark", 1, None]),
        "replicas": st.one_of(st.integers(-2, 4), st.floats(0, 3, allow_nan=False), st.text(max_size=3),
                              st.booleans()),
        "resources": st.one_of(st.fixed_dictionaries({}, optional={"requests": resource_lists,
                                                                   "limits": resource_lists}),
                               st.just("4G"), st.just({"request": {"cpu": 1}})),
        "env": flat_maps,
        "secrets": flat_maps,
        "sim_time_limit": st.one_of(st.integers(-1, 50000), st.text(max_size=3)),
        "affinity": st.one_of(st.fixed_dictionaries({"size": st.sampled_from(["small", ["small", "medium"], [], 3])}),
                              st.just({"zone": "a"})),
        "branch": st.one_of(st.text(max_size=5), st.integers()),
        "replica": st.integers(0, 2),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            entry[key] = draw(strategy)
    return entry


# Mostly-valid models, so that many examples reach helm and the schema check, not only our errors.
valid_models = st.fixed_dictionaries(
    {"owner": st.sampled_from(["PSLmodels", "hdoupe", "Ünïcode-Modél", "a" * 30]),
     "title": st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True)},
    optional={"cluster_type": st.sampled_from(["dask", "single-core"]), "replicas": st.integers(0, 4),
              "resources": st.fixed_dictionaries({}, optional={
                  "requests": st.fixed_dictionaries({}, optional={"cpu": st.sampled_from(["100m", "1", 0.5]),
                                                                  "memory": st.sampled_from(["512Mi", "1G"])}),
                  "limits": st.fixed_dictionaries({}, optional={"cpu": st.sampled_from(["1500m", 2, "4"]),
                                                                "memory": st.sampled_from(["2G", "4Gi"])})}),
              "secrets": st.dictionaries(st.sampled_from(["API_KEY", "TOKEN"]), st.text(max_size=8), max_size=2),
              "sim_time_limit": st.integers(1, 40000),
              "affinity": st.fixed_dictionaries({"size": st.sampled_from(["small", ["small", "medium"]])})},
)
configs = st.one_of(
    st.lists(valid_models, min_size=1, max_size=3),
    st.lists(st.one_of(valid_models, models()), min_size=1, max_size=3),
    st.just({"owner": "a"}),
    st.just("text"),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=configs)
# Found by this test: control characters in a title broke the error line and helm's YAML.
@example(config=[{"owner": "PSLmodels", "title": "0\x7f"}])
@example(config=[{"owner": "PSLmodels", "title": "0\r", "env": {"NESTED": {"a": 1}}}])
# ... and a title "N", which Helm's YAML 1.1 reader took for false until values quoted it.
@example(config=[{"owner": "PSLmodels", "title": "N"}, {"owner": "y", "title": "on"}])
def test_any_config_renders_valid_manifests_or_fails_cleanly(tmp_path: Path, config: Any) -> None:
    path = tmp_path / "worker_config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = main(["template", "--config", str(path), "--tag", "t1", "--project", "p"])
    if status == 0:
        assert "all valid for Kubernetes" in stderr.getvalue()
        assert "kind: Deployment" in stdout.getvalue()
    else:
        assert status == 2, stderr.getvalue()
        assert stdout.getvalue() == ""
        lines = stderr.getvalue().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("cs-cluster: error: "), lines
