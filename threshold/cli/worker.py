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
"""

from __future__ import annotations

import threading
import time
from concurrent import futures
from typing import Any

from gunicorn.workers import gthread

HEARTBEAT_SECONDS = 1.0


class InlineThreadWorker(gthread.ThreadWorker):  # type: ignore[misc]
    _answering = False
    _beating = False

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
                if not (conn.initialized or conn.data_ready or conn.wait_for_data(0)):
                    # Nothing to read yet: the poller watches it (gthread's deferral).
                    done.set_result(gthread._DEFER)  # noqa: SLF001
                else:
                    done.set_result(self.handle(conn))
            except BaseException as exc:  # noqa: BLE001 - as the pool would hold it
                done.set_exception(exc)
            # As gthread's done-callback would, in this thread (a SystemExit from a
            # signal handler while answering is raised again here).
            self.finish_request(conn, done)
        finally:
            self._answering = False
