"""The exceptions cs_cluster raises on purpose; the CLI prints each as one line."""

from __future__ import annotations


class CsClusterError(Exception):
    """Base of every error we raise deliberately; anything else is a bug."""

    exit_code = 1


class ConfigError(CsClusterError):
    """A worker_config or a values file the user gave is wrong; exit status 2."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        model: str | None = None,
        field: str | None = None,
        hint: str | None = None,
        line: int | None = None,
    ) -> None:
        self.path = path
        self.model = model
        self.field = field
        self.hint = hint
        self.line = line
        self.detail = message
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.path:
            where.append(self.path + (f":{self.line}" if self.line else ""))
        if self.model:
            where.append(f"model {self.model}")
        if self.field:
            where.append(f"field '{self.field}'")
        text = ": ".join([*where, self.detail]) if where else self.detail
        if self.hint:
            text += f" ({self.hint})"
        return _one_printable_line(text)


def _one_printable_line(text: str) -> str:
    """Escape control characters a config smuggled in, so an error stays one readable line."""
    return "".join(character if character.isprintable() else repr(character)[1:-1] for character in text)


class UsageError(CsClusterError):
    """A command-line option is wrong or missing; exit status 2, like argparse."""

    exit_code = 2


class ToolError(CsClusterError):
    """An external tool (helm, docker) is missing or failed."""


class WriteError(CsClusterError):
    """A file could not be written (no permission, a full disk); nothing was half-written."""


class ManifestError(CsClusterError):
    """A rendered object failed validation against the Kubernetes schemas."""


class CapacityError(CsClusterError):
    """Pods the apply would create that no node can ever take (cs_cluster.capacity); exit status 4,
    so scripts can tell it from bad input (2) and from a failing tool (1)."""

    exit_code = 4


class ValuesRefusedError(ConfigError, ToolError):
    """Helm refused the values: the chart's schema, or one of its checks (`fail` in
    templates/_check-values.tpl). The values came from the user, so exit status 2 (a ConfigError);
    also a ToolError, as every failure of helm is."""
