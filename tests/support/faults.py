"""Database faults, injected where the database itself fails: a wrapper around the connection's
statements (``connection.execute_wrapper``), never a mock of the database. The statements run
against the real database until the fault is due, and the fault is the exception the driver
raises, so what the code does about it is what it does in production."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import DataError, OperationalError, connection

# Transaction control, which Django sends itself (savepoints in tests, BEGIN on PostgreSQL).
CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


def is_work(sql: str) -> bool:
    """Whether ``sql`` holds a statement other than transaction control (the fast path sends
    BEGIN with its first statement and COMMIT with its last on PostgreSQL)."""
    return any(
        part.strip() and not part.lstrip().upper().startswith(CONTROL) for part in sql.split(";")
    )


@contextmanager
def database_fails(
    *, at: int | None = None, where: Callable[[str], bool] = is_work
) -> Iterator[list[str]]:
    """``OperationalError: database is locked`` (SQLite's answer to a writer holding the lock;
    PostgreSQL's failover and closed connections are the same class) from every statement
    ``where`` selects, or only from the ``at``-th of them (0-based). Yields the statements
    seen, in order."""
    seen: list[str] = []

    def fail(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        if where(sql):
            seen.append(sql)
            if at is None or len(seen) - 1 == at:
                raise OperationalError("database is locked")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(fail):
        yield seen


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list | tuple):
        return any(_has_nul(item) for item in value)
    if isinstance(value, dict):
        return any(_has_nul(item) for item in value.values())
    return False


@contextmanager
def nul_refused_as_postgresql_does() -> Iterator[None]:
    """PostgreSQL's refusal of a NUL in a text parameter (psycopg's DataError), on any database:
    a test on SQLite then fails where PostgreSQL would answer a 500."""

    def refuse(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        if _has_nul(params):
            raise DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(refuse):
        yield
