"""gunicorn's gthread worker, answering in its main thread when it has one thread.

``threshold serve`` runs gthread workers of one thread: one request at a time per worker,
as sync workers, with kept-alive connections (docs/operations.md, "Serving"). gthread
still hands every request to its pool's one thread and the result back through a pipe:
two thread switches, a pipe write and read and the GIL passed back and forth per request,
for no concurrency. With one thread this worker runs the request in the main thread, and
everything else (accepting, keep-alive, timeouts, shutdown) stays gthread's.

Answering in the main thread would stop gthread's main loop from telling the arbiter that
the worker is alive while a long request runs (a streamed audit-log export), and the
arbiter would kill it after ``timeout`` seconds: a thread does that once a second instead,
as the main loop did while the pool's thread answered (and the main loop, which did it on
every turn, a file-time system call two or three times per request, no longer does).

A new connection that has sent nothing yet (a browser's preconnect, a slow client) goes
straight to the poller instead of holding the worker for up to five seconds, as gthread's
one thread would (``tests/integration/test_serving.py``).

A request is answered only once all of it is here (``_gather``): its head, and its body
when it has one. Until then the connection waits in the poller, its bytes kept, and the
worker answers others; each read looks only at what is new. gthread reads a request with
blocking calls and no time limit once its first byte arrived, so a client that sent half a
request and stopped (a slowloris) held a worker for good, and as many such clients as
workers stopped the server. gunicorn's parser then reads the gathered bytes and nothing
more (``_BufferedUnreader``): where it would want more than arrived, the request ends there.
A request still incomplete ``REQUEST_SECONDS`` after its first byte, or silent for gthread's
keep-alive timeout, is dropped at once, as is one whose head is over ``MOST_HEAD_BYTES``;
one announcing a body over ``MOST_BODY_BYTES`` (Threshold takes 64 KiB at most), or a
chunked one over ``MOST_REQUEST_BYTES`` on the wire, gets 413. Writing the answer, each
blocking call waits ``SOCKET_SECONDS`` at most.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers import gthread

from threshold.core.catalog import CATALOG

HEARTBEAT_SECONDS = 1.0

# What a request may take to arrive, from its first byte, and how big it may be. A browser
# sends a whole request at once; these bound what a slow or hostile client holds (memory and
# a connection, never the worker).
REQUEST_SECONDS = 30.0
MOST_HEAD_BYTES = 64 * 1024
# Threshold takes 64 KiB at most (DATA_UPLOAD_MAX_MEMORY_SIZE): up to this, its own 413 answers
# in the catalog's words.
MOST_BODY_BYTES = 1024 * 1024
# A chunked body's size on the wire (its chunk lines and extensions too), head included.
MOST_REQUEST_BYTES = MOST_HEAD_BYTES + 2 * MOST_BODY_BYTES
_MOST_CHUNK_LINE = 8190  # gunicorn's limit_request_field_size, which its chunk lines share
_READ_BYTES = 64 * 1024
# In the words the application's own 413 uses (the catalog's bad_request entry).
_REFUSED = f"{CATALOG['bad_request'].title}: {CATALOG['bad_request'].message}\n".encode()
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# The status line gunicorn gives a head it refuses itself (a malformed request line or header,
# an over-long line, too many fields: 400, 414, 431, ...).
_STATUS_LINE = re.compile(rb"\AHTTP/1\.1 ([1-5][0-9][0-9]) ([^\r\n]*)\r\n")
# The longest a blocking call on the connection may wait once gunicorn has it: a write of the
# answer to a client that takes nothing.
SOCKET_SECONDS = 30.0


@dataclass
class _Arriving:
    """The part of a request that has arrived, kept on its connection between reads, and how
    far it has been looked through (each read scans only what is new)."""

    since: float
    data: bytearray = field(default_factory=bytearray)
    continued: bool = False  # "100 Continue" sent for it
    searched: int = 0  # the head's end was looked for up to here
    body_at: int = -1  # where the body starts, once the head is here
    framing: tuple[int | None, bool] | None = None  # _framing's, once the head is here
    chunk_at: int = 0  # chunked: where the next chunk's size line starts
    chunked_bytes: int = 0  # chunked: the data of the chunks before it


class _BufferedUnreader(SocketUnreader):  # type: ignore[misc]
    """gunicorn's reader of a request ``_gather`` read whole: what it holds, and then the end
    of the input, never a wait on the socket. Where gunicorn would want more than arrived (a
    request it reads otherwise than ``_complete`` does), the request ends there: a 400 or a
    closed connection, not a worker held."""

    def chunk(self, size_hint: int | None = None) -> bytes:
        return b""


class _TimedSocket(socket.socket):
    """A connection whose blocking mode has a time limit (``SOCKET_SECONDS``)."""

    __slots__ = ()

    def setblocking(self, flag: bool) -> None:
        if flag:
            self.settimeout(SOCKET_SECONDS)
        else:
            super().setblocking(False)


class _State(StrEnum):
    """How much of a request is here (``_complete``)."""

    READY = "ready"  # all of it, or enough for gunicorn to refuse it
    WAITING = "waiting"  # more to come
    CLOSED = "closed"  # drop the connection: a head over its limit, a client gone
    TOO_LARGE = "too large"  # a body over its limit: 413
    CONTINUE = "continue"  # the client waits for "100 Continue" before it sends the body


def _refusal(status: bytes, reason: bytes) -> bytes:
    """An answer of gunicorn's ``status`` in the words the application's own 4xx use (the
    catalog's bad_request entry): the worker's own 413, and gunicorn's refusals instead of its
    page, which would echo part of the request back."""
    return (
        b"HTTP/1.1 " + status + b" " + reason + b"\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n"
        b"Connection: close\r\n" + f"Content-Length: {len(_REFUSED)}\r\n\r\n".encode() + _REFUSED
    )


_TOO_LARGE = _refusal(b"413", b"Content Too Large")


class _CatalogWords:
    """The client's socket while gunicorn writes one of its own error pages to it
    (``handle_error``, through ``util.write_nonblock``): a 4xx goes out in the catalog's words
    instead, with gunicorn's status (and a 501, an unknown transfer coding); a 500, as gunicorn
    wrote it."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock

    def gettimeout(self) -> float | None:
        return self._sock.gettimeout()  # type: ignore[no-any-return]

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def sendall(self, data: bytes) -> None:
        line = _STATUS_LINE.match(data)
        if line is not None and (line.group(1).startswith(b"4") or line.group(1) == b"501"):
            data = _refusal(line.group(1), line.group(2))
        self._sock.sendall(data)


class InlineThreadWorker(gthread.ThreadWorker):  # type: ignore[misc]
    _answering = False
    _beating = False

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """gunicorn's, whose page for a head it refuses says the catalog's words."""
        super().handle_error(req, _CatalogWords(client), addr, exc)

    def init_process(self) -> None:
        if self.cfg.threads == 1:
            threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True).start()
        super().init_process()  # runs the worker until it stops

    def _heartbeat(self) -> None:
        self._beating = True
        try:
            while self.alive:
                super().notify()
                time.sleep(HEARTBEAT_SECONDS)
        finally:
            self._beating = False  # a stopping worker's main loop tells the arbiter again

    def notify(self) -> None:
        if not self._beating:
            super().notify()

    def enqueue_req(self, conn: Any) -> None:
        if self.cfg.threads != 1:
            super().enqueue_req(conn)
            return
        if self._answering:
            # A request read ahead while answering one (a pipelined client): next, from
            # the main loop, so that this never recurses.
            self.method_queue.defer(self.enqueue_req, conn)
            return
        done: futures.Future[Any] = futures.Future()
        self._answering = True
        try:
            try:
                gathered = self._gather(conn)
                if gathered == _State.WAITING:
                    # More to come: the poller watches it (gthread's deferral).
                    done.set_result(gthread._DEFER)  # noqa: SLF001
                elif gathered == _State.CLOSED:
                    # At once: gthread's graceful close waits up to 2 s for the client to
                    # close its side, which a hostile one never does.
                    self.nr_conns -= 1
                    conn.close()
                    return
                else:
                    done.set_result(self.handle(conn))
            except BaseException as exc:  # noqa: BLE001 - as the pool would hold it
                done.set_exception(exc)
            # As gthread's done-callback would, in this thread (a SystemExit from a
            # signal handler while answering is raised again here).
            self.finish_request(conn, done)
        finally:
            self._answering = False

    def _gather(self, conn: Any) -> _State:
        """Read, without waiting, what the client has sent: READY once the whole request is
        here (then handed to gunicorn's parser), WAITING while more is to come, CLOSED when
        the connection is to end."""
        if self.cfg.is_ssl:
            # gunicorn terminates TLS itself (``threshold serve`` never asks it to): its own
            # reading, as gthread does it.
            ready = conn.initialized or conn.data_ready or conn.wait_for_data(0)
            return _State.READY if ready else _State.WAITING
        if type(conn.sock) is socket.socket:
            # Once gunicorn reads and writes with blocking calls, each waits SOCKET_SECONDS at
            # most (it sets them blocking, which is no limit at all).
            conn.sock.__class__ = _TimedSocket
        arriving: _Arriving | None = getattr(conn, "threshold_arriving", None)
        if arriving is None:
            arriving = _Arriving(since=time.monotonic())
            if conn.parser is not None:
                # A kept-alive connection: what gunicorn read ahead of its last request.
                arriving.data += conn.parser.unreader.take_buffered()
            conn.threshold_arriving = arriving
        state, ended = _read(conn.sock, arriving)
        if state == _State.TOO_LARGE:
            _send(conn.sock, _TOO_LARGE)
            return _State.CLOSED
        if state == _State.CONTINUE:
            arriving.continued = True
            state = _State.WAITING if _send(conn.sock, _CONTINUE) else _State.CLOSED
        if state == _State.WAITING:
            if ended or time.monotonic() - arriving.since > REQUEST_SECONDS:
                return _State.CLOSED
            if not arriving.data:
                del conn.threshold_arriving  # nothing yet: gthread's keep-alive wait
            return _State.WAITING
        if state == _State.READY:
            del conn.threshold_arriving
            conn.data_ready = True
            conn.init()  # blocking again, and the parser made for a new connection
            if type(conn.parser.unreader) is SocketUnreader:
                conn.parser.unreader.__class__ = _BufferedUnreader
            conn.parser.unreader.unread(bytes(arriving.data))
        return state


def _read(sock: Any, arriving: _Arriving) -> tuple[_State, bool]:
    """Read what ``sock`` holds into ``arriving`` until the request is whole or nothing more
    is there: how much is here, and whether the client closed its side."""
    sock.setblocking(False)
    while True:
        while arriving.searched == 0 and arriving.data.startswith(b"\r\n"):
            del arriving.data[:2]  # RFC 9112 §2.2: an empty line before a request is ignored
        state = _complete(arriving)
        if state != _State.WAITING:
            return state, False
        try:
            chunk = sock.recv(_READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return state, False
        except OSError:
            return _State.CLOSED, True
        if not chunk:
            return state, True
        arriving.data += chunk


def _send(sock: Any, data: bytes) -> bool:
    try:
        sock.send(data)
    except OSError:
        return False
    return True


def _complete(arriving: _Arriving) -> _State:
    """How much of a request ``arriving`` holds, looking only at what arrived since the last
    look. Only what decides when the request is here is read: a request gunicorn refuses is
    handed over as soon as that is seen, for gunicorn's answer."""
    data = arriving.data
    if arriving.body_at < 0:
        end = data.find(b"\r\n\r\n", max(0, arriving.searched - 3))
        if _bare_line_feed(data, max(0, arriving.searched - 1), end if end >= 0 else len(data)):
            return _State.READY  # refused (RFC 9112 §2.2: gunicorn takes no bare LF)
        if end < 0:
            arriving.searched = len(data)
            return _State.CLOSED if len(data) > MOST_HEAD_BYTES else _State.WAITING
        arriving.searched = arriving.body_at = arriving.chunk_at = end + 4
        arriving.framing = _framing(bytes(data[:end]))
    if arriving.framing is None:
        return _State.READY  # no body, or refused
    length, expects = arriving.framing
    if length is None:
        state = _chunked_complete(arriving)
    elif length > MOST_BODY_BYTES:
        return _State.TOO_LARGE
    else:
        state = _State.READY if len(data) - arriving.body_at >= length else _State.WAITING
    if state == _State.WAITING and expects and not arriving.continued:
        return _State.CONTINUE
    return state


def _bare_line_feed(data: bytearray, start: int, stop: int) -> bool:
    """Is there a line feed without its carriage return in ``data[start:stop]``?"""
    position = data.find(b"\n", start, stop)
    while position >= 0:
        if position == 0 or data[position - 1] != ord("\r"):
            return True
        position = data.find(b"\n", position + 1, stop)
    return False


def _framing(head: bytes) -> tuple[int | None, bool] | None:
    """The body's length (None: chunked) and whether the client expects "100 Continue" (an
    HTTP/1.1 client: RFC 9110 §10.1.1); None for a request without a body, or one gunicorn
    refuses (RFC 9112 §6.1, §6.3). A few searches, not a parse: this runs before every
    request."""
    low = head.lower()
    lengths = _values(low, b"\r\ncontent-length:")
    codings = [
        coding.strip()
        for value in _values(low, b"\r\ntransfer-encoding:")
        for coding in value.split(b",")
    ]
    expects = b"100-continue" in _values(low, b"\r\nexpect:") and low.split(b"\r\n", 1)[0].endswith(
        b"http/1.1"
    )
    if codings:
        return (None, expects) if not lengths and codings[-1] == b"chunked" else None
    if not lengths or len(set(lengths)) != 1 or not lengths[0].isdigit():
        return None
    return int(lengths[0]), expects


def _values(head: bytes, prefix: bytes) -> list[bytes]:
    """The values of the (lower-cased) head's fields that start with ``prefix``."""
    values = []
    start = head.find(prefix)
    while start >= 0:
        end = head.find(b"\r\n", start + 2)
        values.append(head[start + len(prefix) : end if end >= 0 else len(head)].strip(b" \t"))
        start = head.find(prefix, start + 2)
    return values


_HEX = re.compile(rb"[0-9A-Fa-f]+")


def _chunked_complete(arriving: _Arriving) -> _State:
    """READY once a chunked body (RFC 9112 §7.1) and its trailers are all here; each chunk
    is looked at once, when all of it has arrived."""
    data = arriving.data
    if len(data) > MOST_REQUEST_BYTES:
        return _State.TOO_LARGE
    while True:
        position = arriving.chunk_at
        line_end = data.find(b"\r\n", position)
        if line_end < 0:
            return _State.WAITING if len(data) - position <= _MOST_CHUNK_LINE else _State.READY
        size_text = bytes(data[position:line_end]).split(b";", 1)[0].strip(b" \t")
        if not _HEX.fullmatch(size_text):
            return _State.READY  # refused
        size = int(size_text, 16)
        if arriving.chunked_bytes + size > MOST_BODY_BYTES:
            return _State.TOO_LARGE
        if size == 0:
            # The last chunk, then its trailers, if any, up to an empty line.
            return _State.READY if data.find(b"\r\n\r\n", line_end) >= 0 else _State.WAITING
        if line_end + 2 + size + 2 > len(data):
            return _State.WAITING
        arriving.chunk_at = line_end + 2 + size + 2
        arriving.chunked_bytes += size
