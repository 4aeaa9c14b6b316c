"""Review of the request gathering in ``threshold/cli/worker.py`` (commit 8067d54).

Against the real server (one worker of one thread, as ``test_serving.py`` starts it): what
works; "Was a defect" marks what the review found and was fixed, and the one strict xfail
is a slow reader, left alone.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import one_worker, serving
from threshold.cli import worker

# Its servers and commands run on SQLite files of their own: the PostgreSQL run skips it.
pytestmark = pytest.mark.same_on_every_database


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    tmp = tmp_path_factory.mktemp("worker-review")
    port, env = one_worker(tmp / "var")
    with serving(env, tmp / "server.log", lambda: _get_seconds(port, wait=2.0) < float("inf")):
        yield port


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _receive(client: socket.socket, seconds: float, answers: int = 1) -> bytes:
    """What arrives within ``seconds``, until ``answers`` final answers or the end."""
    client.settimeout(seconds)
    received = b""
    deadline = time.monotonic() + seconds
    while len(_statuses(received)) < answers and time.monotonic() < deadline:
        try:
            chunk = client.recv(65536)
        except (TimeoutError, ConnectionError):
            break
        if not chunk:
            break
        received += chunk
    return received


def _statuses(received: bytes) -> list[str]:
    """The final statuses in ``received`` (1xx left out)."""
    found = re.findall(rb"HTTP/1\.[01] (\d{3}) ", received)
    return [status.decode() for status in found if not status.startswith(b"1")]


def _get_seconds(port: int, wait: float = 5.0) -> float:
    """How long a GET /sign-in takes to be answered: inf if not within ``wait``."""
    started = time.monotonic()
    try:
        with _connect(port) as client:
            client.sendall(f"GET /sign-in HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n".encode())
            answered = _receive(client, wait)
    except OSError:
        return float("inf")
    return time.monotonic() - started if _statuses(answered) == ["200"] else float("inf")


def _get(port: int) -> bytes:
    return f"GET /sign-in HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n".encode()


def _post(port: int, body: bytes, extra: str = "") -> bytes:
    return (
        f"POST /sign-in/options HTTP/1.1\r\nHost: localhost:{port}\r\n"
        f"Content-Type: application/json\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


CHUNKED_HEAD = "POST /sign-in/options HTTP/1.1\r\nHost: localhost:{port}\r\n" + (
    "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
)


# What works.


def test_pipelined_requests_behind_a_body_and_split_across_packets(server: int) -> None:
    with _connect(server) as client:
        # A request behind a POST body, and the next one cut right after the one before it.
        client.sendall(_post(server, b'{"username": "a"}') + _get(server) + _get(server)[:9])
        time.sleep(0.2)
        client.sendall(_get(server)[9:] + b"\r\n\r\n" + _get(server).replace(b"Host", b"host"))
        assert _statuses(_receive(client, 10, answers=4)) == ["403", "200", "200", "200"]


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "PUT", "DELETE"])
def test_other_methods_with_and_without_a_body(server: int, method: str) -> None:
    with _connect(server) as client:
        head = f"{method} /sign-in HTTP/1.1\r\nHost: localhost:{server}\r\n"
        client.sendall(
            f"{head}Content-Length: 0\r\n\r\n{head}Content-Length: 3\r\n\r\nabc".encode()
        )
        client.sendall(_get(server))
        statuses = _statuses(_receive(client, 10, answers=3))
    assert len(statuses) == 3, statuses
    assert statuses[2] == "200"


def test_a_client_that_half_closes_after_its_requests_gets_its_answers(server: int) -> None:
    with _connect(server) as client:
        client.sendall(_get(server) * 2)
        client.shutdown(socket.SHUT_WR)
        assert _statuses(_receive(client, 10, answers=2)) == ["200", "200"]


def test_http_1_0(server: int) -> None:
    with _connect(server) as client:
        client.sendall(f"GET /sign-in HTTP/1.0\r\nHost: localhost:{server}\r\n\r\n".encode())
        started = time.monotonic()
        assert _statuses(_receive(client, 10, answers=2)) == ["200"]
        assert time.monotonic() - started < 5.0  # closed after it, not kept alive


def test_a_chunked_body_with_extensions_and_trailers_then_the_next_request(server: int) -> None:
    with _connect(server) as client:
        body = b'1;a=b\r\n{\r\n001 ; c="d"\r\n}\r\n0\r\nX-Trailer: 1\r\n\r\n'
        client.sendall(CHUNKED_HEAD.format(port=server).encode() + body + _get(server))
        assert _statuses(_receive(client, 10, answers=2)) == ["403", "200"]


def test_bodies_at_and_over_the_limit(server: int) -> None:
    with _connect(server) as client:
        client.sendall(_post(server, b" " * worker.MOST_BODY_BYTES))
        assert _statuses(_receive(client, 10)) == ["403"]  # the application's answer
    with _connect(server) as client:
        client.sendall(_post(server, b" " * (worker.MOST_BODY_BYTES + 1))[:300])
        assert _statuses(_receive(client, 10)) == ["413"]


@pytest.mark.parametrize(
    "fields",
    [
        "Content-Length: +2\r\n",
        "Content-Length: 2\r\nContent-Length: 2\r\n",
        "Transfer-Encoding: chunked, chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 2\r\n",
        "Transfer-Encoding: gzip\r\n",
    ],
)
def test_framing_gunicorn_refuses_is_refused_at_once(server: int, fields: str) -> None:
    started = time.monotonic()
    with _connect(server) as client:
        head = f"POST /sign-in/options HTTP/1.1\r\nHost: localhost:{server}\r\n{fields}\r\n"
        client.sendall(head.encode() + b"{}0\r\n\r\n")
        statuses = _statuses(_receive(client, 5))
    assert statuses in (["400"], ["501"])
    assert time.monotonic() - started < 2.0


def test_curl_with_expect_100_continue(server: int, tmp_path: Path) -> None:
    (tmp_path / "body").write_bytes(b'{"username": "' + b"a" * 2048 + b'"}')
    command = [
        *("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Expect: 100-continue"),
        *("-H", f"Host: localhost:{server}", "-H", "Content-Type: application/json"),
        *("--data-binary", f"@{tmp_path / 'body'}", f"http://127.0.0.1:{server}/sign-in/options"),
    ]
    answer = subprocess.run(
        command,
        capture_output=True,
        timeout=10,
        check=True,
    )
    assert answer.stdout == b"403"  # the view's answer (no CSRF cookie), without a 1 s wait


# Defects.


# Was a defect (fixed since): chunk framing differs from gunicorn's: it reads, blocked.
@pytest.mark.parametrize(
    "chunk", [b"00000000000000000005\r\n{", b"5;a=" + b"b" * 2000], ids=["17+digits", "long-line"]
)
def test_a_chunk_gunicorn_waits_for_does_not_hold_the_worker(server: int, chunk: bytes) -> None:
    # _HEX took 16 digits at most and _MOST_CHUNK_LINE was 1024 bytes: past them, _gather
    # hands the request over as "refused", but gunicorn (any number of digits, lines up
    # to 8190 bytes) accepts it and reads the rest from the socket, blocked (5 s + 2 s).
    with _connect(server) as hog:
        hog.sendall(CHUNKED_HEAD.format(port=server).encode() + chunk)
        time.sleep(0.3)
        waited = _get_seconds(server, wait=3.0)
    assert waited < 1.0, f"held the worker: {waited:.1f} s"


# Was a defect (fixed since): close_graceful lingers 2 s in the worker's only thread.
def test_clients_refused_with_413_that_stay_silent_do_not_hold_the_worker(server: int) -> None:
    hogs = [_connect(server) for _ in range(2)]
    try:
        for hog in hogs:
            hog.sendall(_post(server, b" " * 100)[:-100].replace(b": 100\r", b": 99999999\r"))
        time.sleep(0.3)
        waited = _get_seconds(server, wait=6.0)
    finally:
        for hog in hogs:
            hog.close()
    assert waited < 1.0, f"held the worker: {waited:.1f} s"


@pytest.mark.xfail(
    strict=True,
    reason="Known, left alone: a client that reads no answer holds the worker SOCKET_SECONDS "
    "per write (a slow reader; a buffering proxy in front absorbs it)",
)
def test_a_client_that_reads_no_answer_does_not_hold_the_worker(server: int) -> None:
    hog = socket.socket()
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        hog.connect(("127.0.0.1", server))
        hog.sendall(_get(server) * 400)  # 400 pipelined answers of 6 KB, never read
        time.sleep(1.0)
        # Probed until held, for up to 10 s: on a loaded machine the worker may not yet have
        # written enough of the hog's answers to fill the sockets' buffers at the first probe.
        deadline = time.monotonic() + 10.0
        waited = _get_seconds(server, wait=3.0)
        while waited < 1.0 and time.monotonic() < deadline:
            time.sleep(0.2)
            waited = _get_seconds(server, wait=3.0)
    finally:
        hog.close()
    assert waited < 1.0, f"held the worker: {waited:.1f} s"


def _rescan_seconds(steps: int) -> float:
    arriving = worker._Arriving(since=0.0)
    arriving.data += b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunks = b"1\r\na\r\n" * 17000  # 100 KiB of one-byte chunks, in ``steps`` reads
    step = -(-len(chunks) // steps)
    started = time.process_time()
    for start in range(0, len(chunks), step):
        arriving.data += chunks[start : start + step]
        worker._complete(arriving)
    return time.process_time() - started


# Was a defect (fixed since): each read re-parses the whole chunked body: quadratic.
def test_a_chunked_body_trickling_in_costs_linear_cpu() -> None:
    # On the server: 2 MiB of one-byte chunks sent over 24 s took 15 s of the worker's CPU,
    # and a GET meanwhile waited over 20 s.
    once, trickled = _rescan_seconds(1), _rescan_seconds(100)
    assert trickled < 10 * once + 0.05, f"{trickled:.2f} s against {once:.3f} s in one read"


# Was a defect (fixed since): a chunked body's size on the wire has no limit.
def test_a_chunked_body_far_larger_on_the_wire_than_its_data_is_refused() -> None:
    arriving = worker._Arriving(since=0.0)
    arriving.data += b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    arriving.data += (b"1;x=" + b"y" * 1000 + b"\r\na\r\n") * 3000  # 3 MB kept for 3 KB of data
    assert worker._complete(arriving) != worker._State.WAITING


# Was a defect (fixed since): 100 Continue is sent to an HTTP/1.0 client.
def test_no_100_continue_for_an_http_1_0_request(server: int) -> None:
    # RFC 9110 section 10.1.1 and 15.2: ignore the expectation; no 1xx to an HTTP/1.0 client.
    with _connect(server) as client:
        head = _post(server, b"{}", extra="Expect: 100-continue\r\n").replace(b"1.1", b"1.0", 1)
        client.sendall(head[:-2])
        time.sleep(0.3)
        client.sendall(head[-2:])
        assert _receive(client, 10).startswith(b"HTTP/1.0 403 ")


# Was a defect (fixed since): a head with bare LFs waits for CRLFCRLF: dropped after 5 s.
def test_a_head_with_bare_line_feeds_is_refused_at_once(server: int) -> None:
    with _connect(server) as client:
        client.sendall(f"GET /sign-in HTTP/1.1\nHost: localhost:{server}\n\n".encode())
        assert _statuses(_receive(client, 2.0)) == ["400"]  # gunicorn's answer, before
