"""The fast sign-in path (threshold/passkeys/fastpath.py): it answers an ordinary anonymous
sign-in as the lean path would, hands every other request to the lean path with nothing
stored, and accepts no request Django's host validation or CSRF check would refuse.

Requests go through the production WSGI application (``tests.support.wsgi``), with the lean
application behind the fast path wrapped so that a test sees whether it was handed the
request (``served``). Every test runs on both databases (``make test`` runs this file on
PostgreSQL too), whose statements differ (``RESULT_STATEMENTS``).
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import uuid
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from http.cookies import SimpleCookie
from typing import Any

import pytest
from django.conf import settings
from django.core import signals, signing
from django.core.handlers.wsgi import WSGIRequest
from django.db import (
    DEFAULT_DB_ALIAS,
    DatabaseError,
    IntegrityError,
    OperationalError,
    close_old_connections,
    connection,
    connections,
)
from django.middleware.csrf import CsrfViewMiddleware, _mask_cipher_secret
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from psycopg.pq import TransactionStatus

import threshold.wsgi
from tests.integration.conftest import ORIGIN
from tests.support.faults import database_fails, is_work
from tests.support.prepared import unprepared
from tests.support.wsgi import wsgi
from threshold.accounts.models import User
from threshold.audit.actions import Origin
from threshold.audit.models import AuditEvent
from threshold.groups.models import Group, Membership
from threshold.passkeys import fastpath, hotpath
from threshold.passkeys.lean import LeanSignInApplication
from threshold.passkeys.models import Passkey, UsedChallenge
from threshold.passkeys.pending import _signer
from threshold.policy.access import get_policy
from threshold.policy.actions import do_update_policy
from threshold.sessions import flow
from threshold.sessions.models import Session
from threshold.sessions.store import SID, SessionStore
from threshold.web.proxy import ForwardedHeaders

pytestmark = pytest.mark.django_db

CEREMONY = "threshold_ceremony_authentication"
LOOPBACK = "127.0.0.1"  # no per-network rate limit on the options
TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")
# hotpath's statements: SQLite's four; PostgreSQL's two, the writes in one statement of
# data-modifying CTEs (as the lean path's).
RESULT_STATEMENTS = (
    [
        'INSERT INTO "passkeys_usedchallenge"',
        'UPDATE "passkeys_passkey" SET',
        'INSERT INTO "audit_auditevent"',
        'INSERT INTO "web_session"',
    ]
    if connection.vendor == "sqlite"
    else ["WITH used AS", "WITH moved AS"]
)


class Served:
    """The lean application behind the fast path, recording what it was handed and what the
    database held at that moment (the fast path must have stored nothing)."""

    def __init__(self) -> None:
        self.handed: list[dict[str, Any]] = []
        self.counting = True  # off: no statements of its own (a test counting statements)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"].startswith("/sign-in/"):
            self.handed.append(
                {
                    "path": environ["PATH_INFO"],
                    "rows": rows() if self.counting else None,
                    "body": _peek(environ),
                }
            )
        return threshold.wsgi.lean_application(environ, start_response)


def _peek(environ: dict[str, Any]) -> bytes:
    stream = environ["wsgi.input"]
    position = stream.tell()
    body = stream.read()
    stream.seek(position)
    return bytes(body)


def rows() -> tuple[int | None, ...]:
    """What a sign-in writes: used challenges, audit rows, sessions, the passkeys' counters
    (None for a table that is not there: ``test_a_database_error_...``)."""
    counts: list[Callable[[], int]] = [
        UsedChallenge.objects.count,
        AuditEvent.objects.count,
        Session.objects.count,
        lambda: sum(Passkey.objects.values_list("sign_count", flat=True)),
    ]
    found: list[int | None] = []
    for count in counts:
        try:
            found.append(count())
        except DatabaseError:
            found.append(None)
    return tuple(found)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Served:
    recorder = Served()
    monkeypatch.setattr(
        threshold.wsgi, "application", ForwardedHeaders(fastpath.FastSignInApplication(recorder))
    )
    return recorder


def lean_only() -> Any:
    return override_settings(THRESHOLD_FAST_SIGN_IN=False)


@pytest.fixture
def deployed_https(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Secure cookies and HSTS, as served behind TLS. Django's middleware and the lean
    application read these settings when they are made: made again with them (and Django's
    loaded again after)."""
    with override_settings(
        SESSION_COOKIE_SECURE=True, CSRF_COOKIE_SECURE=True, SECURE_HSTS_SECONDS=31536000
    ):
        threshold.wsgi.django_application.load_middleware()
        monkeypatch.setattr(
            threshold.wsgi,
            "lean_application",
            LeanSignInApplication(threshold.wsgi.django_application),
        )
        yield
    threshold.wsgi.django_application.load_middleware()


class Client:
    """A browser on the sign-in page, sending what webauthn.js sends."""

    def __init__(
        self, *, as_served: bool = False, address: str = LOOPBACK, scheme: str = "http"
    ) -> None:
        self.cookies: dict[str, str] = {}
        self.as_served = as_served
        self.address = address
        self.scheme = scheme
        status, _, _ = wsgi(
            "GET",
            "/sign-in",
            cookies=self.cookies,
            REMOTE_ADDR=LOOPBACK,
            **{"wsgi.url_scheme": scheme},
        )
        assert status == 200

    def headers(self) -> dict[str, Any]:
        return {
            "HTTP_ORIGIN": ORIGIN.replace("http:", f"{self.scheme}:", 1),
            "HTTP_X_CSRFTOKEN": self.cookies["threshold_csrf"],
            "HTTP_X_THRESHOLD_FLOW": flow.issue_flow_token(flow.Flow.SIGN_IN),
            "REMOTE_ADDR": self.address,
        }

    def post(
        self,
        path: str,
        body: bytes = b"{}",
        cookies: dict[str, str] | None = None,
        **changes: Any,
    ) -> tuple[int, dict[str, str], bytes, None]:
        """(status, headers, content, None): ``cookies`` instead of the browser's jar."""
        jar = self.cookies if cookies is None else cookies
        status, headers, content = wsgi(
            "POST",
            path,
            body,
            jar,
            as_served=self.as_served,
            **{**self.headers(), **changes},
        )
        return status, headers, content, None

    def options(self, **changes: Any) -> dict[str, Any]:
        status, _, content, _ = self.post("/sign-in/options", **changes)
        assert status == 200, content
        return dict(json.loads(content)["publicKey"])


def answered(ada: Any, client: Client) -> list[Any]:
    """Options and a result, with every response's status, headers (in order) and body."""
    options_answer = _raw(client, "/sign-in/options", b"{}")
    options = json.loads(options_answer[2])["publicKey"]
    assertion = json.dumps(ada.authenticator.get(options, ORIGIN)).encode()
    return [options_answer, _raw(client, "/sign-in/result", assertion)]


def _raw(client: Client, path: str, body: bytes) -> tuple[int, list[Any], bytes]:
    """One request, with its headers as sent (a list: Set-Cookie repeats)."""
    from threshold.wsgi import application  # noqa: PLC0415 - as served (the fixture's)

    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "localhost:8000",
        "wsgi.url_scheme": client.scheme,
        "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/json",
        "HTTP_COOKIE": "; ".join(f"{k}={v}" for k, v in client.cookies.items()),
        "HTTP_USER_AGENT": "Mozilla/5.0 (WSGI)",
        **client.headers(),
    }
    started: dict[str, Any] = {}

    def start_response(status: str, headers: list[Any], exc_info: Any = None) -> None:
        started.update(status=status, headers=headers)

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        content = b"".join(application(environ, start_response))
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
    for name, value in started["headers"]:
        if name == "Set-Cookie":
            morsel = next(iter(SimpleCookie(value).values()))
            client.cookies[morsel.key] = morsel.value
    return int(started["status"].split()[0]), list(started["headers"]), content


RANDOM_COOKIES = {"threshold_session", "threshold_csrf", CEREMONY}


def comparable(answer: tuple[int, list[Any], bytes]) -> tuple[Any, ...]:
    """The answer with its random values (the challenge, the keys, the tokens) and its dates
    (to the second, checked close by ``close_dates``) left out."""
    status, headers, content = answer
    body = json.loads(content)
    if "publicKey" in body:
        body["publicKey"].pop("challenge")
    plain = [(n, v) for n, v in headers if n not in ("Set-Cookie", "Content-Length")]
    cookies = []
    for name, value in headers:
        if name != "Set-Cookie":
            continue
        morsel = next(iter(SimpleCookie(value).values()))
        attributes = {k: str(v) for k, v in morsel.items() if v and k != "expires"}
        shown = morsel.value if morsel.key not in RANDOM_COOKIES or not morsel.value else "*"
        cookies.append((morsel.key, shown, attributes, bool(morsel["expires"])))
    return status, plain, cookies, body


def expiries(answer: tuple[int, list[Any], bytes]) -> dict[str, float]:
    """The expiry dates of the cookies that have one (the session's ends with the browser)."""
    out = {}
    for name, value in answer[1]:
        if name == "Set-Cookie":
            morsel = next(iter(SimpleCookie(value).values()))
            if morsel["expires"]:
                out[morsel.key] = parsedate_to_datetime(morsel["expires"]).timestamp()
    return out


def session_of(cookies: dict[str, str]) -> tuple[dict[str, Any], Session]:
    row = Session.objects.get(session_key=cookies["threshold_session"])
    return SessionStore().decode(row.session_data), row


# --- Equivalence --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_verified", "address", "scheme"),
    [
        (True, LOOPBACK, "http"),
        (False, LOOPBACK, "http"),
        # Stored as Django spells it (GenericIPAddressField), not as ipaddress does.
        (True, "::FFFF:cb00:7105", "http"),
        # As deployed: HTTPS, Secure cookies, HSTS.
        (True, LOOPBACK, "https"),
    ],
)
def test_the_fast_path_answers_as_the_lean_path(
    ada, clock, served, request, user_verified, address, scheme
):
    if not user_verified:
        policy = dataclasses.replace(get_policy(), user_verification="preferred")
        do_update_policy(policy, Origin.cli())
        ada.authenticator.user_verified = False
    if scheme == "https":
        request.getfixturevalue("deployed_https")
    fast_client = Client(address=address, scheme=scheme)
    fast = answered(ada, fast_client)
    assert served.handed == []  # the fast path answered both
    fast_event = AuditEvent.objects.order_by("-id").first()
    if scheme == "https":
        for _, headers, _ in fast:
            assert dict(headers)["Strict-Transport-Security"].startswith("max-age=31536000")
            # Every cookie set is Secure (a deleted one is as Django's delete_cookie sends it).
            cookies = [v for n, v in headers if n == "Set-Cookie" and "Max-Age=0" not in v]
            assert cookies
            assert all(v.endswith("; Secure") for v in cookies), cookies
    with lean_only():
        lean_client = Client(address=address, scheme=scheme)
        lean = answered(ada, lean_client)
    assert [h["path"] for h in served.handed] == ["/sign-in/options", "/sign-in/result"]
    lean_event = AuditEvent.objects.order_by("-id").first()

    assert [comparable(a) for a in fast] == [comparable(a) for a in lean]
    for fast_answer, lean_answer in zip(fast, lean, strict=True):
        fast_dates, lean_dates = expiries(fast_answer), expiries(lean_answer)
        assert fast_dates.keys() == lean_dates.keys()
        for name, when in fast_dates.items():
            assert abs(when - lean_dates[name]) <= 2, name
    # Each answer's random values are fresh ones: a new session key, a rotated CSRF token.
    assert fast_client.cookies["threshold_session"] != lean_client.cookies["threshold_session"]
    assert fast_client.cookies["threshold_csrf"] not in ("", lean_client.cookies["threshold_csrf"])
    assert len(fast_client.cookies["threshold_csrf"]) == 32

    # The session: the same data in the same order (the clock is pinned), the same columns.
    fast_data, fast_row = session_of(fast_client.cookies)
    lean_data, lean_row = session_of(lean_client.cookies)
    assert isinstance(fast_data[SID], str)
    assert fast_data[SID] != lean_data[SID]
    fast_data[SID] = lean_data[SID]
    assert list(fast_data.items()) == list(lean_data.items())
    assert ("threshold.verified_at" in fast_data) is user_verified
    assert fast_data["threshold.sign_in_credential"] == str(ada.user.passkeys.get().pk)
    columns = [f.attname for f in Session._meta.concrete_fields]
    differ = {"session_key", "session_data", "expire_date"}
    assert [getattr(fast_row, c) for c in columns if c not in differ] == [
        getattr(lean_row, c) for c in columns if c not in differ
    ]
    assert abs((fast_row.expire_date - lean_row.expire_date).total_seconds()) < 5
    # Django's own store reads it (stored uncompressed: signing.loads reads both forms).
    assert (
        SessionStore(session_key=fast_row.session_key).load() == session_of(fast_client.cookies)[0]
    )

    # The audit row.
    assert fast_event is not None
    assert lean_event is not None
    assert fast_event.pk != lean_event.pk
    fields = [f.attname for f in AuditEvent._meta.concrete_fields if f.attname != "id"]
    assert [getattr(fast_event, f) for f in fields] == [getattr(lean_event, f) for f in fields]
    assert fast_event.action == "sign_in.succeeded"

    # Django's full stack takes the fast path's session: signed in.
    status, _, _ = wsgi("GET", "/", cookies=dict(fast_client.cookies), REMOTE_ADDR=LOOPBACK)
    assert status == 200


# --- Handed over ----------------------------------------------------------------------------------


def _forged(token: str) -> str:
    payload = signing.Signer(key="another secret key" * 3, salt="x").sign_object({"a": 1})
    return payload if token else ""


def _stale(clock: Any) -> None:
    clock.advance(3600)


def _deny_the_passkey(ada: Any) -> dict[str, Any]:
    deny = (str(ada.user.passkeys.get().aaguid),)
    do_update_policy(dataclasses.replace(get_policy(), aaguid_deny_list=deny), Origin.cli())
    return {}


def _a_group_denies_the_passkey(ada: Any) -> dict[str, Any]:
    group = Group.objects.create(
        name="Engineering", rules={"aaguid_deny_list": [str(ada.user.passkeys.get().aaguid)]}
    )
    Membership.objects.create(group=group, user=ada.user)
    return {}


def _require_verification_now(ada: Any) -> dict[str, Any]:
    """The options said "preferred"; the policy in force at the result requires it."""
    do_update_policy(dataclasses.replace(get_policy(), user_verification="required"), Origin.cli())
    ada.authenticator.user_verified = False
    return {}


def _lock(ada: Any) -> dict[str, Any]:
    User.objects.filter(pk=ada.user.pk).update(locked_at=timezone.now())
    return {}


def _counter_ahead(ada: Any) -> dict[str, Any]:
    Passkey.objects.filter(user=ada.user).update(sign_count=10**6)
    return {}


# name: (path, changes to the request, expected status, expected failure reason or None)
UNUSUAL: dict[str, tuple[str, Callable[[Client, Any, Any], dict[str, Any]], int, str | None]] = {
    "wrong origin": ("result", lambda c, *_: {"HTTP_ORIGIN": "https://evil.example"}, 403, None),
    "wrong origin (options)": (
        "options",
        lambda c, *_: {"HTTP_ORIGIN": "http://localhost:8001"},
        403,
        None,
    ),
    "no origin": ("result", lambda c, *_: {"HTTP_ORIGIN": None}, 200, None),
    "bad csrf token": ("result", lambda c, *_: {"HTTP_X_CSRFTOKEN": "x" * 32}, 403, None),
    "no csrf token": ("options", lambda c, *_: {"HTTP_X_CSRFTOKEN": None}, 403, None),
    "bad csrf cookie": (
        "result",
        lambda c, *_: {"cookies": {"threshold_csrf": "y" * 32}},
        403,
        None,
    ),
    "no csrf cookie": ("options", lambda c, *_: {"cookies": {"threshold_csrf": None}}, 403, None),
    "masked csrf cookie": (
        "result",
        lambda c, *_: {
            "cookies": {"threshold_csrf": _mask_cipher_secret(c.cookies["threshold_csrf"])}
        },
        200,
        None,
    ),
    "disallowed host": ("result", lambda c, *_: {"HTTP_HOST": "evil.example"}, 400, None),
    "query string": ("result", lambda c, *_: {"QUERY_STRING": "next=/settings"}, 200, None),
    "content type with a parameter": (
        "result",
        lambda c, *_: {"CONTENT_TYPE": "application/json; charset=utf-8"},
        200,
        None,
    ),
    "non-digit content length": (
        "result",
        lambda c, *_: {"CONTENT_LENGTH": "+1"},
        400,
        "malformed_request",
    ),
    "huge content length": (
        "result",
        lambda c, *_: {"CONTENT_LENGTH": str(10**9)},
        413,
        "request_too_large",
    ),
    "a session cookie": (
        "result",
        lambda c, *_: {"cookies": {"threshold_session": "a" * 32}},
        200,
        None,
    ),
    "forged ceremony token": (
        "result",
        lambda c, *_: {"cookies": {CEREMONY: _forged(c.cookies[CEREMONY])}},
        400,
        "challenge_missing",
    ),
    "expired ceremony token": (
        "result",
        lambda c, clock, _: _stale(clock) or {},
        400,
        "challenge_expired",
    ),
    "bad signature": ("result", lambda c, *_: {"tamper": True}, 400, "signature_invalid"),
    "the policy denies the passkey": (
        "result",
        lambda c, clock, ada: _deny_the_passkey(ada),
        400,
        "authenticator_denied",
    ),
    "a group denies the passkey": (
        "result",
        lambda c, clock, ada: _a_group_denies_the_passkey(ada),
        400,
        "authenticator_denied",
    ),
    "verification required since the options": (
        "result",
        lambda c, clock, ada: _require_verification_now(ada),
        400,
        "user_not_verified",
    ),
    "a locked account": ("result", lambda c, clock, ada: _lock(ada), 403, "account_locked"),
    "a counter gone back": (
        "result",
        lambda c, clock, ada: _counter_ahead(ada),
        400,
        "sign_count_regressed",
    ),
    "bad flow token": ("options", lambda c, *_: {"HTTP_X_THRESHOLD_FLOW": "x"}, 400, None),
    "a username": (
        "options",
        lambda c, *_: {"body": b'{"username": "ada@example.com"}'},
        200,
        None,
    ),
}


@pytest.mark.parametrize("case", list(UNUSUAL))
def test_unusual_requests_are_handed_over(ada, clock, served, case):
    route, change, status, reason = UNUSUAL[case]
    if case == "verification required since the options":
        do_update_policy(
            dataclasses.replace(get_policy(), user_verification="preferred"), Origin.cli()
        )
    client = Client()
    options = client.options()
    assert served.handed == []
    changes = dict(change(client, clock, ada))
    cookies = dict(client.cookies)
    for name, value in changes.pop("cookies", {}).items():
        if value is None:
            cookies.pop(name, None)
        else:
            cookies[name] = value
    assertion = ada.authenticator.get(
        options, ORIGIN, tamper_signature=changes.pop("tamper", False)
    )
    body = changes.pop("body", json.dumps(assertion).encode() if route == "result" else b"{}")
    before = rows()
    answer_status, _, content, _ = client.post(f"/sign-in/{route}", body, cookies, **changes)
    # Handed over with nothing stored, the body intact; the lean path answered.
    assert len(served.handed) == 1, content
    assert served.handed[0]["rows"] == before
    assert served.handed[0]["body"] == body
    assert answer_status == status, content
    if reason is not None:
        event = AuditEvent.objects.order_by("-id").first()
        assert event is not None
        assert event.action == "sign_in.failed"
        assert event.reason == reason


def test_a_replayed_ceremony_is_handed_over(ada, served):
    client = Client()
    options = client.options()
    token = client.cookies[CEREMONY]
    assertion = json.dumps(ada.authenticator.get(options, ORIGIN)).encode()
    status, _, content, _ = client.post("/sign-in/result", assertion, dict(client.cookies))
    assert status == 200
    assert served.handed == []
    before = rows()
    replay = {"threshold_csrf": client.cookies["threshold_csrf"], CEREMONY: token}
    status, _, content, _ = client.post("/sign-in/result", assertion, replay)
    assert served.handed[0]["rows"] == before  # the fast path's INSERT was rolled back
    assert status == 400
    assert b"Session Expired" in content
    event = AuditEvent.objects.order_by("-id").first()
    assert event.action == "sign_in.failed"
    assert event.reason == "challenge_missing"


def test_a_counter_moved_meanwhile_is_handed_over(ada, served):
    """Another sign-in with the passkey moved its counter between statements 1 and 2: the
    UPDATE's counter rule refuses, the fast path rolls back (the other sign-in's move with it,
    here, on one connection) and hands over; the lean path then signs in."""
    client = Client()
    options = client.options()
    assertion = json.dumps(ada.authenticator.get(options, ORIGIN)).encode()
    moved: list[bool] = []

    def concurrent_sign_in(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        # The UPDATE, or on PostgreSQL the prepared statement that holds it.
        updates = 'UPDATE "passkeys_passkey" SET "sign_count"' in sql
        if (updates or str(unprepared(sql)).startswith("WITH moved")) and not moved:
            moved.append(True)
            with connection.cursor() as cursor:
                cursor.execute(
                    'UPDATE "passkeys_passkey" SET "sign_count" = 10000 WHERE "id" = %s',
                    [ada.passkey.pk],
                )
        return execute(sql, params, many, context)

    before = rows()
    with connection.execute_wrapper(concurrent_sign_in):
        status, _, content, _ = client.post("/sign-in/result", assertion)
    assert moved
    assert len(served.handed) == 1
    assert served.handed[0]["rows"] == before
    assert status == 200, content


@pytest.mark.django_db(transaction=True)
def test_as_served_a_counter_another_server_moved_rolls_back_whole(ada, served):
    """As served on PostgreSQL, the writes go with the COMMIT in one query string: when another
    server's sign-in with the passkey moved its counter past this one's after the lookup, the
    statement fails instead of writing nothing, so that the COMMIT after it does not run. The
    challenge stays unused, and the lean path then refuses the sign-in as a regression and
    flags the passkey (not as a replay)."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite's BEGIN IMMEDIATE keeps other writers out until the COMMIT")
    client = Client(as_served=True)
    options = client.options()
    assertion = json.dumps(ada.authenticator.get(options, ORIGIN)).encode()  # counter 1
    moved: list[str] = []

    def another_server(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        if str(unprepared(sql)).startswith("WITH moved") and not moved:
            moved.append(sql)
            other = connections.create_connection(DEFAULT_DB_ALIAS)
            try:
                with other.cursor() as cursor:
                    cursor.execute(
                        'UPDATE "passkeys_passkey" SET "sign_count" = 5 WHERE "id" = %s',
                        [ada.passkey.pk],
                    )
            finally:
                other.close()
        return execute(sql, params, many, context)

    before = rows()
    with connection.execute_wrapper(another_server):
        status, _, content, _ = client.post("/sign-in/result", assertion)
    assert moved
    assert moved[0].endswith("; COMMIT")
    assert len(served.handed) == 1
    # Nothing of the fast path's stayed (the counters: the other server's 5).
    assert served.handed[0]["rows"][:3] == before[:3]
    assert status == 400, content
    assert not in_transaction()
    passkey = Passkey.objects.get(pk=ada.passkey.pk)
    assert (passkey.sign_count, passkey.is_possibly_cloned) == (5, True)
    assert AuditEvent.objects.order_by("-id").first().reason == "sign_count_regressed"


@pytest.mark.parametrize("at", range(len(RESULT_STATEMENTS)))
def test_a_database_error_rolls_back_and_answers_as_the_lean_path(ada, served, at):
    """A statement fails (SQLite's "database is locked" after its busy timeout): everything is
    rolled back and the answer is the lean path's to the same failure (503, in the catalog's
    words), without waiting out the lock a second time there; the ceremony stays usable."""
    client = Client()
    options = client.options()
    assertion = json.dumps(ada.authenticator.get(options, ORIGIN)).encode()
    before = rows()
    cookies = dict(client.cookies)
    with database_fails(at=at) as seen:
        status, headers, content, _ = client.post("/sign-in/result", assertion, cookies)
    assert len(seen) == at + 1
    assert served.handed == []
    assert rows() == before
    assert status == 503, content
    assert json.loads(content)["error"]["code"] == "passkey_unavailable"
    served.counting = False
    with lean_only(), database_fails(at=at):
        lean = client.post("/sign-in/result", assertion, dict(client.cookies))
    assert len(served.handed) == 1
    assert lean[:3] == (status, headers, content)
    assert rows() == before
    # The same answer again signs in, on the fast path (the challenge was not used up).
    status, _, content, _ = client.post("/sign-in/result", assertion)
    assert status == 200, content
    assert len(served.handed) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("failure", [OperationalError, IntegrityError])
def test_a_rollback_that_fails_leaves_no_transaction_for_the_next_request(ada, served, failure):
    """A statement fails, and so does the ROLLBACK after it (the disk gone, the connection
    broken). The worker's connection must not stay inside the transaction: on SQLite, which
    Django never finds unusable, every later request of the worker would fail. (The answer to
    an OperationalError closes the connection anyway: ``web.views.server_error``.)"""
    client = Client(as_served=True)
    options = client.options()
    assertion = json.dumps(ada.authenticator.get(options, ORIGIN)).encode()
    seen: list[str] = []

    def fail(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if is_work(sql):
            seen.append(sql)
            raise failure("the statement failed")
        if sql.startswith("ROLLBACK"):
            seen.append(sql)
            raise OperationalError("disk I/O error")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(fail):
        status, _, content, _ = client.post("/sign-in/result", assertion)
    assert status in (500, 503), content
    # The fast path's statement and ROLLBACK (then the lean path's, for an IntegrityError:
    # handed over, it fails the same way).
    assert seen[1].startswith("ROLLBACK")
    assert not in_transaction()
    # The same answer again (its challenge was not used up) signs in.
    status, _, content, _ = client.post("/sign-in/result", assertion)
    assert status == 200, content
    assert served.handed == []


def set_cookies(answer: tuple[int, list[Any], bytes]) -> list[str]:
    """The Set-Cookie headers as sent, their random values and dates left out."""
    out = []
    for name, value in answer[1]:
        if name == "Set-Cookie":
            key, rest = value.strip().split("=", 1)
            shown, attributes = rest.split(";", 1)
            if key in RANDOM_COOKIES and shown:
                shown = "*"
            out.append(f"{key}={shown};{re.sub(r'expires=[^;]*;', 'expires=*;', attributes)}")
    return out


@pytest.mark.parametrize(
    "changed",
    [
        # Django leaves the SameSite attribute out for these; "None" would allow cross-site.
        {"SESSION_COOKIE_SAMESITE": None, "CSRF_COOKIE_SAMESITE": False},
        {"CSRF_COOKIE_AGE": None},  # the CSRF cookie ends with the browser
    ],
)
def test_cookies_under_other_cookie_settings_are_written_as_django_writes_them(
    ada, served, monkeypatch, changed
):
    with override_settings(**changed):
        threshold.wsgi.django_application.load_middleware()
        monkeypatch.setattr(
            threshold.wsgi,
            "lean_application",
            LeanSignInApplication(threshold.wsgi.django_application),
        )
        try:
            fast = answered(ada, Client())
            assert served.handed == []
            with lean_only():
                lean = answered(ada, Client())
        finally:
            threshold.wsgi.django_application.load_middleware()
    assert len(served.handed) == 2
    assert [set_cookies(answer) for answer in fast] == [set_cookies(answer) for answer in lean]
    assert all(cookie for answer in fast for cookie in set_cookies(answer))


def test_a_csrf_header_setting_is_read_from_the_environ_as_django_reads_it(ada, served):
    """CSRF_HEADER_NAME names a key of request.META: one without HTTP_ is no request header,
    so Django finds no token in what the browser sends, and neither may the fast path."""
    with override_settings(CSRF_HEADER_NAME="X_CSRFTOKEN"):
        status, _, content, _ = Client().post("/sign-in/options")
    assert status == 403, content
    assert [handed["path"] for handed in served.handed] == ["/sign-in/options"]


def test_a_setting_the_fast_path_cannot_read_turns_it_off_not_every_page(served, caplog):
    with override_settings(CSRF_COOKIE_AGE="a year"):
        status, _, content = wsgi("GET", "/help")
    assert status == 200, content
    assert "the fast sign-in path is off" in caplog.text


def test_turned_off_everything_goes_to_the_lean_path(ada, served):
    with lean_only():
        client = Client()
        options = client.options()
        assertion = json.dumps(ada.authenticator.get(options, ORIGIN)).encode()
        status, _, _, _ = client.post("/sign-in/result", assertion)
    assert status == 200
    assert [h["path"] for h in served.handed] == ["/sign-in/options", "/sign-in/result"]


# --- Statements ---------------------------------------------------------------------------------


def in_transaction() -> bool:
    """Whether the driver's connection has a transaction open (none when it is closed)."""
    driver: Any = connection.connection
    if driver is None:
        return False
    if connection.vendor == "sqlite":
        return bool(driver.in_transaction)
    return bool(driver.info.transaction_status != TransactionStatus.IDLE)


def statements(queries: CaptureQueriesContext) -> list[str]:
    """Every statement sent, in order: on PostgreSQL a query string may hold several (BEGIN with
    the first, COMMIT with the last: fastpath._transaction's ``together``)."""
    return [part.strip() for sql in sent(queries) for part in sql.split(";") if part.strip()]


def sent(queries: CaptureQueriesContext) -> list[str]:
    """The query strings sent, a prepared statement's EXECUTE read as the statement, and its
    preparation (once per connection, ``hotpath.execute_prepared``) left out."""
    return [sql for q in queries.captured_queries if (sql := unprepared(q["sql"])) is not None]


def work(queries: CaptureQueriesContext) -> list[str]:
    return [
        " ".join(sql.split()[:3])
        for sql in statements(queries)
        if not sql.upper().startswith(TRANSACTION_CONTROL)
    ]


def control(queries: CaptureQueriesContext) -> list[str]:
    return [" ".join(sql.split()[:2]) for sql in statements(queries)]


def test_options_run_no_statement_and_the_result_in_one_savepoint(ada, served, monkeypatch):
    # The policy read by the first options stays for the second, however slow the machine
    # (hotpath.recent_policy re-reads it after a second of the real monotonic clock).
    monkeypatch.setattr(hotpath, "monotonic", lambda: 1000.0)
    client = Client()
    client.options()  # the policy, read once a second
    with CaptureQueriesContext(connection) as queries:
        options = client.options()
    assert queries.captured_queries == []
    assertion = json.dumps(ada.authenticator.get(options, ORIGIN)).encode()
    with CaptureQueriesContext(connection) as queries:
        status, _, _, _ = client.post("/sign-in/result", assertion)
    assert status == 200
    assert served.handed == []
    assert work(queries) == RESULT_STATEMENTS
    kinds = control(queries)
    assert kinds[0].startswith("SAVEPOINT")
    assert kinds[-1].startswith("RELEASE SAVEPOINT")
    assert len(kinds) == len(RESULT_STATEMENTS) + 2


@pytest.mark.django_db(transaction=True)
def test_as_served_the_result_is_one_immediate_transaction(ada, served):
    client = Client(as_served=True)
    options = client.options()
    assertion = json.dumps(ada.authenticator.get(options, ORIGIN)).encode()
    with CaptureQueriesContext(connection) as queries:
        status, _, content, _ = client.post("/sign-in/result", assertion)
    assert status == 200, content
    assert served.handed == []
    assert work(queries) == RESULT_STATEMENTS
    begin = "BEGIN IMMEDIATE" if connection.vendor == "sqlite" else "BEGIN"
    assert statements(queries)[0] == begin
    assert statements(queries)[-1] == "COMMIT"
    # SQLite: each statement sent alone; PostgreSQL: BEGIN with the first and COMMIT with the
    # last, two round trips in all.
    round_trips = len(RESULT_STATEMENTS) + 2 if connection.vendor == "sqlite" else 2
    assert len(sent(queries)) == round_trips
    assert connection.get_autocommit()
    assert not in_transaction()
    # A refusal rolls back, as served, and the lean path audits it.
    client.cookies.pop("threshold_session")
    options = client.options()
    bad = json.dumps(ada.authenticator.get(options, ORIGIN, tamper_signature=True)).encode()
    before = rows()
    with CaptureQueriesContext(connection) as queries:
        status, _, _, _ = client.post("/sign-in/result", bad)
    assert status == 400
    assert served.handed[-1]["rows"] == before
    assert "ROLLBACK" in [q["sql"] for q in queries.captured_queries]
    assert AuditEvent.objects.order_by("-id").first().reason == "signature_invalid"


def sign_in_once(ada: Any) -> tuple[int, CaptureQueriesContext]:
    """A sign-in from a new browser: its result's status, and the queries the result sent."""
    client = Client()
    options = client.options()
    assertion = json.dumps(ada.authenticator.get(options, ORIGIN)).encode()
    with CaptureQueriesContext(connection) as queries:
        status, _, content, _ = client.post("/sign-in/result", assertion)
    assert json.loads(content)["status"] == "ok", content
    return status, queries


def prepared_on_the_server() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements")
        return {name for (name,) in cursor.fetchall()}


def preparations(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"].split()[1] for q in queries.captured_queries if q["sql"].startswith("PREPARE")]


def _prepare_anew() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    hotpath._prepared.pop(connection.connection, None)


@pytest.fixture
def postgresql_prepares_anew(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A connection that has prepared nothing yet, in a process that prepares; left so
    (whatever the test lost) for the tests after it."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite plans its statements once per connection already")
    monkeypatch.setattr(hotpath, "_prepared_lost", False)
    _prepare_anew()
    yield
    _prepare_anew()


def test_postgresql_prepares_the_two_statements_once_per_connection(
    ada, served, postgresql_prepares_anew
):
    status, queries = sign_in_once(ada)
    assert status == 200
    first = preparations(queries)
    assert [name.rsplit("_", 1)[0] for name in first] == ["threshold_find", "threshold_record"]
    assert set(first) <= prepared_on_the_server()
    assert work(queries) == RESULT_STATEMENTS
    status, queries = sign_in_once(ada)
    assert status == 200
    assert preparations(queries) == []
    assert [q["sql"].split("(")[0] for q in queries.captured_queries if "EXECUTE" in q["sql"]] == [
        f"EXECUTE {name}" for name in first
    ]
    assert served.handed == []


@pytest.mark.parametrize("lost", ["deallocated", "forgotten"])
def test_prepared_statements_not_where_left_are_handed_over_and_prepared_no_more(
    ada, served, postgresql_prepares_anew, caplog, lost
):
    """As behind a connection pooler in transaction mode: the connection's prepared statement
    is not on the server connection the EXECUTE reaches ("deallocated"), or one of the same name
    is on the one the PREPARE reaches ("forgotten"). The fast path rolls back and hands over,
    the lean path signs in, and this process goes on without prepared statements."""
    assert sign_in_once(ada)[0] == 200
    if lost == "deallocated":
        with connection.cursor() as cursor:
            cursor.execute("DEALLOCATE ALL")
    else:
        hotpath._prepared.pop(connection.connection, None)
    before = rows()
    status, queries = sign_in_once(ada)
    assert status == 200
    assert [h["path"] for h in served.handed] == ["/sign-in/result"]
    assert served.handed[0]["rows"] == before  # the fast path's transaction rolled back whole
    assert any(q["sql"].startswith("ROLLBACK") for q in queries.captured_queries)
    assert "prepared statements do not stay" in caplog.text
    status, queries = sign_in_once(ada)
    assert status == 200
    assert len(served.handed) == 1  # the fast path again, its statements not prepared
    assert work(queries) == RESULT_STATEMENTS
    assert not [
        q for q in queries.captured_queries if "PREPARE" in q["sql"] or "EXECUTE" in q["sql"]
    ]


def test_a_prepared_statement_whose_result_changed_type_is_prepared_again(
    ada, served, postgresql_prepares_anew, caplog
):
    """A migration run beside the server changed the type of a column the lookup returns
    (varchar to text, here): PostgreSQL refuses the statement prepared before it. That sign-in
    is handed over; the next drops the statement, prepares it again and takes the fast path."""
    assert sign_in_once(ada)[0] == 200
    with connection.cursor() as cursor:
        table = User._meta.db_table
        cursor.execute(f'ALTER TABLE "{table}" ALTER COLUMN "full_name" TYPE text')
    status, _ = sign_in_once(ada)
    assert status == 200
    assert [h["path"] for h in served.handed] == ["/sign-in/result"]
    status, queries = sign_in_once(ada)
    assert status == 200
    assert len(served.handed) == 1  # the fast path, its statement prepared anew
    assert queries.captured_queries[1]["sql"].startswith("DEALLOCATE threshold_find_")
    assert work(queries) == RESULT_STATEMENTS
    assert not hotpath._prepared_lost
    assert "prepared statements do not stay" not in caplog.text


# --- Tokens --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fast_first", [True, False])
def test_tokens_interoperate(ada, served, fast_first):
    client = Client()
    if fast_first:
        options = client.options()
        with lean_only():
            assertion = json.dumps(ada.authenticator.get(options, ORIGIN)).encode()
            status, _, content, _ = client.post("/sign-in/result", assertion)
        assert [h["path"] for h in served.handed] == ["/sign-in/result"]
    else:
        with lean_only():
            options = client.options()
        assertion = json.dumps(ada.authenticator.get(options, ORIGIN)).encode()
        status, _, content, _ = client.post("/sign-in/result", assertion)
        assert [h["path"] for h in served.handed] == ["/sign-in/options"]
    assert status == 200, content
    assert json.loads(content)["status"] == "ok"
    assert Session.objects.filter(session_key=client.cookies["threshold_session"]).exists()


def test_a_token_of_another_kind_or_key_is_handed_over(ada, served):
    client = Client()
    options = client.options()
    payload = _signer("authentication").unsign_object(client.cookies[CEREMONY])
    assertion = json.dumps(ada.authenticator.get(options, ORIGIN)).encode()
    other_kind = _signer("step_up").sign_object(payload)
    with override_settings(SECRET_KEY="a different secret key, " + uuid.uuid4().hex):
        other_key = _signer("authentication").sign_object(payload)
    for token in (other_kind, other_key):
        served.handed.clear()
        status, _, content, _ = client.post(
            "/sign-in/result", assertion, {**client.cookies, CEREMONY: token}
        )
        assert len(served.handed) == 1
        assert status == 400, content
    # Signed with a key now in SECRET_KEY_FALLBACKS: still good, on the fast path.
    served.handed.clear()
    old = settings.SECRET_KEY
    with override_settings(
        SECRET_KEY="the new secret key, " + uuid.uuid4().hex, SECRET_KEY_FALLBACKS=[old]
    ):
        status, _, content, _ = client.post("/sign-in/result", assertion)
    assert status == 200, content
    assert served.handed == []


# --- The decision, against Django's own --------------------------------------------------------


SECRET = "A" * 16 + "b" * 16
OTHER = "c" * 32

hosts = st.sampled_from(
    [
        "localhost:8000",
        "localhost",
        "LOCALHOST:8000",
        "127.0.0.1:8000",
        "[::1]:8000",
        "localhost.:8000",
        "evil.example",
        "localhost:8000@evil.example",
        "localhost:abc",
        "",
        "local host",
    ]
)
origins = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "http://localhost:8000",
            "https://localhost:8000",
            "http://localhost",
            "http://127.0.0.1:8000",
            "http://[::1]:8000",
            "http://evil.example",
            "null",
            "http://localhost:8000/",
            "HTTP://LOCALHOST:8000",
        ]
    ),
    st.text(max_size=30),
)
secrets = st.sampled_from([SECRET, OTHER, "", "short", "!" * 32, SECRET.lower()]).flatmap(
    lambda s: st.sampled_from([s, _mask_cipher_secret(s) if len(s) == 32 and s.isalnum() else s])
)


@hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    # Each part ordinary half of the time, so that whole requests the fast path takes come up.
    host=st.one_of(st.just("localhost:8000"), hosts),
    origin=st.one_of(st.just(ORIGIN), origins),
    cookie=st.one_of(st.just(SECRET), st.none(), secrets),
    token=st.one_of(st.just(SECRET), st.none(), secrets, st.text(max_size=70)),
    scheme=st.sampled_from(["http", "https"]),
    forwarded=st.sampled_from([None, "https", "http", "https, http", " https ,x"]),
    behind_proxy=st.booleans(),
)
def test_the_fast_path_accepts_nothing_django_refuses(
    host, origin, cookie, token, scheme, forwarded, behind_proxy
):
    proxy = ("HTTP_X_FORWARDED_PROTO", "https") if behind_proxy else None
    with override_settings(SECURE_PROXY_SSL_HEADER=proxy):
        _compare(host, origin, cookie, token, scheme, forwarded)


def _compare(host, origin, cookie, token, scheme, forwarded):  # type: ignore[no-untyped-def]
    setup = fastpath._setup()
    assert setup is not None
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/sign-in/options",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "8000",
        "wsgi.url_scheme": scheme,
        "wsgi.input": io.BytesIO(b"{}"),
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": "2",
        "HTTP_HOST": host,
        "HTTP_COOKIE": f"threshold_csrf={cookie}" if cookie is not None else "",
    }
    if origin is not None:
        environ["HTTP_ORIGIN"] = origin
    if token is not None:
        environ["HTTP_X_CSRFTOKEN"] = token
    if forwarded is not None:
        environ["HTTP_X_FORWARDED_PROTO"] = forwarded
    # The scheme, whatever else the request holds: Django's.
    assert fastpath.is_secure(setup, environ) == WSGIRequest(dict(environ)).is_secure()
    try:
        fastpath._ordinary(setup, environ)
    except fastpath._HandOver:
        event("handed over")
        return  # not taken: nothing to compare
    event("taken")
    # Taken: Django's host validation and CSRF check accept it too, over the same scheme.
    request = WSGIRequest(dict(environ))
    assert request.get_host() == host
    middleware = CsrfViewMiddleware(lambda r: None)
    middleware.process_request(request)
    assert middleware.process_view(request, lambda r: None, (), {}) is None


def test_the_property_sees_acceptances():
    """The property above compares only what the fast path takes: it takes the ordinary."""
    setup = fastpath._setup()
    environ = {
        "REQUEST_METHOD": "POST",
        "wsgi.url_scheme": "http",
        "CONTENT_TYPE": "application/json",
        "HTTP_HOST": "localhost:8000",
        "HTTP_ORIGIN": ORIGIN,
        "HTTP_COOKIE": f"threshold_csrf={SECRET}",
        "HTTP_X_CSRFTOKEN": _mask_cipher_secret(SECRET),
    }
    assert fastpath._ordinary(setup, environ) == (False, {"threshold_csrf": SECRET})
