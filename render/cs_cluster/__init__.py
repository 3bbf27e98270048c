"""cs_cluster: deploy a Compute Studio compute cluster with the cs-workers Helm chart."""

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
__version__ = "0.1.0"
