"""Values reach the templates typed by YAML and by how they were given (-f: float64, --set: int64,
quoted: string); what the chart writes into a string field renders as the text meant, whatever the
type, or the schema refuses it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import CHART, container, env_of

from cs_cluster import render_chart
from cs_cluster.errors import ManifestError, ValuesRefusedError
from cs_cluster.helm import find_helm
from cs_cluster.render import parse_manifests, validate_objects

MODEL = "  a-b: {owner: a, title: b, clusterType: celery, image: {tag: %s}, simTimeLimit: %s}\n"


def render_text(helm_major: int, values_text: str, *set_arguments: str) -> list[dict[str, Any]]:
    """Render a values file written by hand (unquoted numbers stay numbers), plus --set arguments."""
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as handle:
        handle.write(values_text)
        handle.flush()
        result = subprocess.run([find_helm(helm_major), "template", "release", str(CHART), "-f", handle.name,
                                 *set_arguments], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    objects = parse_manifests(result.stdout)
    validate_objects(objects, ["1.37"])
    return objects


def workload(objects: list[dict[str, Any]], component: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == "Deployment"
                and o["metadata"]["labels"]["app.kubernetes.io/component"] == component]
    return found


@pytest.mark.parametrize("major", [3, 4], ids=["helm3", "helm4"])
@pytest.mark.parametrize(
    ("given", "set_arguments"),
    [
        ("20240101", ()),                                   # -f, unquoted: float64
        ("'20240101'", ()),                                 # -f, quoted: string
        ("x", ("--set", "models.a-b.image.tag=20240101")),  # --set: int64
        ("x", ("--set-string", "models.a-b.image.tag=20240101")),
    ],
    ids=["file-unquoted", "file-quoted", "set", "set-string"],
)
def test_image_tags_and_numbers_render_as_their_digits(major: int, given: str, set_arguments: tuple[str, ...]) -> None:
    values = ("modelImages: {project: p}\ncelery: {visibilityTimeout: 20000000}\nmodels:\n"
              + MODEL % (given, 10000000)
              + "redis: {image: {tag: 7}}\ngateway: {image: {tag: 20240101}}\n")
    objects = render_text(major, values, *set_arguments)
    sim = workload(objects, "model-sim")
    assert container(sim)["image"] == "gcr.io/p/a_b_tasks:20240101"
    assert container(workload(objects, "gateway"))["image"] == "gcr.io/p/cs-workers-gateway:20240101"
    assert container(workload(objects, "redis"))["image"] == "redis:7"
    env = env_of(sim)
    assert (env["SIM_TIME_LIMIT"], env["CELERY_VISIBILITY_TIMEOUT"]) == ("10000000", "20000000")


@pytest.mark.parametrize("tag", ["1.5", "1.10", "true", "[1]"])
def test_an_image_tag_that_is_not_text_or_a_whole_number_is_refused(tag: str) -> None:
    with pytest.raises(ValuesRefusedError, match="tag"):
        render_chart(values_files=[], values=yaml.safe_load(
            "modelImages: {project: p}\nmodels:\n" + MODEL % (tag, 60)))


def test_the_harness_refuses_an_image_a_kubelet_could_not_pull(tmp_path: Path) -> None:
    objects = render_chart({"modelImages": {"project": "p"}}).objects
    gateway = next(o for o in objects if o["kind"] == "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(gateway))
    broken["spec"]["template"]["spec"]["containers"][0]["image"] = "gcr.io/p/a_b_tasks:2.0240101e+07"
    with pytest.raises(ManifestError, match=r"2\.0240101e\+07.*not a valid image reference"):
        validate_objects([broken], ["1.37"])
    validate_objects([gateway], ["1.37"])
