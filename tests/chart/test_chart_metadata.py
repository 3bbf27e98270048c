"""Where Helm and Artifact Hub look (issue 14): Chart.yaml's metadata and annotations, the README
`helm show readme` prints, CHANGELOG.md, and a chart version that
changes only with a CHANGELOG entry, and never once released (tag `cs-workers-<version>`)."""

from __future__ import annotations

import base64
import re
import subprocess
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import CHART, REPO, model, skip_or_fail, values_with

from cs_cluster import render_chart
from cs_cluster.helm import find_helm
from cs_cluster.schema import chart_readme

# SemVer 2.0.0's own regular expression (semver.org), as Helm requires of a chart version.
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
    r"(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$")
CHART_PATH = CHART.relative_to(REPO).as_posix()


def metadata() -> dict[str, Any]:
    meta: dict[str, Any] = yaml.safe_load((CHART / "Chart.yaml").read_text())
    return meta


def precedence(version: str) -> tuple[Any, ...]:
    """SemVer precedence: major, minor, patch, then a release above any of its pre-releases."""
    match = SEMVER.match(version)
    assert match, f"{version!r} is not SemVer"
    major, minor, patch, pre = int(match[1]), int(match[2]), int(match[3]), match[4]
    identifiers = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")) if pre else ()
    return (major, minor, patch, 0 if pre else 1, identifiers)


def git(*arguments: str) -> str:
    return subprocess.run(["git", *arguments], cwd=REPO, capture_output=True, text=True, check=True).stdout


def changelog_section(text: str, version: str) -> list[str]:
    """The entries (`- kind: text` lines) of `version`'s section of a CHANGELOG.md text."""
    sections = re.split(r"^## ", text, flags=re.MULTILINE)
    section = next((s for s in sections if s.split("\n", 1)[0].strip() == version), "")
    return re.findall(r"^- \w+: .+$", section, flags=re.MULTILINE)


def shown(revision: str, path: str) -> str | None:
    text = subprocess.run(["git", "show", f"{revision}:{path}"], cwd=REPO, capture_output=True, text=True,
                          check=False)
    return text.stdout if text.returncode == 0 else None


def latest_chart_change() -> tuple[str, str, str] | None:
    """(before, after, where) of the chart's latest change: HEAD and the working tree when the
    working tree changed it, else the parent of the last commit that changed it and that commit
    (None when the chart has never changed since it was added)."""
    untracked = git("ls-files", "--others", "--exclude-standard", "--", CHART_PATH).strip()
    changed = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", CHART_PATH], cwd=REPO, check=False).returncode
    if changed or untracked:
        return "HEAD", "", "the working tree"
    last = git("log", "-n", "1", "--format=%H", "--", CHART_PATH).strip()
    if subprocess.run(["git", "cat-file", "-e", f"{last}^"], cwd=REPO, capture_output=True,
                      check=False).returncode != 0:
        if git("rev-parse", "--is-shallow-repository").strip() == "true":
            skip_or_fail("a shallow clone: the commit before the chart's last change is not here "
                         "(git fetch --unshallow)")
        return None
    return f"{last}^", last, f"commit {last[:12]}"


def test_the_chart_version_is_semver_and_every_change_to_the_chart_is_in_its_changelog() -> None:
    """As chart-releaser and ct's version check have it: a released version (tag
    `cs-workers-<version>`) never changes; until its release, a version collects changes, and
    each change to the chart bumps the version or adds its entry to the version's CHANGELOG
    section (so several commits can make one release)."""
    version = metadata()["version"]
    assert SEMVER.match(version), version
    tag = f"cs-workers-{version}"
    if git("tag", "--list", tag).strip():
        changed = subprocess.run(["git", "diff", "--quiet", tag, "--", CHART_PATH], cwd=REPO,
                                 check=False).returncode
        assert not changed, f"{version} is released (tag {tag}) and the chart changed since: bump `version`"
    latest = latest_chart_change()
    if latest is None:
        return
    before, after, where = latest
    chart_yaml, changelog = f"{CHART_PATH}/Chart.yaml", f"{CHART_PATH}/CHANGELOG.md"
    old_chart = shown(before, chart_yaml)
    if old_chart is None:
        return  # the chart did not exist there
    old_version = str(yaml.safe_load(old_chart)["version"])
    if old_version != version:
        assert precedence(version) > precedence(old_version), f"{where} lowered the chart version"
        return
    new_changelog = (CHART / "CHANGELOG.md").read_text() if not after else shown(after, changelog)
    old_entries = changelog_section(shown(before, changelog) or "", version)
    new_entries = changelog_section(new_changelog or "", version)
    assert set(new_entries) > set(old_entries), (
        f"{where} changed the chart without bumping its version ({version}) or adding an entry to {version}'s "
        f"section of CHANGELOG.md (and artifacthub.io/changes)")


def test_semver_precedence_orders_as_the_specification_says() -> None:
    ordered = ["0.1.0", "0.1.1", "0.2.0-alpha", "0.2.0-alpha.1", "0.2.0-beta", "0.2.0-beta.2", "0.2.0-beta.11",
               "0.2.0-rc.1", "0.2.0", "1.0.0"]
    assert sorted(ordered, key=precedence) == ordered
    assert not SEMVER.match("0.2") and not SEMVER.match("v0.2.0") and not SEMVER.match("0.02.0")


def test_chart_yaml_has_what_artifact_hub_shows() -> None:
    meta = metadata()
    assert meta["apiVersion"] == "v2" and meta["type"] == "application"
    assert meta["home"].startswith("https://") and all(s.startswith("https://") for s in meta["sources"])
    assert all(m["name"] and m["url"].startswith("https://") for m in meta["maintainers"])
    # The icon is an SVG image that parses.
    prefix = "data:image/svg+xml;base64,"
    assert meta["icon"].startswith(prefix)
    svg = ElementTree.fromstring(base64.b64decode(meta["icon"][len(prefix):]))  # noqa: S314 (our own file)
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    annotations = meta["annotations"]
    assert annotations["artifacthub.io/license"] == "MIT"
    changes = yaml.safe_load(annotations["artifacthub.io/changes"])
    assert changes and all(set(c) == {"kind", "description"} for c in changes)
    assert {c["kind"] for c in changes} <= {"added", "changed", "deprecated", "removed", "fixed", "security"}


def changelog_entries(version: str) -> list[dict[str, str]]:
    text = (CHART / "CHANGELOG.md").read_text()
    sections = re.split(r"^## ", text, flags=re.MULTILINE)
    section = next((s for s in sections if s.split("\n", 1)[0].strip() == version), None)
    assert section is not None, f"CHANGELOG.md has no section for {version}"
    return [{"kind": kind, "description": description}
            for kind, description in re.findall(r"^- (\w+): (.+)$", section, flags=re.MULTILINE)]


def test_changelog_has_the_current_version_and_artifact_hub_its_entries() -> None:
    meta = metadata()
    entries = changelog_entries(meta["version"])
    assert entries, "the current version's section lists no changes"
    assert yaml.safe_load(meta["annotations"]["artifacthub.io/changes"]) == entries
    # Every version of the chart that ever was has its section (newest first).
    headings = re.findall(r"^## (\S+)", (CHART / "CHANGELOG.md").read_text(), flags=re.MULTILINE)
    assert headings == sorted(headings, key=precedence, reverse=True)
    assert headings[0] == meta["version"]


def test_artifact_hub_lists_the_images_the_chart_runs_that_it_does_not_build() -> None:
    """The gateway and model images are built by `cs-cluster build` into the user's registry; every
    other image a default install runs (helm test pods included) is in artifacthub.io/images."""
    chart = render_chart(values_with(model("a", "b"), model("c", "d", "dask")))
    built = re.compile(r"^gcr\.io/cs-test/")
    images = set()
    for obj in chart:
        spec = obj.get("spec", {})
        pod = spec.get("template", {}).get("spec") if "template" in spec else spec if obj["kind"] == "Pod" else None
        for each in (pod or {}).get("containers", []):
            if not built.match(each["image"]):
                images.add(each["image"])
    listed = {entry["image"] for entry in yaml.safe_load(metadata()["annotations"]["artifacthub.io/images"])}
    assert images == listed == {"redis:7.4.2-alpine"}


@pytest.mark.parametrize("major", [3, 4], ids=["helm3", "helm4"])
def test_helm_show_readme_prints_the_generated_readme(major: int) -> None:
    result = subprocess.run([find_helm(major), "show", "readme", str(CHART)], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == chart_readme(CHART).strip()
    version = metadata()["version"]
    for command in ("helm install cs-workers", "helm upgrade cs-workers", "helm uninstall cs-workers"):
        assert command in result.stdout
    assert f"--version {version}" in result.stdout
    # A value's description in the schema is its description in the README.
    schema = yaml.safe_load((CHART / "values.schema.yaml").read_text())
    description = " ".join(schema["properties"]["commonLabels"]["description"].split())
    assert f"| `commonLabels` | object |  | {description} |" in result.stdout


def test_the_readme_and_the_values_reference_share_one_table() -> None:
    readme = (CHART / "README.md").read_text()
    reference = (REPO / "docs" / "values.md").read_text()
    table = reference[reference.index("| key |"):]
    assert readme.endswith(table)
    assert Path(CHART / "README.md").read_text() == chart_readme(CHART)
