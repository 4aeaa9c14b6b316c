"""SQLite's WAL checkpoints, off the requests' path, in `threshold serve`'s workers.

SQLite appends every commit to its write-ahead log, and by default the commit that takes the
log past 1,000 pages also copies them back into the database file: a checkpoint, with two
fsyncs, in that request. Under load that is one sign-in in about seventy, several
milliseconds late, and the requests queued behind it (`bench/README.md`, "Checkpoints").

In each worker, a thread of its own checkpoints every ``INTERVAL_SECONDS`` instead, on a
connection of its own (PASSIVE: it copies what no reader still needs and never waits for
a lock, so no request waits for it), and the requests' connections leave checkpoints to
it up to ``BACKSTOP_PAGES`` pages: should the thread fall behind, or stop, a commit past
that checkpoints as before. The thread's SQLite calls release the GIL, so the fsyncs
overlap the worker's requests. Other processes (the `threshold` commands) keep SQLite's
default.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from typing import Any

from django.db.backends.signals import connection_created

INTERVAL_SECONDS = 0.2
# 40 MB of log with 4 KiB pages: the thread keeps it far below that.
BACKSTOP_PAGES = 10_000

logger = logging.getLogger(__name__)


def leave_to_a_thread(database: dict[str, Any]) -> None:
    """For a worker about to serve on ``database`` (Django's settings of it): its requests'
    connections stop checkpointing short of the backstop, and a thread checkpoints. Nothing
    on PostgreSQL."""
    if not str(database["ENGINE"]).endswith("sqlite3"):
        return
    connection_created.connect(_backstop, dispatch_uid="threshold.cli.checkpoints")
    threading.Thread(
        target=_checkpoint_every_interval,
        args=(str(database["NAME"]), float(database["OPTIONS"].get("timeout", 5))),
        name="wal-checkpoint",
        daemon=True,
    ).start()


def _backstop(sender: Any, connection: Any, **kwargs: Any) -> None:
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")


def _checkpoint_every_interval(path: str, timeout: float) -> None:
    """Until the worker ends (a daemon thread)."""
    failed = False
    try:
        db = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        logger.warning("SQLite checkpoints left to the requests: %s", exc)
        return
    try:
        while True:
            time.sleep(INTERVAL_SECONDS)
            try:
                db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:
                # Once per worker: the requests' backstop checkpoints meanwhile.
                if not failed:
                    logger.warning("SQLite checkpoint failed, retrying: %s", exc)
                failed = True
    finally:
        db.close()
