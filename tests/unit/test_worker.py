"""``threshold.cli.worker.InlineThreadWorker``: its heartbeat while the main thread answers.

(Its requests are tested against the real server in tests/integration/test_serving.py.)
"""

from __future__ import annotations

import logging
import os
import threading
import time

from gunicorn.config import Config

from threshold.cli import worker as worker_module
from threshold.cli.worker import InlineThreadWorker


def new_worker() -> InlineThreadWorker:
    config = Config()
    config.set("threads", 1)
    return InlineThreadWorker(
        age=1,
        ppid=os.getppid(),
        sockets=[],
        app=None,
        timeout=30,
        cfg=config,
        log=logging.getLogger("test-worker"),
    )


def test_the_heartbeat_tells_the_arbiter_the_worker_lives_while_the_main_thread_is_busy(
    monkeypatch,
) -> None:
    monkeypatch.setattr(worker_module, "HEARTBEAT_SECONDS", 0.05)
    worker = new_worker()
    try:
        beats = threading.Thread(target=worker._heartbeat)
        beats.start()
        # The main thread is busy (a long request): the arbiter still sees the file's time move.
        seen = {worker.tmp.last_update()}
        deadline = time.monotonic() + 5
        while len(seen) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
            seen.add(worker.tmp.last_update())
        assert len(seen) >= 3
        worker.alive = False
        beats.join(timeout=5)
        assert not beats.is_alive()  # a stopping worker's heartbeat stops with it
    finally:
        worker.tmp.close()


def test_the_main_loop_leaves_the_heartbeat_to_the_thread_while_it_beats() -> None:
    worker = new_worker()
    try:
        os.utime(worker.tmp.fileno(), (1.0, 1.0))
        worker._beating = True
        worker.notify()  # a turn of the main loop
        assert worker.tmp.last_update() == 1.0
        worker._beating = False  # stopped: a stopping worker's main loop tells the arbiter
        worker.notify()
        assert worker.tmp.last_update() > 1.0
    finally:
        worker.tmp.close()
