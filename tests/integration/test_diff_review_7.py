"""Diff review 7: 5b78092..3862b5c (bd4bd2f, bench/README.md only, on top).

Reviewed: ``threshold serve``'s start-up work in a forked child (``_in_a_child``, ``_prepare``)
and the metadata it hands back (``read_default_store``, ``use_default_store``); the
Content-Length of more than 18 digits and the body the client stops sending
(``declared_length``, ``request_body``, ``form_refusal``, the fast path's ``_read_body``); the
Content-Type parameters Django cannot parse (``unreadable_charset``, ``_charset_refusal``); the
fast path's transaction on one cursor (``_transaction``, ``_sign_in``, ``_insert_session``,
``hotpath.find_row`` with ``on``, ``_DriverCursor.close``); the signers kept per salt
(``web.signers``) and their users (``sessions.flow``, ``passkeys.pending``); the one-line
loggers in LOGGING.

Checked: every codec ``codecs.lookup`` knows, as a charset and in an RFC 2231 parameter,
against ``unreadable_charset`` and a form body's parse (only UnicodeError, LookupError and
SuspiciousOperation come out, all answered); 30,000 generated Content-Types against building a
WSGIRequest and reading GET (nothing ``unreadable_charset`` lets through fails); a query string
of 1,001 fields and multipart part headers Django cannot parse, at the lean, OAuth, device and
static paths (no 500, nothing logged at ERROR); the staticfiles storage, not built in the master
before the child collects (so the workers read the new manifest); the signers' cache emptied
after ``override_settings`` changes the keys.

No defect was found. The tests pin what the existing ones do not reach: the existing fault
tests inject through ``connection.execute_wrapper``, which makes ``hotpath._cursor`` give
Django's cursor, so the driver's own cursor that a served sign-in runs its transaction on
never met a real failure. Here it does: SQLite locked at ``BEGIN IMMEDIATE`` by another
connection, and a PostgreSQL backend terminated between the transaction's first statement and
its writes (retried on a new connection with health checks, 503 without; since c0c80d1 the
writes' statement carries the COMMIT). That the start-up child leaves the master no file
descriptor, thread, child process or database connection is checked in
tests/integration/test_worker_memory.py, whose probe already starts up as ``serve`` does.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest
from django.db import connection

from tests.integration.conftest import ORIGIN
from tests.integration.test_fast_sign_in import (  # noqa: F401 - the fixture
    Client,
    in_transaction,
    rows,
    served,
)
from threshold.core import ceremony

pytestmark = pytest.mark.django_db


def _assertion(ada: Any, client: Client) -> bytes:
    options = client.options()
    return json.dumps(ada.authenticator.get(options, ORIGIN)).encode()


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's write lock")
def test_sqlite_locked_at_begin_immediate_on_the_drivers_cursor(ada, served):  # noqa: F811
    """Another connection holds the write lock past the busy timeout: the fast path's BEGIN
    IMMEDIATE, on the driver's own cursor, fails; 503 (not handed over), no transaction left
    open, nothing stored, and the same answer signs in once the lock is gone."""
    client = Client(as_served=True)
    assertion = _assertion(ada, client)
    cookies = dict(client.cookies)
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout = 50")  # not 20 s: the lock is certain
    other = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    before = rows()
    try:
        status, _, content, _ = client.post("/sign-in/result", assertion, cookies)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert status == 503, content
    assert json.loads(content)["error"]["code"] == "passkey_unavailable"
    assert served.handed == []
    assert not in_transaction()
    assert rows() == before
    status, _, content, _ = client.post("/sign-in/result", assertion, cookies)
    assert status == 200, content
    assert served.handed == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's backends")
@pytest.mark.parametrize("health_checks", [True, False])
def test_a_postgresql_connection_that_dies_mid_transaction(
    ada,
    served,  # noqa: F811
    monkeypatch,
    health_checks,
):
    """The backend is terminated after the transaction's first statement (the challenge used
    up, the passkey found), before its writes: the UPDATE fails on the driver's cursor, the
    ROLLBACK too. With health checks (threshold.config's default) the sign-in runs once more
    on a new connection and signs in, once; without, 503 with nothing stored."""
    import psycopg  # noqa: PLC0415 - PostgreSQL's driver, only there

    client = Client(as_served=True)
    assertion = _assertion(ada, client)
    cookies = dict(client.cookies)
    real = ceremony.finish_authentication
    killed: list[int] = []

    def then_terminate(*args: Any, **kwargs: Any) -> Any:
        verified = real(*args, **kwargs)
        if not killed:
            pid = connection.connection.info.backend_pid
            params = connection.get_connection_params()
            params.pop("cursor_factory", None)
            params.pop("context", None)
            with psycopg.connect(**params, autocommit=True) as other:
                other.execute("SELECT pg_terminate_backend(%s)", [pid])
            killed.append(pid)
        return verified

    monkeypatch.setattr(ceremony, "finish_authentication", then_terminate)
    connection.ensure_connection()
    monkeypatch.setitem(connection.settings_dict, "CONN_HEALTH_CHECKS", health_checks)
    connection.health_check_enabled = health_checks  # read when the connection was made
    used, audited, sessions, counters = rows()
    status, _, content, _ = client.post("/sign-in/result", assertion, cookies)
    assert killed
    assert served.handed == []
    assert not in_transaction()
    if health_checks:
        assert status == 200, content
        after = rows()
        assert after[:3] == (used + 1, audited + 1, sessions + 1)
        assert after[3] > counters
    else:
        assert status == 503, content
        assert rows() == (used, audited, sessions, counters)
        status, _, content, _ = client.post("/sign-in/result", assertion, cookies)
        assert status == 200, content
