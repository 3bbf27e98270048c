from __future__ import annotations

import pytest
from helpers import EXAMPLE_CONFIG

from cs_cluster import Cluster, RenderedChart


@pytest.fixture(scope="session")
def example_cluster() -> Cluster:
    return Cluster(config=EXAMPLE_CONFIG, tag="v1", project="cs-test", previous=None)


@pytest.fixture(scope="session")
def example_chart(example_cluster: Cluster) -> RenderedChart:
    """The bundled example config, rendered and validated once for the session."""
    return example_cluster.render()
