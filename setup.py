"""The one build step pyproject.toml cannot declare: the chart ships inside the package.

charts/cs-workers stays the only copy in the repository. Building a wheel copies it into the
package as cs_cluster/charts/cs-workers (package data), where cs_cluster.chart finds it; the
sdist carries it by MANIFEST.in. An editable install gets no copy: cs_cluster.chart finds the
checkout's own chart there.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CHART = Path(__file__).resolve().parent / "charts" / "cs-workers"
# What is not the chart: subcharts and packages helm may leave there (git-ignored), editor files.
NOT_CHART = shutil.ignore_patterns("charts", "*.tgz", "*.swp", "*~", "__pycache__")


class BuildWithChart(build_py):
    """build_py, then the chart into the built package."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib) / "cs_cluster" / "charts" / CHART.name
        shutil.rmtree(target, ignore_errors=True)  # never a file the chart no longer has
        shutil.copytree(CHART, target, ignore=NOT_CHART)


setup(cmdclass={"build_py": BuildWithChart})
