"""Compute Studio's naming rules, shared by values building, local mode and the tests.

The chart derives every queue and object name from the model slug with the same rules, so these
functions are the one Python statement of them (see docs/runtime-contract.md).
"""

from __future__ import annotations

import re

_NOT_ALPHANUMERIC = re.compile(r"[^a-z0-9]")


def clean(word: object) -> str:
    """Lowercase alphanumerics only: C/S's clean(), so 'OG-USA' -> 'ogusa'."""
    return _NOT_ALPHANUMERIC.sub("", str(word).lower())


def model_slug(owner: str, title: str) -> str:
    """The key of a model under `models:` in values and its `compute.studio/model` label."""
    return f"{clean(owner)}-{clean(title)}"


def model_key(owner: str, title: str) -> str:
    """The prefix of a model's queues and Celery task names."""
    return f"{clean(owner)}_{clean(title)}"


def inputs_queue(owner: str, title: str) -> str:
    return f"{model_key(owner, title)}_inputs_queue"


def sim_queue(owner: str, title: str) -> str:
    return f"{model_key(owner, title)}_queue"


def image_repository(registry: str, project: str, owner: str, title: str) -> str:
    """`{registry}/{project}/{owner}_{title}_tasks`, as the chart builds it by default."""
    prefix = "/".join(part for part in (registry, project) if part)
    return f"{prefix}/{model_key(owner, title)}_tasks"
