"""Count the API requests one command makes: a plain-HTTP front for the real API server.

The control plane's own metrics (`apiserver_request_total`) count every client's requests, and
other engineers' tests share this API server, so a before/after difference would include theirs.
This front counts only the requests of the commands pointed at it: a kubeconfig whose server is
`http://127.0.0.1:PORT`, which it forwards over TLS with the real kubeconfig's client certificate.
Responses, watches included, are relayed as bytes; only the requests are parsed (their line,
headers and Content-Length body), which is all counting needs. A measurement aid, not a mock: every
request reaches the real API server.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import os
import ssl
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlsplit

import yaml


class RequestCounter:
    """Run with `with RequestCounter(kubeconfig) as counter:`; point commands at `counter.kubeconfig`."""

    def __init__(self, kubeconfig: str | Path) -> None:
        config = yaml.safe_load(Path(kubeconfig).read_text())
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        server = urlsplit(cluster["server"])
        self._upstream = (server.hostname or "127.0.0.1", server.port or 443)
        self._directory = tempfile.TemporaryDirectory(prefix="cs-bench-api-")
        files = {}
        for key in ("certificate-authority-data", "client-certificate-data", "client-key-data"):
            path = Path(self._directory.name) / key
            path.write_bytes(base64.b64decode(user.get(key) or cluster[key]))
            os.chmod(path, 0o600)
            files[key] = str(path)
        self._tls = ssl.create_default_context(cafile=files["certificate-authority-data"])
        self._tls.load_cert_chain(files["client-certificate-data"], files["client-key-data"])
        self._tls.set_alpn_protocols(["http/1.1"])
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.kubeconfig = str(Path(self._directory.name) / "kubeconfig")
        self.port = 0

    # -- counting -----------------------------------------------------------------------------
    def reset(self) -> None:
        with self._lock:
            self.counts.clear()

    def snapshot(self) -> collections.Counter[tuple[str, str]]:
        """Requests so far by (verb, resource), verb as the API server names it (get, list, watch, ...)."""
        with self._lock:
            return collections.Counter(self.counts)

    def _record(self, method: str, target: str) -> None:
        path, _, query = target.partition("?")
        parts = [part for part in path.split("/") if part]
        resource = parts[-1] if parts else "/"
        if "namespaces" in parts and parts.index("namespaces") + 2 < len(parts):
            index = parts.index("namespaces") + 2
            resource = parts[index] + ("/" + parts[index + 2] if len(parts) > index + 2 else "")
        elif parts[:1] in (["api"], ["apis"]):
            resource = parts[-1] if len(parts) <= 3 else parts[3 if parts[0] == "apis" else 2]
        named = len(parts) >= 2 and parts[-2] == resource.split("/")[0]
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, "get")
        if method == "GET":
            verb = "watch" if "watch=true" in query or "watch=1" in query else ("get" if named else "list")
        with self._lock:
            self.counts[(verb, resource)] += 1

    # -- serving --------------------------------------------------------------------------------
    def __enter__(self) -> RequestCounter:
        self._thread.start()
        self._ready.wait(10)
        Path(self.kubeconfig).write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "counted",
            "clusters": [{"name": "counted", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "counted", "user": {}}],
            "contexts": [{"name": "counted", "context": {"cluster": "counted", "user": "counted"}}],
        }))
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._directory.cleanup()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                *self._upstream, ssl=self._tls, server_hostname=self._upstream[0])
        except OSError:
            writer.close()
            return
        relay = asyncio.ensure_future(_pipe(upstream_reader, writer))
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                self._record(method, target)
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                upstream_writer.write(head + (await reader.readexactly(length) if length else b""))
                await upstream_writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            relay.cancel()
            for stream in (writer, upstream_writer):
                with contextlib.suppress(Exception):
                    stream.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, asyncio.CancelledError):
        while chunk := await reader.read(1 << 16):
            writer.write(chunk)
            await writer.drain()
    with contextlib.suppress(Exception):
        writer.close()

