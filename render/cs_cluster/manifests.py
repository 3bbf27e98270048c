"""Reading rendered manifests as Kubernetes clients read them, fast enough for 1000 models.

`helm template` prints a YAML stream; helm and kubectl split it with apimachinery's YAMLReader and
convert each document with sigs.k8s.io/yaml before the API server sees it. The `k8s-yaml-json`
helper (tools/k8s-yaml-json, built by ci/install-tools.sh) runs exactly that code and prints one
JSON document per line. Reading its output is about 5x faster than PyYAML's libyaml loader (18 MB
of manifests at 1000 models: ~0.5 s against ~2.1 s, benchmarks/README.md), and the objects are
what the API server will get, YAML 1.1 quirks included (`0400` is 256, `yes` is true), where
PyYAML differs in corners (`1e3` is a float to Kubernetes, a string to PyYAML).

Where the helper is not built (the package installed with pip on a machine without Go), the
documents are read with PyYAML's libyaml loader instead: slower, and different only in those
corners, rather than no `cs-cluster template` at all.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from typing import IO, Any

from .errors import ManifestError, ToolError
from .helm import cache_dir

READER = "k8s-yaml-json"


def find_reader() -> str | None:
    """The helper: CS_K8S_YAML_JSON, else k8s-yaml-json on PATH, else the one ci/install-tools.sh
    caches; None when there is none (PyYAML reads the documents then).

    Raises ToolError when CS_K8S_YAML_JSON names a file that is not an executable.
    """
    named = os.environ.get("CS_K8S_YAML_JSON")
    if named:
        if not os.access(named, os.X_OK):
            raise ToolError(f"CS_K8S_YAML_JSON={named} is not an executable {READER}")
        return named
    for candidate in (shutil.which(READER), str(cache_dir() / "bin" / READER)):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _iter_with_pyyaml(manifests: str) -> Iterator[Any]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        yield from yaml.load_all(manifests, Loader=loader)
    except yaml.YAMLError as error:
        raise ManifestError(f"the rendered manifests are not valid YAML: {' '.join(str(error).split())}") from None


def _feed(stream: IO[bytes], data: bytes) -> None:
    # A broken pipe means the helper stopped early on a bad document: its exit status says why.
    with contextlib.suppress(BrokenPipeError):
        stream.write(data)
    with contextlib.suppress(BrokenPipeError):
        stream.close()


def read_documents(manifests: str) -> list[Any]:
    """Every document of a YAML stream, in order, as Kubernetes reads it (None for an empty one).

    Raises ManifestError (one line, naming the document) for YAML that is not valid, ToolError when
    the helper cannot run.
    """
    return list(iter_documents(manifests))


def iter_documents(manifests: str) -> Iterator[Any]:
    """`read_documents`, one document at a time as the helper converts them (on every core), so
    what the caller does with each (parse its JSON, validate it) overlaps the conversion. A caller
    that stops early stops the helper too. The errors are read_documents'; invalid YAML is raised
    once every document before it was yielded."""
    reader = find_reader()
    if reader is None:
        yield from _iter_with_pyyaml(manifests)
        return
    try:
        process = subprocess.Popen([reader], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
    except OSError as error:
        raise ToolError(f"cannot run {reader}: {error.strerror or error}") from None
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    # Written from a thread: the helper writes while it reads, and both pipes are bounded.
    writer = threading.Thread(target=_feed, args=(process.stdin, manifests.encode()), daemon=True)
    writer.start()
    try:
        for line in process.stdout:
            yield json.loads(line)
        complaint = process.stderr.read().decode(errors="replace").strip()
        if process.wait() != 0:
            detail = complaint.splitlines()[-1] if complaint else f"exit status {process.returncode}"
            raise ManifestError(f"the rendered manifests are not valid YAML: {detail.removeprefix(READER + ': ')}")
    finally:
        if process.poll() is None:  # the caller stopped early (an invalid object): stop the helper
            process.kill()
            process.wait()
        writer.join()
        for stream in (process.stdout, process.stderr):
            stream.close()
