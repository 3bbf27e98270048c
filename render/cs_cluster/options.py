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


def seconds(text: str) -> float:
    """argparse type of a timeout in seconds: a positive number."""
    try:
        number = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < number < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
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


# helm flags `--helm-arg` may not pass, and why: each would make the release, or what the capacity
# check and the pod watcher read, differ from what cs-cluster knows.
_HELM_ARGS_REFUSED = {
    "--dry-run": "apply would then write its values file for a release that did not change; "
                 "`cs-cluster plan` shows what would change",
    "--namespace": "use --namespace", "-n": "use --namespace",
    "--kube-context": "select the context in KUBECONFIG, which the capacity check reads too",
    "--kubeconfig": "set KUBECONFIG, which the capacity check reads too",
    "--atomic": "it is on by default (--no-atomic turns it off)",
    "--rollback-on-failure": "it is on by default (--no-atomic turns it off)",
    "--wait": "use --no-wait or --timeout", "--timeout": "use --timeout",
    "--reuse-values": "cs-cluster gives helm every value; reusing the release's would run values the "
                      "values file does not hold",
    "--reset-then-reuse-values": "cs-cluster gives helm every value; reusing the release's would run values "
                                 "the values file does not hold",
}


def check_helm_args(arguments: list[str]) -> None:
    """--helm-arg: refuse the flags cs-cluster sets itself or that would break what it keeps."""
    for argument in arguments:
        flag = argument.split("=", 1)[0]
        if flag.startswith("-n") and not flag.startswith("--"):
            flag = "-n"
        if flag in _HELM_ARGS_REFUSED:
            raise UsageError(f"--helm-arg {argument!r} is not passed to helm: {_HELM_ARGS_REFUSED[flag]}")
