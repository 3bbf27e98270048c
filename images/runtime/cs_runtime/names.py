"""Names shared with the chart: model key, slug, queues and Celery task names.

The chart computes the same names in its templates, so everything here follows
docs/runtime-contract.md ("Names") to the letter; change both together.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

TaskKind = Literal["inputs_get", "inputs_parse", "inputs_version", "sim"]
TASK_KINDS: Final[tuple[TaskKind, ...]] = ("inputs_get", "inputs_parse", "inputs_version", "sim")

_NOT_ALNUM = re.compile(r"[^a-z0-9]")


def clean(word: str) -> str:
    """Lowercase `word` and keep only ASCII letters and digits ("OG-USA" -> "ogusa").

    ASCII only (unlike C/S's str.isalnum): these names become Kubernetes labels and
    Redis keys, and the chart's template computes them with `[^a-z0-9]`.
    """
    return _NOT_ALNUM.sub("", word.lower())


@dataclass(frozen=True)
class ModelNames:
    """Every name derived from a model's owner and title."""

    owner: str
    title: str

    @property
    def key(self) -> str:
        """`m` in the contract: `clean(owner)_clean(title)`, e.g. `pslmodels_ogusa`."""
        return f"{clean(self.owner)}_{clean(self.title)}"

    @property
    def slug(self) -> str:
        """The values key, label and routing-table key, e.g. `pslmodels-ogusa`."""
        return f"{clean(self.owner)}-{clean(self.title)}"

    @property
    def inputs_queue(self) -> str:
        """Queue of inputs_get, inputs_parse and inputs_version (the io worker)."""
        return f"{self.key}_inputs_queue"

    @property
    def sim_queue(self) -> str:
        """Queue of sims (the sim worker)."""
        return f"{self.key}_queue"

    def task(self, kind: TaskKind) -> str:
        """Celery task name, e.g. `pslmodels_ogusa_tasks.sim`."""
        return f"{self.key}_tasks.{kind}"

    def queue_for(self, kind: TaskKind) -> str:
        """The queue a task of this kind travels on."""
        return self.sim_queue if kind == "sim" else self.inputs_queue

    @property
    def redis_key_prefix(self) -> str:
        """`{m}:`, before every Redis key and channel of this model's queues, results and
        delivery counts, so that a Redis ACL user can be limited to them (`~{m}:*`, `&{m}:*`)."""
        return f"{self.key}:"

    @property
    def redis_username(self) -> str:
        """The Redis ACL user of this model's workers, e.g. `model-pslmodels_ogusa`."""
        return f"model-{self.key}"


def model_slug(owner: str, title: str) -> str:
    """Routing-table key of the model a gateway URL names."""
    return ModelNames(owner, title).slug
