"""Command-line options checked where they are read, so that a mistake is one line naming the
option instead of a failure deep inside helm, a socket call or a file write."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from .errors import UsageError

# Helm's own rule for release names (helm/pkg/chartutil: a DNS subdomain of at most 53 characters).
_RELEASE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
MAX_RELEASE_LENGTH = 53
# A namespace is a DNS-1123 label.
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_NAMESPACE_LENGTH = 63
# Go's time.ParseDuration, which `helm --timeout` uses.
_DURATION_PART = r"([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)"
_GO_DURATION = re.compile(rf"^({_DURATION_PART})+$")


def port(text: str) -> int:
    """argparse type of a TCP port: 1-65535."""
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{number} is not a port number (1-65535)")
    return number


def check_release(name: str) -> None:
    if len(name) > MAX_RELEASE_LENGTH or not _RELEASE.match(name):
        raise UsageError(f"--release {name!r} is not a valid Helm release name (lowercase letters, digits, - and ., "
                         f"at most {MAX_RELEASE_LENGTH} characters)")


def check_namespace(name: str) -> None:
    if len(name) > MAX_NAMESPACE_LENGTH or not _NAMESPACE.match(name):
        raise UsageError(f"--namespace {name!r} is not a valid namespace (lowercase letters, digits and -, "
                         f"at most {MAX_NAMESPACE_LENGTH} characters)")


def check_timeout(text: str) -> None:
    if not _GO_DURATION.match(text):
        raise UsageError(f"--timeout {text!r} is not a duration helm understands (like 10m, 90s or 1h30m)")


def check_chart(path: Path | None) -> None:
    """--chart must be a chart directory (it holds Chart.yaml)."""
    if path is not None and not (path / "Chart.yaml").is_file():
        raise UsageError(f"--chart {path} is not a chart directory (no Chart.yaml in it)")
