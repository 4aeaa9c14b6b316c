"""``threshold serve``'s workers (``threshold/cli/worker.py``), against the real server.

One worker of one thread, as the bench and small installations run: kept-alive connections
are answered in turn, pipelined requests each get their answer, and a connection that sends
nothing does not hold the worker (gthread's one thread would wait five seconds on it).
"""

from __future__ import annotations

import http.client
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import newcomer_environment, threshold_command

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    tmp = tmp_path_factory.mktemp("serving")
    port = _free_port()
    env = newcomer_environment(
        THRESHOLD_VAR_DIR=str(tmp / "var"),
        THRESHOLD_SECRET_KEY=secrets.token_urlsafe(48),
        THRESHOLD_HOST="127.0.0.1",
        THRESHOLD_PORT=str(port),
        THRESHOLD_ORIGINS=f"http://localhost:{port}",
        THRESHOLD_WORKERS="1",
        THRESHOLD_EMAIL_BACKEND="file",
    )
    command = threshold_command()
    subprocess.run([*command, "migrate", "--noinput"], cwd=REPO, env=env, check=True, timeout=120)
    with (tmp / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [*command, "serve"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp / "server.log").read_text()
            try:
                _get(port, "/sign-in")
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start in 60 s"
                time.sleep(0.1)
        yield port
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)


def _get(port: int, path: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers={"Host": f"localhost:{port}"})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_a_kept_alive_connection_is_answered_request_after_request(server: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    try:
        statuses = []
        for _ in range(5):
            connection.request("GET", "/sign-in", headers={"Host": f"localhost:{server}"})
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
            assert response.getheader("Connection", "").lower() != "close"
        first_socket = connection.sock
        connection.request("GET", "/help", headers={"Host": f"localhost:{server}"})
        response = connection.getresponse()
        response.read()
        assert connection.sock is first_socket  # the same connection all along
    finally:
        connection.close()
    assert statuses == [200] * 5


def test_pipelined_requests_each_get_their_answer(server: int) -> None:
    request = f"GET /sign-in HTTP/1.1\r\nHost: localhost:{server}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", server), timeout=10) as client:
        client.sendall(request * 3)
        received = b""
        deadline = time.monotonic() + 10
        while received.count(b"HTTP/1.1 200") < 3 and time.monotonic() < deadline:
            chunk = client.recv(65536)
            if not chunk:
                break
            received += chunk
    assert received.count(b"HTTP/1.1 200") == 3


def test_a_connection_that_sends_nothing_does_not_hold_the_worker(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=10):
        time.sleep(0.2)  # accepted by the worker by now, with nothing to read
        started = time.monotonic()
        assert _get(server, "/sign-in") == 200
        waited = time.monotonic() - started
    # gthread's one thread would wait up to 5 s for the silent connection's first byte.
    assert waited < 2.0, f"the silent connection held the worker for {waited:.1f} s"
