"""Publishing (issue 14): `helm package` and `helm push` to an OCI registry (the CNCF distribution
registry, pinned, run here on loopback), then `helm install --dry-run` with Helm 4 and `helm template`
with Helm 3 from `oci://`, and what they render is what the chart directory renders."""

from __future__ import annotations

from pathlib import Path

import yaml
from helpers import CHART, model, values_with, without_secret_values
from oci_support import chart_version, helm

VALUES = values_with(model("PSLmodels", "Tax-Brain"), model("PSLmodels", "OG-USA", "dask"),
                     redis={"auth": {"existingSecret": "redis-password"}},
                     gateway={"auth": {"existingSecret": "gateway-token"}})


def test_oci_round_trip(published_chart: str, helm_home: dict[str, str], tmp_path: Path) -> None:
    published, version = published_chart, chart_version()
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(VALUES))
    local = helm(4, "template", "cs-workers", CHART, "--namespace", "cs", "-f", values, env=helm_home).stdout
    # Helm 3 templates from oci://, Helm 4 installs (dry run, no cluster needed) from it.
    helm3 = helm(3, "template", "cs-workers", published, "--version", version, "--plain-http", "--namespace", "cs",
                 "-f", values, env=helm_home).stdout
    helm4 = helm(4, "install", "cs-workers", published, "--version", version, "--plain-http", "--namespace", "cs",
                 "--dry-run=client", "-f", values, env=helm_home).stdout
    hooks, rest = helm4.split("HOOKS:", 1)[1].split("MANIFEST:", 1)
    manifest, notes = rest.split("NOTES:", 1)
    assert without_secret_values(helm3) == without_secret_values(local)
    # An install puts the `helm test` pods (hooks) apart from the manifest.
    installed = without_secret_values(hooks + "\n---\n" + manifest)
    assert sorted(map(repr, installed)) == sorted(map(repr, without_secret_values(local)))
    assert f"cs-workers {version} is deployed as release cs-workers in namespace cs." in notes
    # What `helm show` reads from the registry: the README, and Chart.yaml with Artifact Hub's annotations.
    readme = helm(4, "show", "readme", published, "--version", version, "--plain-http", env=helm_home).stdout
    assert readme.strip() == (CHART / "README.md").read_text().strip()
    shown = yaml.safe_load(helm(3, "show", "chart", published, "--version", version, "--plain-http",
                                env=helm_home).stdout)
    assert shown["version"] == version and "artifacthub.io/changes" in shown["annotations"]

