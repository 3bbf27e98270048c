"""cs_cluster: deploy a Compute Studio compute cluster with the cs-workers Helm chart."""

from importlib import metadata

from .cluster import Cluster
from .config import ModelConfig, load_worker_config
from .errors import ConfigError, CsClusterError, ManifestError, ToolError, UsageError
from .render import RenderedChart, render_chart

__all__ = [
    "Cluster",
    "ConfigError",
    "CsClusterError",
    "ManifestError",
    "ModelConfig",
    "RenderedChart",
    "ToolError",
    "UsageError",
    "load_worker_config",
    "render_chart",
]

DISTRIBUTION = "cs-workers"


def package_version() -> str:
    """The installed cs-workers distribution's version (pyproject.toml is its one source)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # imported from a source tree that was never installed
        return "0+unknown"


def __getattr__(name: str) -> str:
    # __version__ read from the metadata only when asked: finding it costs a scan of sys.path.
    if name == "__version__":
        return package_version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
