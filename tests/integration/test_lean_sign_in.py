"""The lean sign-in path (threshold/passkeys/lean.py, hotpath.py): what it costs in SQL, and that
what it stores and answers is what the full stack would.

The rest of the suite drives the same URLs, so every sign-in test there runs through it too.
These run on SQLite and on PostgreSQL (``scripts/with-postgres``).
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections import Counter
from http.cookies import SimpleCookie
from typing import Any

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.auth import user_logged_in
from django.contrib.sessions.backends.base import VALID_KEY_CHARS
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from tests.integration.conftest import (
    ORIGIN,
    SESSION_EXPIRED,
    VERIFICATION_FAILED,
    Browser,
    assert_failed,
    assert_ok,
    begin_sign_in,
    last_event,
)
from tests.support.authenticator import TEST_AAGUID
from tests.support.prepared import unprepared
from tests.support.wsgi import wsgi
from threshold.accounts.models import User
from threshold.audit.actions import Origin
from threshold.core.policy import Policy, Rule
from threshold.passkeys import hotpath
from threshold.policy.access import get_policy
from threshold.policy.actions import do_update_policy
from threshold.policy.models import OrganisationPolicy
from threshold.sessions import flow
from threshold.sessions.models import Session
from threshold.sessions.store import SID, SessionStore

pytestmark = pytest.mark.django_db

LEAN = "threshold.passkeys.lean.LeanSignInMiddleware"
CEREMONY = "threshold_ceremony_authentication"
TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


def full_stack():
    """The settings without the lean path: every request goes through the whole stack."""
    return override_settings(MIDDLEWARE=[name for name in settings.MIDDLEWARE if name != LEAN])


def statements(queries: CaptureQueriesContext) -> list[str]:
    """Each statement's first words (``INSERT INTO "passkeys_usedchallenge"``), in order; on
    PostgreSQL, the fast path's prepared ones as the statements they stand for, and their
    preparation (once per connection) left out."""
    sent = (unprepared(q["sql"]) for q in queries.captured_queries)
    return [" ".join(sql.split()[:3]) for sql in sent if sql is not None]


def work(queries: CaptureQueriesContext) -> list[str]:
    return [s for s in statements(queries) if not s.upper().startswith(TRANSACTION_CONTROL)]


def use_challenge() -> str:
    """The statement that uses the challenge up and finds the passkey, person and policy:
    an INSERT … RETURNING on SQLite, an INSERT in a WITH clause on PostgreSQL."""
    if connection.vendor == "postgresql":
        return "WITH used AS"
    return 'INSERT INTO "passkeys_usedchallenge"'


def record_sign_in() -> list[str]:
    """The counter's UPDATE, the audit row and the session: on PostgreSQL one statement whose
    INSERTs run only when the UPDATE moved the counter (``hotpath.record_sign_in``)."""
    if connection.vendor == "postgresql":
        return ["WITH moved AS"]
    return [
        'UPDATE "passkeys_passkey" SET',
        'INSERT INTO "audit_auditevent"',
        'INSERT INTO "web_session"',
    ]


def in_one_transaction(queries: CaptureQueriesContext) -> bool:
    """Transaction control only before the first statement and after the last one."""
    kinds = [s.upper().startswith(TRANSACTION_CONTROL) for s in statements(queries)]
    first, last = kinds.index(False), len(kinds) - 1 - kinds[::-1].index(False)
    return not any(kinds[first : last + 1])


def test_options_write_nothing_and_read_only_the_policy(ada):
    with CaptureQueriesContext(connection) as queries:
        begin_sign_in(Browser())
    assert work(queries) == ['SELECT "document" FROM']


def test_a_sign_in_result_is_one_transaction_of_four_statements(ada):
    browser = Browser()
    options = begin_sign_in(browser)
    with CaptureQueriesContext(connection) as queries:
        assert_ok(browser.post_json("/sign-in/result", ada.authenticator.get(options, ORIGIN)))
    assert work(queries) == [use_challenge(), *record_sign_in()]
    assert in_one_transaction(queries)
    assert browser.is_signed_in()


def test_refused_sign_ins_stay_within_four_statements(ada):
    browser = Browser()
    options = begin_sign_in(browser)
    token = browser.client.cookies[CEREMONY].value
    assertion = ada.authenticator.get(options, ORIGIN)
    assert_ok(browser.post_json("/sign-in/result", assertion))

    # A replay: the challenge's INSERT finds it used, and the failure is audited.
    replaying = Browser()
    replaying.client.cookies[CEREMONY] = token
    with CaptureQueriesContext(connection) as queries:
        response = replaying.post_json("/sign-in/result", assertion)
    assert_failed(response, 400, SESSION_EXPIRED)
    assert work(queries) == [
        use_challenge(),
        'INSERT INTO "audit_auditevent"',
    ]
    assert last_event("sign_in.failed").reason == "challenge_missing"

    clone = Browser()
    options = begin_sign_in(clone)
    # A cloned authenticator: the counter goes back. Flag, and both audit rows in one INSERT.
    with CaptureQueriesContext(connection) as queries:
        response = clone.post_json(
            "/sign-in/result", ada.authenticator.get(options, ORIGIN, sign_count=1)
        )
    assert_failed(response, 400, VERIFICATION_FAILED)
    assert work(queries) == [
        use_challenge(),
        'UPDATE "passkeys_passkey" SET',
        'INSERT INTO "audit_auditevent"',
    ]
    assert in_one_transaction(queries)
    assert last_event("passkey.flagged_possibly_cloned").subject == ada.user


def test_a_counter_moved_meanwhile_flags_the_passkey(ada):
    """Two sign-ins with one passkey at once (PostgreSQL's READ COMMITTED): the one whose
    counter is no longer ahead when it writes is refused as a regression, not written back."""
    browser = Browser()
    options = begin_sign_in(browser)
    assertion = ada.authenticator.get(options, ORIGIN)  # counter 1

    moved = []

    def concurrent_sign_in(execute, sql, params, many, context):
        # The sign-in's UPDATE (on PostgreSQL, inside its one statement).
        if 'UPDATE "passkeys_passkey" SET "sign_count"' in sql and not moved:
            moved.append(True)
            # Another sign-in with the same passkey got there first, with counter 5.
            with connection.cursor() as cursor:
                cursor.execute(
                    'UPDATE "passkeys_passkey" SET "sign_count" = 5 WHERE "id" = %s',
                    [ada.passkey.pk],
                )
        return execute(sql, params, many, context)

    with connection.execute_wrapper(concurrent_sign_in):
        response = browser.post_json("/sign-in/result", assertion)
    assert_failed(response, 400, VERIFICATION_FAILED)
    passkey = ada.passkey
    assert (passkey.sign_count, passkey.is_possibly_cloned) == (5, True)
    assert last_event("sign_in.failed").reason == "sign_count_regressed"
    assert not browser.is_signed_in()


def signed_in_session(browser: Browser, ada) -> tuple[dict[str, Any], Session]:
    options = begin_sign_in(browser)
    assert_ok(browser.post_json("/sign-in/result", ada.authenticator.get(options, ORIGIN)))
    row = Session.objects.get(session_key=browser.session_key)
    return row.get_decoded(), row


@pytest.mark.parametrize("user_verified", [True, False])
def test_the_lean_path_stores_the_session_the_full_stack_would(ada, clock, user_verified):
    if not user_verified:
        policy = dataclasses.replace(get_policy(), user_verification="preferred")
        do_update_policy(policy, Origin.cli())
        ada.authenticator.user_verified = False
    lean_data, lean_row = signed_in_session(Browser(), ada)
    with full_stack():
        full_data, full_row = signed_in_session(Browser(), ada)
    # The same keys in the same order, the same values (the clock is pinned).
    # Each sign-in makes its own random sid (threshold.sessions.store.SID), in the same place.
    assert isinstance(lean_data[SID], str)
    assert isinstance(full_data[SID], str)
    assert lean_data[SID] != full_data[SID]
    lean_data[SID] = full_data[SID]
    assert list(lean_data.items()) == list(full_data.items())
    assert ("threshold.verified_at" in lean_data) is user_verified
    columns = ("user_id", "ip", "user_agent", "sign_in_method", "signed_in_at", "last_activity")
    assert [getattr(lean_row, c) for c in columns] == [getattr(full_row, c) for c in columns]
    assert abs((lean_row.expire_date - full_row.expire_date).total_seconds()) < 5
    assert lean_row.session_key != full_row.session_key


def answer(response) -> tuple[int, dict[str, str], dict[str, dict[str, str]], set[str]]:
    """Status, headers, cookies (their attributes, not their values or dates), the body's keys."""
    headers = {
        name: value
        for name, value in response.headers.items()
        if name not in ("Content-Length", "Set-Cookie")
    }
    cookies = {
        name: {
            key: str(value) for key, value in morsel.items() if value and key not in ("expires",)
        }
        for name, morsel in SimpleCookie(response.cookies.output(header="")).items()
    }
    return response.status_code, headers, cookies, set(response.json())


def journey(ada) -> list[tuple[Any, ...]]:
    """Options, a sign-in, options again with a bad flow token, a refused result."""
    browser = Browser()
    options = browser.post_json("/sign-in/options", {})
    signed_in = browser.post_json(
        "/sign-in/result", ada.authenticator.get(options.json()["publicKey"], ORIGIN)
    )
    stranger = Browser()
    expired = stranger.post_json("/sign-in/options", {}, HTTP_X_THRESHOLD_FLOW="x")
    missing = stranger.post_json("/sign-in/result", {})
    return [answer(r) for r in (options, signed_in, expired, missing)]


def test_the_lean_path_answers_with_the_full_stacks_headers_and_cookies(ada, clock):
    lean = journey(ada)
    with full_stack():
        full = journey(ada)
    assert lean == full
    # The sign-in sets the session, a rotated CSRF token, the signed-in cookie, and
    # removes the used ceremony.
    assert set(lean[1][2]) == {
        "threshold_session",
        "threshold_csrf",
        "threshold_signed_in",
        "threshold_ceremony_authentication",
    }


def test_nothing_listens_for_user_logged_in():
    """The lean path does not send user_logged_in (it has no request.user to send it with):
    connecting a receiver needs the lean path to send it first."""
    assert not user_logged_in.has_listeners(User)


def test_an_anonymous_flood_of_ten_thousand_options_requests_leaves_no_rows(ada):
    models = [model for model in apps.get_models() if model._meta.managed]
    before = {model: model.objects.count() for model in models}
    browser = Browser()
    for number in range(10_000):
        # From many networks: each has its own rate limit (tested in test_sign_in.py).
        address = f"10.4.{number // 200}.{number % 200}"
        response = browser.post_json("/sign-in/options", {}, REMOTE_ADDR=address)
        assert response.status_code == 200
    assert {model: model.objects.count() for model in models} == before
    assert browser.session_key is None


def test_the_wsgi_application_answers_the_sign_in_before_django(ada, clock):
    cookies: dict[str, str] = {}
    status, _, _ = wsgi("GET", "/sign-in", cookies=cookies)  # Django's page, and the CSRF cookie
    assert status == 200
    headers = {
        "HTTP_ORIGIN": ORIGIN,
        "HTTP_X_CSRFTOKEN": cookies["threshold_csrf"],
        "HTTP_X_THRESHOLD_FLOW": flow.issue_flow_token(flow.Flow.SIGN_IN),
    }
    with CaptureQueriesContext(connection) as queries:
        status, answer_headers, content = wsgi(
            "POST", "/sign-in/options", b"{}", cookies, **headers
        )
    assert status == 200, content
    assert work(queries) == ['SELECT "document" FROM']
    assert "default-src 'self'" in answer_headers["Content-Security-Policy"]
    assert answer_headers["X-Content-Type-Options"] == "nosniff"
    options = json.loads(content)["publicKey"]

    assertion = json.dumps(ada.authenticator.get(options, ORIGIN)).encode()
    with CaptureQueriesContext(connection) as queries:
        status, _, content = wsgi("POST", "/sign-in/result", assertion, cookies, **headers)
    assert status == 200, content
    assert work(queries) == [use_challenge(), *record_sign_in()]
    session = Session.objects.get(session_key=cookies["threshold_session"])
    assert session.user_id == ada.user.pk
    assert last_event("sign_in.succeeded").user_agent == "Mozilla/5.0 (WSGI)"

    # Signed in: the same endpoints now go to Django, with the session (and the CSRF
    # token the sign-in rotated).
    headers["HTTP_X_CSRFTOKEN"] = cookies["threshold_csrf"]
    status, _, content = wsgi("POST", "/sign-in/options", b"{}", cookies, **headers)
    assert status == 200, content
    # A cross-site request is Django's to refuse, in the catalog's words.
    status, _, content = wsgi(
        "POST",
        "/sign-in/options",
        b"{}",
        {"threshold_csrf": cookies["threshold_csrf"]},
        **{**headers, "HTTP_ORIGIN": "https://evil.example"},
    )
    assert status == 403
    assert json.loads(content)["error"]["title"] == SESSION_EXPIRED


def test_session_keys_are_32_characters_drawn_uniformly():
    """The store draws a key with one call to the CSPRNG (get_random_string makes 32)."""
    keys = [SessionStore()._get_new_session_key() for _ in range(2000)]
    assert len(set(keys)) == len(keys)
    assert all(len(key) == 32 and set(key) <= set(VALID_KEY_CHARS) for key in keys)
    counts = Counter("".join(keys))
    expected = 32 * len(keys) / len(VALID_KEY_CHARS)
    assert all(0.85 * expected < counts[c] < 1.15 * expected for c in VALID_KEY_CHARS), counts
    for position in (0, 15, 31):
        assert len({key[position] for key in keys}) == len(VALID_KEY_CHARS)


# --- The options request's policy: this process's last read, at most a second old ---------------


def other_process_sets_policy(policy: Policy) -> None:
    """What ``threshold policy set`` in another process does to this one: the row changes,
    and no signal reaches this process."""
    OrganisationPolicy.objects.filter(pk=1).update(document=policy.as_json())


def test_options_use_the_policy_read_within_the_last_second(ada, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(hotpath, "monotonic", lambda: now[0])
    do_update_policy(dataclasses.replace(get_policy(), ceremony_timeout_seconds=120), Origin.cli())
    browser = Browser()

    def options() -> tuple[int, list[str]]:
        with CaptureQueriesContext(connection) as queries:
            timeout = begin_sign_in(browser)["timeout"]
        return timeout, work(queries)

    assert options() == (120_000, ['SELECT "document" FROM'])
    now[0] += 0.5
    assert options() == (120_000, [])  # no statement at all
    other_process_sets_policy(dataclasses.replace(get_policy(), ceremony_timeout_seconds=60))
    now[0] += 0.49
    assert options() == (120_000, [])  # at most a second behind
    now[0] += 0.01
    assert options() == (60_000, ['SELECT "document" FROM'])
    # A change saved in this process applies at once.
    do_update_policy(dataclasses.replace(get_policy(), ceremony_timeout_seconds=90), Origin.cli())
    assert options() == (90_000, ['SELECT "document" FROM'])


def test_the_result_applies_the_policy_in_force_not_the_options_one(ada, monkeypatch):
    monkeypatch.setattr(hotpath, "monotonic", lambda: 1000.0)  # the options' policy stays
    do_update_policy(get_policy(), Origin.cli())  # a stored row, the defaults
    browser = Browser()
    begin_sign_in(browser)  # read and kept: the defaults
    deny = dataclasses.replace(get_policy(), aaguid_deny_list=(str(uuid.UUID(bytes=TEST_AAGUID)),))
    other_process_sets_policy(deny)
    options = begin_sign_in(browser)
    response = browser.post_json("/sign-in/result", ada.authenticator.get(options, ORIGIN))
    body = assert_failed(response, 400, "Passkey not allowed")
    assert body["error"]["code"] == "passkey_not_allowed"
    assert last_event("sign_in.failed").reason == Rule.AAGUID_DENIED
    assert not browser.is_signed_in()


# --- The connection: no health-check query, and a dead connection replaced --------------------


def lean_sign_in(ada, cookies: dict[str, str]) -> int:
    headers = {
        "HTTP_ORIGIN": ORIGIN,
        "HTTP_X_CSRFTOKEN": cookies["threshold_csrf"],
        "HTTP_X_THRESHOLD_FLOW": flow.issue_flow_token(flow.Flow.SIGN_IN),
    }
    status, _, content = wsgi("POST", "/sign-in/options", b"{}", cookies, as_served=True, **headers)
    assert status == 200, content
    assertion = json.dumps(ada.authenticator.get(json.loads(content)["publicKey"], ORIGIN))
    status, _, content = wsgi(
        "POST", "/sign-in/result", assertion.encode(), cookies, as_served=True, **headers
    )
    assert json.loads(content)["status"] == "ok", content
    return status


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fast", [True, False], ids=["fast path", "lean path"])
def test_the_sign_in_paths_send_no_health_check_and_replace_a_dead_connection(
    ada, monkeypatch, settings, fast
):
    # An anonymous browser's sign-in takes the fast path (passkeys/fastpath.py) unless it is off.
    settings.THRESHOLD_FAST_SIGN_IN = fast
    assert connection.settings_dict["CONN_HEALTH_CHECKS"]
    checks: list[bool] = []
    is_usable = connection.is_usable

    def counted() -> bool:
        checks.append(usable := is_usable())
        return usable

    monkeypatch.setattr(connection, "is_usable", counted)
    sessions = Session.objects.filter(user=ada.user)
    before = sessions.count()
    cookies: dict[str, str] = {}
    assert wsgi("GET", "/sign-in", cookies=cookies, as_served=True)[0] == 200
    assert checks == [True]  # Django's stack checks, as before
    assert lean_sign_in(ada, cookies) == 200
    assert checks == [True]  # neither the options nor the result asked
    assert sessions.count() == before + 1
    if connection.vendor != "postgresql":
        return  # SQLite's connection is a file: it cannot be killed
    # PostgreSQL ends this worker's connection (a restart, a failover, an idle timeout).
    cookies.pop("threshold_session")
    other = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        with other.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(%s)", [connection.connection.info.backend_pid]
            )
    finally:
        other.close()
    assert lean_sign_in(ada, cookies) == 200
    assert sessions.count() == before + 2


def test_the_result_runs_its_statements_on_the_drivers_own_cursor(ada):
    """Outside a query log, hotpath's statements skip Django's cursor wrappers: SQLite's own
    statement trace sees the same four statements, in the driver's parameter style."""
    if connection.vendor != "sqlite":
        pytest.skip("only SQLite's driver traces statements; the counts above cover PostgreSQL")
    browser = Browser()
    options = begin_sign_in(browser)
    assertion = ada.authenticator.get(options, ORIGIN)
    traced: list[str] = []
    converted = hotpath._qmark.cache_info().misses + hotpath._qmark.cache_info().hits
    connection.connection.set_trace_callback(traced.append)
    try:
        assert_ok(browser.post_json("/sign-in/result", assertion))
    finally:
        connection.connection.set_trace_callback(None)
    info = hotpath._qmark.cache_info()
    assert info.hits + info.misses - converted == 4  # each through _DriverCursor
    work = [
        " ".join(sql.split()[:3])
        for sql in traced
        if not sql.upper().startswith(TRANSACTION_CONTROL)
    ]
    assert work == [use_challenge(), *record_sign_in()]
    assert browser.is_signed_in()
