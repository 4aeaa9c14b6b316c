"""``threshold serve``'s workers (``threshold/cli/worker.py``), against the real server.

One worker of one thread, as the bench and small installations run: kept-alive connections
are answered in turn, pipelined requests each get their answer, and a connection that sends
nothing does not hold the worker (gthread's one thread would wait five seconds on it).
"""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Iterator

import pytest

from tests.support.processes import one_worker, serving

# Its servers and commands run on SQLite files of their own: the PostgreSQL run skips it.
pytestmark = pytest.mark.same_on_every_database


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    tmp = tmp_path_factory.mktemp("serving")
    port, env = one_worker(tmp / "var")
    with serving(env, tmp / "server.log", lambda: _get(port, "/sign-in") == 200):
        yield port


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


def _timed_get(port: int) -> float:
    started = time.monotonic()
    assert _get(port, "/sign-in") == 200
    return time.monotonic() - started


SIGN_IN_HEAD = "POST /sign-in/options HTTP/1.1\r\nHost: localhost:{port}\r\n"


@pytest.mark.parametrize(
    "partial",
    [
        "GET /sign-in HTTP/1.1\r\nHost: localhost:{port}\r\n",  # half a head
        "GET /sign-in HTT",  # half a request line
        SIGN_IN_HEAD + "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
        SIGN_IN_HEAD + 'Transfer-Encoding: chunked\r\n\r\n5\r\n{{"a":',  # half a chunked body
        SIGN_IN_HEAD + "Content-Length: 100\r\nExpect: 100-continue\r\n\r\n",
    ],
    ids=["head", "request-line", "body", "chunked-body", "expect-continue"],
)
def test_clients_that_send_half_a_request_do_not_hold_the_worker(server: int, partial: str):
    """A slowloris: as many such clients as workers stopped gthread's server for good."""
    clients = [socket.create_connection(("127.0.0.1", server), timeout=10) for _ in range(3)]
    try:
        for client in clients:
            client.sendall(partial.format(port=server).encode())
        time.sleep(0.3)  # read by the worker by now
        waited = _timed_get(server)
        assert waited < 2.0, f"half a request held the one worker for {waited:.1f} s"
        if "Expect" in partial:
            # Told to go on: the body is waited for, as any other.
            assert clients[0].recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    finally:
        for client in clients:
            client.close()


def test_a_request_that_trickles_in_is_answered_once_whole(server: int) -> None:
    body = b'{"username": "nobody@example.com"}'
    request = (
        f"POST /sign-in/options HTTP/1.1\r\nHost: localhost:{server}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", server), timeout=10) as client:
        for start in range(0, len(request), 7):
            client.sendall(request[start : start + 7])
            time.sleep(0.02)
            # Meanwhile the worker answers everyone else.
            if start == 35:
                assert _timed_get(server) < 2.0
        answer = client.recv(65536)
    # The sign-in's own answer (no CSRF cookie here), not a dropped connection.
    assert answer.startswith(b"HTTP/1.1 403"), answer[:200]


def test_a_body_far_over_any_limit_is_refused_before_it_is_read(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=10) as client:
        client.sendall(
            f"POST /sign-in/options HTTP/1.1\r\nHost: localhost:{server}\r\n"
            f"Content-Length: {50 * 1024 * 1024}\r\n\r\n".encode()
        )
        answer = client.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    # In the catalog's words, as the application's own 413.
    assert answer.endswith(b"Session Expired: Your session has expired; restart to continue.\n")


@pytest.mark.parametrize(
    ("head", "status"),
    [
        ("GET /sign-in?" + "a" * 9000 + " HTTP/1.1\r\n", b"414"),  # over gunicorn's 4094
        ("GET /sign-in HTTP/1.1\r\n" + "".join(f"X-{n}: y\r\n" for n in range(120)), b"431"),
        ("GET /sign-in HTTP/1.1\r\nBad Header: <script>\r\n", b"400"),
        ("GET /sign-in HTTP/9.9\r\n", b"400"),
    ],
    ids=["long line", "many fields", "bad header name", "bad version"],
)
def test_a_head_gunicorn_refuses_is_answered_in_the_catalogs_words(
    server: int, head: str, status: bytes
) -> None:
    """gunicorn refuses these itself, before Threshold runs: its own page echoed part of the
    request in HTML; the answer now says what the application's own 4xx say."""
    with socket.create_connection(("127.0.0.1", server), timeout=10) as client:
        client.sendall(f"{head}Host: localhost:{server}\r\n\r\n".encode())
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 " + status + b" "), answer[:200]
    assert b"Content-Type: text/plain; charset=utf-8\r\n" in answer
    assert answer.endswith(
        b"\r\n\r\nSession Expired: Your session has expired; restart to continue.\n"
    )


def test_a_chunked_body_is_answered_once_its_last_chunk_is_here(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=10) as client:
        head = (
            f"POST /sign-in/options HTTP/1.1\r\nHost: localhost:{server}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        client.sendall(head.encode() + b"2\r\n{}\r\n")
        time.sleep(0.2)
        client.setblocking(False)
        with pytest.raises(BlockingIOError):
            client.recv(1)  # not answered before its end
        client.setblocking(True)
        client.sendall(b"0\r\n\r\n")
        answer = client.recv(65536)
    assert answer.startswith(b"HTTP/1.1 403"), answer[:200]
