"""The webserver stand-in users run beside `cs-cluster local up`."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from runtime.support import free_port

from cs_cluster.standin import ReceivedResult, StandInWebserver, describe


def put(url: str, body: object, token: str) -> int:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="PUT",  # noqa: S310
                                     headers={"Authorization": f"Token {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback only
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_records_results_and_checks_the_token() -> None:
    server = StandInWebserver(token="right").start()
    try:
        assert put(server.url + "/outputs/api/", {"job_id": "j1", "status": "SUCCESS"}, "right") == 200
        assert put(server.url + "/outputs/api/", {"job_id": "j2"}, "wrong") == 401
        assert put(server.url + "/elsewhere/", {"job_id": "j3"}, "right") == 404
        assert put(server.url + "/inputs/api", {"job_id": "j4", "status": "SUCCESS"}, "right") == 200
        assert server.wait_for("j1").path == "/outputs/api/"
        assert server.wait_for("j4").path == "/inputs/api/"
        assert [r.body["job_id"] for r in server.results] == ["j1", "j4"]
        with pytest.raises(TimeoutError):
            server.wait_for("j2", timeout=0.2)
    finally:
        server.stop()


def test_describe_is_one_line_without_the_token() -> None:
    success = ReceivedResult("/outputs/api/", "Token secret", {"job_id": "j", "status": "SUCCESS", "outputs": {
        "renderable": [{"title": "Sum", "media_type": "table", "data": "<table/>"}], "downloadable": []}})
    assert describe(success) == "sim j SUCCESS outputs: Sum"
    failure = ReceivedResult("/inputs/api/", "Token secret", {"job_id": "k", "status": "FAIL",
                                                              "traceback": "Traceback...\nValueError: bad"})
    assert describe(failure) == "parse k FAIL error: ValueError: bad"


def test_cli_prints_each_result() -> None:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "cs_cluster", "local", "webserver", "--port", str(port),
                                "--token", "t"], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert "webserver stand-in on" in process.stdout.readline()
        assert put(f"http://127.0.0.1:{port}/outputs/api/", {"job_id": "z", "status": "SUCCESS"}, "t") == 200
        assert process.stdout.readline().strip() == "sim z SUCCESS"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize(("host", "reachable_on_other_address"), [(None, False), ("0.0.0.0", True)])  # noqa: S104 - the point
def test_cli_host_decides_who_can_reach_it(host: str | None, reachable_on_other_address: bool) -> None:
    """Default: loopback 127.0.0.1 only. `--host 0.0.0.0`: every address of the machine, so pods
    and containers can PUT results; 127.0.0.2 (loopback, but not 127.0.0.1) stands for those."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "cs_cluster", "local", "webserver", "--port", str(port),
                                "--token", "t", *(["--host", host] if host else [])],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert "webserver stand-in on" in process.stdout.readline()
        assert put(f"http://127.0.0.1:{port}/outputs/api/", {"job_id": "a", "status": "SUCCESS"}, "t") == 200
        other = f"http://127.0.0.2:{port}/outputs/api/"
        if reachable_on_other_address:
            assert put(other, {"job_id": "b", "status": "SUCCESS"}, "t") == 200
        else:
            with pytest.raises(urllib.error.URLError):
                put(other, {"job_id": "b", "status": "SUCCESS"}, "t")
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize("host", ["192.0.2.1", "not a host name"])
def test_cli_host_it_cannot_listen_on_is_one_line(host: str) -> None:
    result = subprocess.run([sys.executable, "-m", "cs_cluster", "local", "webserver", "--host", host, "--port",
                             str(free_port())], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith(f"cs-cluster: error: cannot listen on {host}:") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
