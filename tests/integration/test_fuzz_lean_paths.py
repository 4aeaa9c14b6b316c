"""An outside tester's pass over the newest request paths: the lean sign-in (passkeys/lean.py,
answered before Django's handler), the single sign-on's /token and /userinfo (sso/lean.py) and
the push sign-in, driven through the production WSGI application (tests/support/wsgi.py) with
what a fuzzer sends, and with the database failing under them (tests/support/faults.py).

Every answer is a 4xx in the catalog's words (a 503 "try again" when the database fails), JSON
at the JSON endpoints, never a 500; a refused request stores nothing beyond the failure's own
trace (a sign-in's used challenge and audit row); and the next normal request works.
The device API has its own file (test_fuzz_device_api.py).
"""

from __future__ import annotations

import io
import json
import logging
from typing import Any
from urllib.parse import urlencode

import pytest
from django.db import DEFAULT_DB_ALIAS, InterfaceError, connection, connections
from oauth2_provider.models import get_access_token_model, get_grant_model, get_refresh_token_model

from tests.integration.conftest import CSRF_COOKIE, ORIGIN, SESSION_COOKIE
from tests.support.faults import database_fails, is_work, nul_refused_as_postgresql_does
from tests.support.wsgi import wsgi
from threshold.audit.models import AuditEvent
from threshold.core.catalog import CATALOG
from threshold.devices.models import SignInApproval
from threshold.passkeys import hotpath
from threshold.passkeys.models import Passkey, UsedChallenge
from threshold.sessions import flow
from threshold.sessions.models import Session

pytestmark = pytest.mark.django_db

Answer = tuple[int, dict[str, str], bytes]
FORM = "application/x-www-form-urlencoded"


# --- Helpers -----------------------------------------------------------------------------------


def signed_out() -> tuple[dict[str, str], dict[str, str]]:
    """A browser that loaded the sign-in page: its cookies, and the headers webauthn.js sends."""
    cookies: dict[str, str] = {}
    status, _, _ = wsgi("GET", "/sign-in", cookies=cookies)
    assert status == 200
    headers = {
        "HTTP_ORIGIN": ORIGIN,
        "HTTP_X_CSRFTOKEN": cookies[CSRF_COOKIE],
        "HTTP_X_THRESHOLD_FLOW": flow.issue_flow_token(flow.Flow.SIGN_IN),
    }
    return cookies, headers


def begun(ada) -> tuple[dict[str, str], dict[str, str], dict[str, Any]]:
    """A sign-in begun on the lean path: cookies, headers and the authenticator's genuine answer."""
    cookies, headers = signed_out()
    status, _, content = wsgi("POST", "/sign-in/options", b"{}", cookies, **headers)
    assert status == 200, content
    return cookies, headers, ada.authenticator.get(json.loads(content)["publicKey"], ORIGIN)


def stored() -> dict[str, Any]:
    return {
        "used challenges": UsedChallenge.objects.count(),
        "audit rows": AuditEvent.objects.count(),
        "sessions": Session.objects.count(),
        "counters": sorted(Passkey.objects.values_list("sign_count", flat=True)),
        "pushes": SignInApproval.objects.count(),
    }


def assert_refused(answer: Answer, status: int, *codes: str) -> dict[str, Any]:
    """A JSON refusal in the catalog's words: the status, one of the entries ``codes``."""
    got, headers, content = answer
    assert got == status, (got, content[:300])
    assert headers["Content-Type"].startswith("application/json"), (headers, content[:300])
    body = json.loads(content)
    assert body["status"] == "failed"
    assert body["error"]["code"] in codes, body
    entry = CATALOG[body["error"]["code"]]
    assert body["errorMessage"] == f"{entry.title}: {entry.message}"
    return body


def assert_oauth_unavailable(answer: Answer) -> None:
    """What an app's server reads when its call met a failing database: an OAuth error
    (RFC 6749 §5.2's JSON) it may retry, whatever it accepts; never a page."""
    status, headers, content = answer
    assert status == 503, content[:300]
    assert headers["Content-Type"] == "application/json", headers
    assert headers["Retry-After"] == "1"
    assert headers["Cache-Control"] == "no-store"
    assert json.loads(content)["error"] == "temporarily_unavailable"


def assert_signs_in(ada) -> None:
    """The next normal sign-in works, on the lean path, and stores its session."""
    cookies, headers, assertion = begun(ada)
    sessions = Session.objects.filter(user=ada.user).count()
    status, _, content = wsgi(
        "POST", "/sign-in/result", json.dumps(assertion).encode(), cookies, **headers
    )
    assert status == 200, content
    assert Session.objects.filter(user=ada.user).count() == sessions + 1
    assert cookies.get(SESSION_COOKIE)


# --- Bodies ------------------------------------------------------------------------------------

MALFORMED_OPTIONS = [
    ("truncated JSON", b'{"username": "ada', 400),
    ("an array for the object", b"[]", 400),
    ("null", b"null", 400),
    ("a string for the object", b'"ada"', 400),
    ("a number for the username", b'{"username": 1}', 400),
    ("an array for the username", b'{"username": ["ada"]}', 400),
    ("an object for the username", b'{"username": {"name": "ada"}}', 400),
    ("an integer of 5,000 digits", b'{"username": 1' + b"0" * 5000 + b"}", 400),
    ("a float beyond range", b'{"username": 1e999999}', 400),
    ("deeply nested arrays", b"[" * 5000 + b"]" * 5000, 400),
    ("bytes that are not UTF-8", b'{"username": "\xff\xfe"}', 400),
    ("UTF-16", '{"username": "ada"}'.encode("utf-16"), 400),
    ("a lone surrogate", b'{"username": "\\ud800"}', 400),
    ("a NUL", b'{"username": "a\\u0000b"}', 400),
    ("over the cap", b'{"username": "' + b"a" * 70_000 + b'"}', 413),
]


@pytest.mark.parametrize(
    ("body", "status"),
    [case[1:] for case in MALFORMED_OPTIONS],
    ids=[case[0] for case in MALFORMED_OPTIONS],
)
def test_malformed_options_bodies_are_refused_and_store_nothing(ada, body, status):
    cookies, headers = signed_out()
    before = stored()
    answer = wsgi("POST", "/sign-in/options", body, cookies, **headers)
    assert_refused(answer, status, "bad_request")
    assert stored() == before
    assert_signs_in(ada)


# Each a value of the wrong type, or a string that is not base64url, at every level.
WRONG = [None, 1, 10**40, True, [], {}, "!!not base64url!!", "a", [[[[]]]]]


def damaged_results(assertion: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    damaged = []
    for name in assertion:
        for value in WRONG:
            damaged.append((f"{name}={value!r}", {**assertion, name: value}))
    for name in assertion["response"]:
        for value in WRONG:
            response = {**assertion["response"], name: value}
            damaged.append((f"response.{name}={value!r}", {**assertion, "response": response}))
    return damaged


def test_results_of_the_wrong_types_at_every_level_are_refused_without_signing_in(ada):
    _, _, genuine = begun(ada)
    cases = damaged_results(genuine)
    assert len(cases) >= 60
    for name, damaged in cases:
        cookies, headers, _ = begun(ada)
        before = stored()
        answer = wsgi("POST", "/sign-in/result", json.dumps(damaged).encode(), cookies, **headers)
        assert_refused(answer, 400, "verification_failed", "bad_request")
        after = stored()
        assert after["sessions"] == before["sessions"], name
        assert after["counters"] == before["counters"], name
        assert SESSION_COOKIE not in cookies, name
    assert_signs_in(ada)


def test_a_replayed_result_is_refused_and_signs_no_one_in_twice(ada):
    cookies, headers, assertion = begun(ada)
    body = json.dumps(assertion).encode()
    assert wsgi("POST", "/sign-in/result", body, dict(cookies), **headers)[0] == 200
    sessions = Session.objects.count()
    assert_refused(
        wsgi("POST", "/sign-in/result", body, dict(cookies), **headers),
        400,
        "verification_failed",
        "session_expired",
    )
    assert Session.objects.count() == sessions


# --- Headers, cookies and query strings ---------------------------------------------------------

ODD_REQUESTS = [
    ("a Host Django refuses", {"HTTP_HOST": "evil.example"}, None),
    ("a Host that is not a name", {"HTTP_HOST": "local\xffhost:8000"}, None),
    ("no Content-Type", {"CONTENT_TYPE": None}, None),
    ("a text Content-Type", {"CONTENT_TYPE": "text/plain"}, None),
    ("JSON in a charset Python lacks", {"CONTENT_TYPE": "application/json; charset=x-bogus"}, None),
    ("no Content-Length", {"CONTENT_LENGTH": None}, None),
    ("a Content-Length over the cap", {"CONTENT_LENGTH": "99999999"}, None),
    ("an Origin that is not UTF-8", {"HTTP_ORIGIN": "http://l\xefocalhost:8000"}, None),
    ("a CSRF header that is not a token", {"HTTP_X_CSRFTOKEN": "\xff" * 32}, None),
    ("a flow token that is garbled", {"HTTP_X_THRESHOLD_FLOW": "\xff.\xff"}, None),
    ("a User-Agent that is not UTF-8", {"HTTP_USER_AGENT": "\xff\xfe" * 300}, None),
    ("an X-Forwarded-For that is garbage", {"HTTP_X_FORWARDED_FOR": "\xff, ::1, x"}, None),
    ("a next that is not UTF-8", {"QUERY_STRING": "next=%ff%fe"}, None),
    ("a next repeated, the last elsewhere", {"QUERY_STRING": "next=/a&next=//evil.example"}, None),
    ("raw bytes in the query string", {"QUERY_STRING": "next=\xff\x00"}, None),
    ("a session cookie that is not a key", {}, "threshold_session=\xff\xfe"),
    ("a session cookie of the wrong length", {}, "threshold_session=abc"),
    ("a ceremony cookie that is not a token", {}, "threshold_ceremony_authentication=\xff.x"),
    ("two CSRF cookies, the first wrong", {}, "threshold_csrf=x; {csrf}"),
    ("a CSRF cookie that is not a token", {}, "threshold_csrf=\xff\xfe"),
    ("a garbled cookie header", {}, "=;;;==\x00; {csrf}; ;threshold_session"),
]


@pytest.mark.parametrize(
    ("headers", "raw_cookie"),
    [case[1:] for case in ODD_REQUESTS],
    ids=[case[0] for case in ODD_REQUESTS],
)
@pytest.mark.parametrize("path", ["/sign-in/options", "/sign-in/result"])
def test_odd_headers_cookies_and_query_strings_never_get_a_server_error(
    ada, path, headers, raw_cookie
):
    cookies, genuine_headers, assertion = begun(ada)
    body = json.dumps(assertion).encode() if path.endswith("result") else b"{}"
    if raw_cookie is not None:
        csrf = f"{CSRF_COOKIE}={cookies[CSRF_COOKIE]}"
        raw_cookie = raw_cookie.replace("{csrf}", csrf)
    sessions = Session.objects.count()
    status, answer_headers, content = wsgi(
        "POST", path, body, cookies, raw_cookie=raw_cookie, **{**genuine_headers, **headers}
    )
    assert status < 500, content[:300]
    assert answer_headers["Content-Type"].startswith("application/json"), content[:300]
    if status >= 400:
        assert_refused((status, answer_headers, content), status, *CATALOG)
    # What a request changed is its own: a signed-in session only for the genuine answer.
    if path.endswith("options") or status != 200:
        assert Session.objects.count() == sessions
    assert_signs_in(ada)


@pytest.mark.parametrize(
    "length",
    # Django calls int() on it: "abc" raised a ValueError, a 500, and so did 5,000 digits
    # (int() takes 4,300 at most), leading zeros or not.
    ["abc", "-1", "1e3", " 7", "0x10", "9" * 5000, "0" * 4999 + "2", "1" * 19],
    ids=["abc", "-1", "1e3", "space", "0x10", "5000 nines", "zeros then 2", "19 digits"],
)
@pytest.mark.parametrize("path", ["/sign-in/options", "/sign-in/result", "/sign-in/push/start"])
def test_a_content_length_that_is_not_a_number_of_bytes_is_a_400(ada, path, length):
    cookies, headers, _ = begun(ada)
    before = stored()
    answer = wsgi("POST", path, b"{}", cookies, CONTENT_LENGTH=length, **headers)
    assert_refused(answer, 400, "bad_request")
    after = stored()
    assert (after["sessions"], after["pushes"]) == (before["sessions"], before["pushes"])
    assert_signs_in(ada)


def test_a_form_with_a_content_length_that_is_not_a_number_gets_the_problem_page(ada):
    cookies, headers = signed_out()
    status, _, content = wsgi(
        "POST",
        "/sign-in/push",
        f"username=ada%40example.com&csrfmiddlewaretoken={cookies[CSRF_COOKIE]}".encode(),
        cookies,
        CONTENT_TYPE="application/x-www-form-urlencoded",
        CONTENT_LENGTH="abc",
        **headers,
    )
    assert status == 400, content[:300]
    assert CATALOG["bad_request"].message.encode() in content
    assert SignInApproval.objects.count() == 0


class _Reset(io.RawIOBase):
    """A body the client stops sending: reading it fails, as gunicorn's does when the
    connection is reset mid-body."""

    def read(self, size: int = -1) -> bytes:
        raise ConnectionResetError(104, "Connection reset by peer")


@pytest.mark.parametrize(
    ("path", "content_type", "fast"),
    [
        ("/sign-in/options", "application/json", True),
        ("/sign-in/result", "application/json", True),
        ("/sign-in/result", "application/json", False),
        ("/sign-in/push/start", "application/json", True),
        ("/sign-in/push", FORM, True),
        ("/token", FORM, True),
        ("/userinfo", FORM, True),
        ("/api/device/v1/enroll", "application/jose", True),
    ],
)
def test_a_body_the_client_stops_sending_is_a_400_not_a_500(
    ada, settings, caplog, path, content_type, fast
):
    """Found by review: Django raises UnreadablePostError (an OSError) for a body it cannot
    read, which nothing answered: a 500 and a traceback logged, twice on the fast path, at
    anyone's will. Every kind of endpoint now refuses it (400) with no error logged."""
    settings.THRESHOLD_FAST_SIGN_IN = fast
    cookies, headers, _ = begun(ada)
    before = stored()
    with caplog.at_level(logging.WARNING):
        status, _, content = wsgi(
            "POST",
            path,
            b"x" * 100,
            cookies,
            stream=_Reset(),
            CONTENT_TYPE=content_type,
            **headers,
        )
    assert status == 400, content[:300]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    after = stored()
    assert (after["sessions"], after["pushes"]) == (before["sessions"], before["pushes"])
    assert_signs_in(ada)


@pytest.mark.parametrize("path", ["/token", "/userinfo"])
def test_an_apps_form_with_a_content_length_that_is_not_a_number_is_a_400(db, path):
    status, _, content = wsgi(
        "POST",
        path,
        b"grant_type=authorization_code&code=x&client_id=y",
        CONTENT_TYPE="application/x-www-form-urlencoded",
        CONTENT_LENGTH="abc",
        HTTP_AUTHORIZATION="Bearer not-a-token",
    )
    assert status in (400, 401), content[:300]


def test_client_credentials_that_are_not_ascii_are_an_invalid_client(db):
    status, _, content = wsgi(
        "POST",
        "/token",
        b"grant_type=authorization_code&code=x&redirect_uri=https%3A%2F%2Fapp.example%2Fcb",
        CONTENT_TYPE="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION="Basic \xff\xfe!!",
    )
    assert status in (400, 401), content[:300]
    assert json.loads(content)["error"] == "invalid_client"


def test_userinfo_without_a_token_is_refused_as_json(db):
    status, headers, content = wsgi("GET", "/userinfo")
    assert status == 401
    assert json.loads(content)["error"] == "invalid_token"
    assert headers["Content-Type"].startswith("application/json")


# --- Methods -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/sign-in/options", "POST"),
        ("/sign-in/result", "POST"),
        ("/sign-in/push/start", "POST"),
        ("/api/device/v1/account", "POST"),
    ],
)
def test_a_wrong_method_is_a_405_in_the_catalogs_words(db, path, allowed, method):
    # With the CSRF cookie and token: without them, CSRF refuses PUT, DELETE and PATCH first.
    cookies, headers = signed_out()
    answer = wsgi(method, path, b"{}", cookies, HTTP_ACCEPT="application/json", **headers)
    # An address opened (GET) reads "Page No Longer Available"; any other method, a request not
    # understood.
    assert_refused(answer, 405, "form_answered" if method == "GET" else "bad_request")
    assert answer[1]["Allow"] == allowed


@pytest.mark.parametrize("with_cookies", [False, True])
@pytest.mark.parametrize("accept", ["application/json", "text/html", None])
@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/token", "POST"),
        ("PUT", "/token", "POST"),
        # Django's class-based views name HEAD and OPTIONS too.
        ("PUT", "/userinfo", "GET, POST, HEAD, OPTIONS"),
        ("DELETE", "/userinfo", "GET, POST, HEAD, OPTIONS"),
        ("GET", "/revoke", "POST, OPTIONS"),
        ("PATCH", "/revoke", "POST, OPTIONS"),
        ("GET", "/introspect", "POST"),
        ("PUT", "/introspect", "POST"),
        ("POST", "/jwks", "GET, HEAD"),
        ("DELETE", "/.well-known/openid-configuration", "GET, HEAD"),
    ],
)
def test_a_wrong_method_at_an_apps_endpoint_is_an_oauth_error(
    db, method, path, allowed, accept, with_cookies
):
    """An app's server reads OAuth's JSON, never a page, whatever it accepts: on the lean path
    (no cookies) and down the full stack (a browser's cookies)."""
    cookies, headers = signed_out() if with_cookies else ({}, {})
    status, got, content = wsgi(method, path, b"", cookies, HTTP_ACCEPT=accept, **headers)
    assert status == 405, content[:300]
    assert got["Allow"] == allowed
    assert got["Content-Type"] == "application/json"
    assert got["Cache-Control"] == "no-store"
    use = f"Use {allowed}." if "," not in allowed else f"Use one of {allowed}."
    assert json.loads(content) == {"error": "invalid_request", "error_description": use}
    assert not AuditEvent.objects.filter(action="sso.token_refused").exists()


# --- The database failing ----------------------------------------------------------------------


def test_the_options_request_answers_503_try_again_while_the_database_is_down(ada):
    cookies, headers = signed_out()
    hotpath.forget_policy()  # read within the last second: the options would not ask
    before = stored()
    with database_fails() as seen:
        answer = wsgi("POST", "/sign-in/options", b"{}", cookies, **headers)
    assert seen, "the options request read nothing from the database"
    assert_refused(answer, 503, "passkey_unavailable")
    assert answer[1]["Retry-After"] == "1"
    assert stored() == before
    assert_signs_in(ada)


def test_a_failure_at_any_statement_of_the_sign_in_leaves_nothing_half_written(ada):
    """One transaction (passkeys/actions.py do_finish_sign_in): the used challenge, the counter,
    the audit row and the session are all written or none is."""
    # The statements of one sign-in, by a first one that succeeds.
    cookies, headers, assertion = begun(ada)
    statements: list[str] = []

    def count(execute, sql, params, many, context):
        if is_work(sql):
            statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        assert (
            wsgi("POST", "/sign-in/result", json.dumps(assertion).encode(), cookies, **headers)[0]
            == 200
        )
    assert len(statements) >= 2

    for index in range(len(statements)):
        cookies, headers, assertion = begun(ada)
        body = json.dumps(assertion).encode()
        before = stored()
        with database_fails(at=index) as seen:
            answer = wsgi("POST", "/sign-in/result", body, dict(cookies), **headers)
        assert len(seen) == index + 1, (index, seen)
        assert_refused(answer, 503, "passkey_unavailable")
        assert stored() == before, f"statement {index} left {stored()}, was {before}"
        # Nothing used the challenge up: the same answer, sent again, signs in, once.
        status, _, content = wsgi("POST", "/sign-in/result", body, cookies, **headers)
        assert status == 200, (index, content)
        after = stored()
        assert after["sessions"] == before["sessions"] + 1
        assert after["used challenges"] == before["used challenges"] + 1


def test_a_push_start_answers_503_while_the_database_is_down_and_stores_nothing(ada, clock):
    cookies, headers = signed_out()
    body = json.dumps({"username": "ada@example.com"}).encode()
    with database_fails():
        answer = wsgi("POST", "/sign-in/push/start", body, dict(cookies), **headers)
    assert_refused(answer, 503, "passkey_unavailable")
    assert SignInApproval.objects.count() == 0
    status, _, content = wsgi("POST", "/sign-in/push/start", body, cookies, **headers)
    assert status == 200, content
    assert SignInApproval.objects.count() == 1


def test_a_page_answers_503_in_the_catalogs_words_while_the_database_is_down(db):
    with database_fails():
        status, headers, content = wsgi("GET", "/sign-in", CONTENT_TYPE=None)
    assert status == 503
    assert headers["Content-Type"].startswith("text/html")
    assert CATALOG["passkey_unavailable"].message.encode() in content
    assert b"Traceback" not in content


# --- A connection closed under the sign-in --------------------------------------------------------


def _closing(at: int):
    """Closes the connection under the ``at``-th statement of the request: on PostgreSQL the
    server ends this backend (pg_terminate_backend, from another connection), as a restart or a
    failover does; SQLite's connection is a file that cannot be ended, so there the statement
    fails as psycopg fails on a closed connection (InterfaceError)."""
    seen: list[str] = []

    def close(execute, sql, params, many, context):
        if is_work(sql):
            seen.append(sql)
            if len(seen) - 1 == at:
                if connection.vendor != "postgresql":
                    raise InterfaceError("connection already closed")
                other = connections.create_connection(DEFAULT_DB_ALIAS)
                try:
                    with other.cursor() as cursor:
                        cursor.execute(
                            "SELECT pg_terminate_backend(%s)",
                            [connection.connection.info.backend_pid],
                        )
                finally:
                    other.close()
        return execute(sql, params, many, context)

    return close, seen


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fast", [True, False], ids=["fast path", "lean path"])
@pytest.mark.parametrize("at", [0, 1])
def test_a_connection_closed_under_the_sign_in_signs_in_once_or_answers_503(
    ada, at, fast, settings
):
    """passkeys/hotpath.py without_health_check: a transaction that failed on a dead connection
    stored nothing and runs once more on a new one (PostgreSQL); a connection that cannot be
    replaced is a 503. Either way one sign-in, one session, never a 500. On the fast path
    (passkeys/fastpath.py) and, with it off, on the lean path."""
    settings.THRESHOLD_FAST_SIGN_IN = fast
    cookies, headers, assertion = begun(ada)
    body = json.dumps(assertion).encode()
    before = stored()
    close, seen = _closing(at)
    with connection.execute_wrapper(close):
        status, _, content = wsgi(
            "POST", "/sign-in/result", body, dict(cookies), as_served=True, **headers
        )
    assert len(seen) > at
    if connection.vendor == "postgresql":
        assert status == 200, content
        assert stored()["sessions"] == before["sessions"] + 1
        assert stored()["used challenges"] == before["used challenges"] + 1
        # The same answer again is a replay.
        again = wsgi("POST", "/sign-in/result", body, dict(cookies), as_served=True, **headers)
        assert again[0] == 400
    else:
        assert_refused(
            (status, {"Content-Type": "application/json"}, content), 503, "passkey_unavailable"
        )
        assert stored() == before
    assert stored()["sessions"] <= before["sessions"] + 1
    cookies, headers, assertion = begun(ada)
    status, _, content = wsgi(
        "POST",
        "/sign-in/result",
        json.dumps(assertion).encode(),
        cookies,
        as_served=True,
        **headers,
    )
    assert status == 200, content


# --- The single sign-on's /token and /authorize -------------------------------------------------


def test_a_failure_at_any_statement_of_a_token_request_leaves_nothing_half_written(ada):
    """The code is used up, the tokens and the audit row written in one transaction: a database
    failure at any statement is a 503 that stores nothing, and the app's retry gets its tokens."""
    from tests.integration.test_sso import add_app, authorize, signed_in  # noqa: PLC0415

    app = add_app()
    browser = signed_in(ada)

    def counts() -> tuple[int, ...]:
        return (
            get_grant_model().objects.count(),
            get_access_token_model().objects.count(),
            get_refresh_token_model().objects.count(),
            AuditEvent.objects.count(),
        )

    def token_request() -> bytes:
        auth = authorize(browser, app)
        assert auth.response.status_code == 302, auth.response.content[:300]
        return urlencode(
            {
                "grant_type": "authorization_code",
                "code": auth.params["code"],
                "redirect_uri": auth.location.split("?", 1)[0],
                "code_verifier": auth.verifier,
                "client_id": app.client_id,
                "client_secret": app.client_secret,
            }
        ).encode()

    # An app's server, as most send it: no Accept header.
    form = {"CONTENT_TYPE": "application/x-www-form-urlencoded"}
    index = 0
    while True:
        body = token_request()
        before = counts()
        with database_fails(at=index) as seen:
            answer = wsgi("POST", "/token", body, **form)
        if len(seen) <= index:  # every statement has failed once
            assert answer[0] == 200, answer[2][:300]
            break
        assert_oauth_unavailable(answer)
        assert counts() == before, f"statement {index} ({seen[index][:40]}) left a trace"
        retry = wsgi("POST", "/token", body, **form)
        assert retry[0] == 200, retry[2][:300]
        assert "access_token" in json.loads(retry[2])
        index += 1
    assert index >= 3


@pytest.mark.parametrize("name", ["nonce", "code_challenge"])
def test_authorization_parameters_with_a_nul_are_refused_not_a_500(ada, name):
    from tests.integration.test_sso import REDIRECT_URI, add_app, pkce, signed_in  # noqa: PLC0415

    app = add_app()
    browser = signed_in(ada)
    _, challenge = pkce()
    query = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid",
        "state": "s",
        "nonce": "n",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    query[name] = f"a\x00{query[name]}"
    session = browser.client.cookies[SESSION_COOKIE].value
    grants = get_grant_model().objects.count()
    with nul_refused_as_postgresql_does():
        status, _, content = wsgi(
            "GET",
            "/authorize",
            cookies={SESSION_COOKIE: session},
            QUERY_STRING=urlencode(query),
            CONTENT_TYPE=None,
        )
    assert status < 500, content[:300]
    assert get_grant_model().objects.count() == grants


# --- A query string Django refuses to parse, read after the writes ------------------------------

# One more parameter than Django parses (DATA_UPLOAD_MAX_NUMBER_FIELDS): reading request.GET raises.
TOO_MANY_FIELDS = "&".join(f"p{number}=1" for number in range(1001))
LEAN = "threshold.passkeys.lean.LeanSignInMiddleware"


@pytest.mark.parametrize("stack", ["lean", "full"])
def test_a_query_string_of_too_many_fields_does_not_strand_a_stored_sign_in(ada, settings, stack):
    # ?next= is read once the sign-in is stored: its TooManyFieldsSent answered 400, with the
    # session, the audit row and the used challenge written and no cookie sent.
    if stack == "full":
        settings.MIDDLEWARE = [name for name in settings.MIDDLEWARE if name != LEAN]
    cookies, headers, assertion = begun(ada)
    before = stored()
    status, _, content = wsgi(
        "POST",
        "/sign-in/result",
        json.dumps(assertion).encode(),
        cookies,
        QUERY_STRING=TOO_MANY_FIELDS,
        **headers,
    )
    assert status == 200, content[:300]
    assert json.loads(content)["redirect"] == "/"
    assert stored()["sessions"] == before["sessions"] + 1
    assert Session.objects.filter(session_key=cookies[SESSION_COOKIE], user=ada.user).exists()


def test_a_query_string_of_too_many_fields_does_not_strand_a_sent_push(ada, clock):
    cookies, headers = signed_out()
    status, _, content = wsgi(
        "POST",
        "/sign-in/push",
        f"username=ada%40example.com&csrfmiddlewaretoken={cookies[CSRF_COOKIE]}".encode(),
        cookies,
        CONTENT_TYPE="application/x-www-form-urlencoded",
        QUERY_STRING=TOO_MANY_FIELDS,
        **headers,
    )
    assert status == 303, content[:300]
    assert SignInApproval.objects.count() == 1
    assert "threshold_push" in cookies


# --- An app's server calling while the database fails, or while something else breaks ----------


@pytest.mark.parametrize("path", ["/token", "/userinfo", "/revoke", "/introspect"])
@pytest.mark.parametrize("cookies", [False, True], ids=["lean", "full-stack"])
def test_an_apps_server_reads_an_oauth_error_when_the_database_fails(ada, path, cookies):
    """The endpoints an app's server calls answer their failures as OAuth errors, on the lean
    path and down the full stack (a call that carries a session cookie), with or without an
    Accept header: a client library reads JSON, not the person's "try again" page."""
    from tests.integration.test_sso import add_app, full_flow, signed_in  # noqa: PLC0415
    from tests.integration.test_sso_introspection import basic  # noqa: PLC0415

    app = add_app()
    tokens = full_flow(signed_in(ada), app)
    credentials = basic(app.client_id, app.client_secret)
    body = {
        "/token": {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        "/userinfo": {},
        "/revoke": {"token": tokens["access_token"]},
        "/introspect": {"token": tokens["access_token"]},
    }[path]
    headers = {
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "HTTP_AUTHORIZATION": (
            f"Bearer {tokens['access_token']}" if path == "/userinfo" else credentials
        ),
    }
    jar = {SESSION_COOKIE: "someone-elses"} if cookies else None
    with database_fails() as seen:
        answer = wsgi("POST", path, urlencode(body).encode(), jar, **headers)
    assert seen, "a statement was reached"
    assert_oauth_unavailable(answer)
    # The same call, once the database is back.
    status, _, content = wsgi("POST", path, urlencode(body).encode(), jar, **headers)
    assert status == 200, content[:300]


def test_an_apps_server_reads_server_error_when_its_call_breaks(ada, monkeypatch):
    from tests.integration.test_sso import add_app, full_flow, signed_in  # noqa: PLC0415
    from threshold.sso import views  # noqa: PLC0415

    app = add_app()
    tokens = full_flow(signed_in(ada), app)

    def broken() -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(views, "oauthlib_core", broken)
    body = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    body.update(client_id=app.client_id, client_secret=app.client_secret)
    status, headers, content = wsgi(
        "POST", "/token", urlencode(body).encode(), CONTENT_TYPE="application/x-www-form-urlencoded"
    )
    assert status == 500
    assert headers["Content-Type"] == "application/json"
    assert "Retry-After" not in headers
    assert json.loads(content)["error"] == "server_error"
    assert b"Traceback" not in content


@pytest.mark.parametrize(
    ("padding", "content_type"),
    [
        pytest.param({"padding": "x" * 64 * 1024}, FORM, id="over 64 KiB"),
        pytest.param({f"f{n}": "" for n in range(1200)}, FORM, id="too many fields"),
        pytest.param({}, f"{FORM}; charset=latin-1", id="not UTF-8"),
    ],
)
@pytest.mark.parametrize("path", ["/token", "/userinfo", "/revoke"])
@pytest.mark.parametrize("cookies", [False, True], ids=["no-cookie", "a-session-cookie"])
def test_an_apps_server_reads_an_oauth_error_for_a_body_that_cannot_be_read(
    ada, path, cookies, padding, content_type
):
    """A genuine call made unreadable (too big, too many fields, another charset): RFC 6749
    §5.2's JSON (RFC 6750 §3.1's at /userinfo), audited, the token neither used nor revoked,
    and the same call, readable, then works; with a session cookie too. /revoke goes down the
    full stack (RequestBodyMiddleware); /token and /userinfo are refused by the lean path
    before it (test_bad_input.py has the full stack's answer without the lean path)."""
    from tests.integration.test_sso import add_app, full_flow, signed_in  # noqa: PLC0415

    app = add_app()
    tokens = full_flow(signed_in(ada), app)
    credentials = {"client_id": app.client_id, "client_secret": app.client_secret}
    body = {
        "/token": {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        "/userinfo": {"access_token": tokens["access_token"]},
        "/revoke": {"token": tokens["access_token"]},
    }[path]
    if path != "/userinfo":
        body.update(credentials)
    jar = {SESSION_COOKIE: "someone-elses"} if cookies else None
    live = (get_access_token_model().objects.count(), get_refresh_token_model().objects.count())
    refusals = AuditEvent.objects.filter(action="sso.token_refused", reason="invalid_request")

    status, headers, content = wsgi(
        "POST", path, urlencode({**body, **padding}).encode(), jar, CONTENT_TYPE=content_type
    )

    assert status == 400, content[:300]
    assert headers["Content-Type"] == "application/json", headers
    assert headers["Cache-Control"] == "no-store"
    assert json.loads(content)["error"] == "invalid_request"
    if path == "/userinfo":
        assert headers["WWW-Authenticate"].startswith('Bearer error="invalid_request"')
    assert refusals.count() == 1
    assert (
        get_access_token_model().objects.count(),
        get_refresh_token_model().objects.filter(revoked__isnull=True).count(),
    ) == live
    status, _, content = wsgi("POST", path, urlencode(body).encode(), jar, CONTENT_TYPE=FORM)
    assert status == 200, content[:300]
