"""SQLite's checkpoints in a thread of each worker, not in a request (cli/checkpoints.py)."""

from __future__ import annotations

import sqlite3
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connections
from django.db.backends.signals import connection_created

from tests.support.processes import DATABASE_FILE, one_worker, serving
from threshold.cli import checkpoints

# Its databases are SQLite files of its own: the PostgreSQL run skips it.
pytestmark = pytest.mark.same_on_every_database

PAGE = 4096


@pytest.fixture
def database(tmp_path: Path) -> Iterator[dict[str, object]]:
    """Django's settings of a SQLite file, as a worker serves it; the signal left connected
    by ``leave_to_a_thread`` is disconnected again (its thread ends with the test run)."""
    path = tmp_path / "threshold.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (data BLOB)")
    yield {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path), "OPTIONS": {"timeout": 5}}
    connection_created.disconnect(dispatch_uid="threshold.cli.checkpoints")


def _write_pages(path: str, pages: int) -> None:
    """Commits of about ``pages`` pages, on a connection that checkpoints as a request's does
    (up to the backstop, by itself)."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute(f"PRAGMA wal_autocheckpoint={checkpoints.BACKSTOP_PAGES}")
        for _ in range(pages // 10):
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT INTO t VALUES (?)", [(b"x" * (PAGE - 100),)] * 10)
            db.execute("COMMIT")
    finally:
        db.close()


def test_the_thread_copies_the_log_into_the_database(database: dict[str, object]) -> None:
    path = str(database["NAME"])
    _write_pages(path, 1500)  # past SQLite's own 1,000, short of the backstop
    # Nothing checkpointed yet: the pages are all in the log.
    assert Path(path).stat().st_size < 100 * PAGE

    checkpoints.leave_to_a_thread(database)
    deadline = time.monotonic() + 5
    while Path(path).stat().st_size < 1500 * PAGE and time.monotonic() < deadline:
        time.sleep(0.05)
    assert Path(path).stat().st_size >= 1500 * PAGE


@pytest.mark.django_db
def test_requests_connections_leave_checkpoints_to_the_thread_up_to_the_backstop(
    database: dict[str, object],
) -> None:
    checkpoints.leave_to_a_thread(database)
    fresh = connections.create_connection("default")
    try:
        with fresh.cursor() as cursor:
            cursor.execute("PRAGMA wal_autocheckpoint")
            assert cursor.fetchone() == (checkpoints.BACKSTOP_PAGES,)
    finally:
        fresh.close()


def _checkpointing_threads() -> int:
    return sum(thread.name == "wal-checkpoint" for thread in threading.enumerate())


def test_nothing_changes_on_postgresql() -> None:
    receivers, threads = len(connection_created.receivers), _checkpointing_threads()
    checkpoints.leave_to_a_thread({"ENGINE": "django.db.backends.postgresql", "NAME": "t"})
    assert len(connection_created.receivers) == receivers
    assert _checkpointing_threads() == threads


def test_a_served_worker_copies_what_was_written_into_the_database(tmp_path: Path) -> None:
    """`threshold serve`'s workers start the thread: another process's commits, short of
    SQLite's own 1,000 pages and with no request to the server, reach the database file."""
    var = tmp_path / "var"
    port, env = one_worker(var)
    path = var / DATABASE_FILE

    def is_up() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/sign-in", timeout=5) as answer:
            return bool(answer.status == 200)

    with serving(env, tmp_path / "server.log", is_up):
        writer = sqlite3.connect(path, isolation_level=None)
        try:
            writer.execute("PRAGMA wal_autocheckpoint=0")  # this one never checkpoints
            writer.execute("CREATE TABLE probe (data BLOB)")
            before = path.stat().st_size
            writer.executemany("INSERT INTO probe VALUES (?)", [(b"x" * (PAGE - 100),)] * 100)
            assert path.stat().st_size == before  # in the log only
            deadline = time.monotonic() + 5
            while path.stat().st_size < before + 100 * PAGE and time.monotonic() < deadline:
                time.sleep(0.05)
            assert path.stat().st_size >= before + 100 * PAGE
        finally:
            writer.close()
