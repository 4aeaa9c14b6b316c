"""The single sign-on flow's cost in SQL per step, and the lean path for /token and /userinfo
(threshold/sso/lean.py): what it answers is what the full stack would.

The flow is bench/sso.py's: a person signed in already, authorize -> code -> token (with an ID
token) -> userinfo. These run on SQLite and on PostgreSQL (``scripts/with-postgres``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import re
import secrets
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.test import Client, RequestFactory, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from oauth2_provider.models import (
    get_access_token_model,
    get_grant_model,
    get_refresh_token_model,
)
from oauthlib.common import UNICODE_ASCII_CHARACTER_SET
from oauthlib.oauth2.rfc6749.grant_types.authorization_code import AuthorizationCodeGrant
from oauthlib.openid.connect.core.endpoints.pre_configured import Server as OpenIDServer

from tests.integration.conftest import Browser, enrolled_person
from tests.integration.test_lean_sign_in import TRANSACTION_CONTROL, wsgi
from tests.integration.test_sso import (
    REDIRECT_URI,
    App,
    add_app,
    authorize,
    exchange,
    pkce,
    signed_in,
    verify_id_token,
)
from threshold.audit.actions import Action, Origin
from threshold.audit.models import AuditEvent
from threshold.groups.actions import do_add_group, do_add_member, do_remove_member
from threshold.groups.models import Group
from threshold.sessions.models import Session
from threshold.sso import appcache, hotpath
from threshold.sso.actions import do_assign_app, do_remove_app, do_rotate_secret
from threshold.sso.lean import LeanTokenMiddleware
from threshold.sso.models import Application, AppSignIn
from threshold.sso.validator import hash_code, hash_secret

pytestmark = pytest.mark.django_db

LEAN = "threshold.sso.lean.LeanTokenMiddleware"
_TABLE = re.compile(r'(?:FROM|INTO|UPDATE)\s+"(\w+)"')


@pytest.fixture
def ada(db):
    person = enrolled_person("ada@example.com", "Ada Lovelace")
    for name in ("wiki-editors", "staff"):
        do_add_member(do_add_group(name, Origin.cli()), person.user, Origin.cli())
    return person


@contextlib.contextmanager
def full_stack(*browsers: Browser) -> Iterator[None]:
    """The settings without the lean path, for new test clients and for ``browsers``' own: a
    test client builds its middleware chain once, at its first request, so theirs are built
    again under these settings, and once more after them."""

    def rebuilt() -> None:
        for browser in browsers:
            browser.client.handler._middleware_chain = None

    with override_settings(MIDDLEWARE=[name for name in settings.MIDDLEWARE if name != LEAN]):
        rebuilt()
        try:
            yield
        finally:
            rebuilt()


def shapes(queries: CaptureQueriesContext) -> list[str]:
    """Each statement as its verb and first table (``SELECT sso_application``), in order;
    transaction control left out."""
    found = []
    for query in queries.captured_queries:
        sql = query["sql"]
        if sql.upper().startswith(TRANSACTION_CONTROL):
            continue
        table = _TABLE.search(_outside_parentheses(sql))
        found.append(f"{sql.split()[0].upper()} {table.group(1) if table else '?'}")
    return found


def _outside_parentheses(sql: str) -> str:
    """The statement without what is in parentheses (a subquery's FROM is not its table)."""
    kept, depth = [], 0
    for char in sql:
        depth += char == "("
        if depth == 0:
            kept.append(char)
        depth -= char == ")" and depth > 0
    return "".join(kept)


def flow(browser: Browser, app: App) -> dict[str, Any]:
    """One complete code flow; each step's answer and statements."""
    steps: dict[str, Any] = {}
    with CaptureQueriesContext(connection) as queries:
        auth = authorize(browser, app)
    assert auth.response.status_code == 302, auth.response.content[:300]
    assert "code" in auth.params, auth.location
    steps["authorize"] = shapes(queries)
    with CaptureQueriesContext(connection) as queries:
        tokens = exchange(app, auth.params["code"], auth.verifier)
    assert tokens.status_code == 200, tokens.content
    steps["token"] = shapes(queries)
    with CaptureQueriesContext(connection) as queries:
        info = Client().get(
            "/userinfo", HTTP_AUTHORIZATION=f"Bearer {tokens.json()['access_token']}"
        )
    assert info.status_code == 200, info.content
    steps["userinfo"] = shapes(queries)
    steps["answers"] = (tokens, info)
    return steps


def test_each_step_of_a_flow_runs_only_its_statements(ada):
    app = add_app()
    browser = signed_in(ada)
    # The first gives the session its sid (one UPDATE of the session); the worker keeps the
    # app it read (threshold/sso/appcache.py).
    flow(browser, app)
    steps = flow(browser, app)
    assert steps["authorize"] == [
        # The session with its person (threshold/sso/lean.py, hotpath.signed_in_session).
        "SELECT web_session",
        # The passkey it signed in with, its groups' rules and the policy: still allowed?
        # (threshold/passkeys/hotpath.py passkey_standing)
        "SELECT passkeys_passkey",
        "INSERT oauth2_provider_grant",
        "INSERT sso_appsignin",
        "INSERT audit_auditevent",
    ]
    assert steps["token"] == [
        # The code's sign-in, its grant, the person and their groups (threshold/sso/hotpath.py
        # find_code).
        "SELECT sso_appsignin",
        # The person's sessions: the one the code was given in has not ended (sessions.py
        # live_session).
        "SELECT web_session",
        # The tokens' transaction: the app's row held (validator.hold_app: an app removed
        # meanwhile is refused), then the single-use gate (use_grant).
        "SELECT sso_application",
        "DELETE oauth2_provider_grant",
        "INSERT oauth2_provider_accesstoken",
        "INSERT oauth2_provider_refreshtoken",
        "INSERT audit_auditevent",
    ]
    # The token with its person, app and the person's groups.
    assert steps["userinfo"] == ["SELECT oauth2_provider_accesstoken"]
    _tokens, info = steps["answers"]
    assert info.json()["groups"] == ["staff", "wiki-editors"]


def test_the_flows_audit_rows_are_what_record_writes(ada):
    app = add_app()
    flow(signed_in(ada), app)
    authorized = AuditEvent.objects.get(action=Action.SSO_AUTHORIZED)
    issued = AuditEvent.objects.get(action=Action.SSO_TOKEN_ISSUED)
    for event in (authorized, issued):
        assert (event.actor, event.subject, event.subject_label) == (
            ada.user,
            ada.user,
            ada.user.username,
        )
        assert event.ip
    assert authorized.via == "web"
    assert authorized.detail == {
        "app": app.client_id,
        "scopes": ["openid", "profile", "email", "groups"],
        "acr": authorized.detail["acr"],
    }
    assert authorized.detail["acr"]
    assert issued.detail == {"app": app.client_id, "grant_type": "authorization_code"}


def answers(ada) -> list[Any]:
    """A flow's token and userinfo answers, then refused ones: a wrong secret, a bad token."""
    app = add_app()
    tokens, info = flow(signed_in(ada), app)["answers"]
    refused = Client().post(
        "/token",
        {"grant_type": "authorization_code", "code": "x", "client_id": app.client_id,
         "client_secret": "wrong", "redirect_uri": "http://127.0.0.1:9000/callback",
         "code_verifier": "v" * 43},
    )  # fmt: skip
    unknown = Client().get("/userinfo", HTTP_AUTHORIZATION="Bearer nothing")
    assert refused.status_code == 401, refused.content
    assert unknown.status_code == 401, unknown.content
    return [answer(r) for r in (tokens, info, refused, unknown)]


def answer(response: Any) -> tuple[int, dict[str, str], Any]:
    """Status, headers (but the length), and the JSON body's keys or the body itself."""
    headers = {k: v for k, v in response.headers.items() if k != "Content-Length"}
    json_body = response.get("Content-Type", "").startswith("application/json")
    return response.status_code, headers, set(response.json()) if json_body else response.content


def test_the_lean_path_answers_with_the_full_stacks_headers(ada, clock):
    lean = answers(ada)
    with full_stack():
        full = answers(ada)

    assert lean == full
    assert "Content-Security-Policy" in lean[0][1]


def test_the_lean_path_takes_only_an_apps_cookieless_calls(db):
    lean = LeanTokenMiddleware(lambda request: None)  # type: ignore[arg-type,return-value]
    factory = RequestFactory()
    assert lean.answer(factory.post("/token", {"grant_type": "x"})) is not None
    assert lean.answer(factory.get("/userinfo")) is not None
    assert lean.answer(factory.post("/userinfo")) is not None
    with_cookie = factory.post("/token", {"grant_type": "x"})
    with_cookie.COOKIES[settings.SESSION_COOKIE_NAME] = "x"
    assert lean.answer(with_cookie) is None
    assert lean.answer(factory.get("/token")) is None
    assert lean.answer(factory.post("/authorize")) is None
    assert lean.answer(factory.post("/token", {"a": "b"}, HTTP_HOST="evil.example")) is None


def test_a_kept_app_is_read_again_once_it_changes(ada):
    app = add_app()
    browser = signed_in(ada)
    flow(browser, app)
    # Here: a new secret (a signal).
    old_secret = app.client_secret
    app = dataclasses.replace(app, client_secret=do_rotate_secret(app.application, Origin.cli()))
    flow(browser, app)
    auth = authorize(browser, app)
    stale = dataclasses.replace(app, client_secret=old_secret)
    assert exchange(stale, auth.params["code"], auth.verifier).status_code == 401
    # Another process on this machine (``threshold apps``, another worker): no signal here,
    # only its stamp.
    flow(browser, app)
    Application.objects.filter(pk=app.application.pk).update(client_secret=hash_secret("another"))
    appcache._path().write_bytes(b"another process")
    auth = authorize(browser, app)
    assert exchange(app, auth.params["code"], auth.verifier).status_code == 401
    flow(browser, dataclasses.replace(app, client_secret="another"))
    # Removed: its links are a page, not a redirect.
    do_remove_app(app.application, Origin.cli())
    assert authorize(browser, app).response.status_code == 400


def test_a_kept_app_is_read_again_after_max_age(ada, monkeypatch):
    app = add_app()
    browser = signed_in(ada)
    flow(browser, app)
    Application.objects.filter(pk=app.application.pk).update(redirect_uris="https://else.example/")
    later = time.monotonic() + appcache.MAX_AGE + 1
    monkeypatch.setattr(appcache.time, "monotonic", lambda: later)
    assert authorize(browser, app).response.status_code == 400


def test_the_tokens_rows_are_what_save_writes(ada, clock):
    app = add_app()
    tokens, _info = flow(signed_in(ada), app)["answers"]
    body = tokens.json()
    access = get_access_token_model().objects.get(
        token_checksum=hashlib.sha256(body["access_token"].encode()).hexdigest()
    )
    refresh = get_refresh_token_model().objects.get(
        token_checksum=hashlib.sha256(body["refresh_token"].encode()).hexdigest()
    )
    assert (access.user, access.application, access.scope) == (
        ada.user, app.application, "openid profile email groups",
    )  # fmt: skip
    assert access.created
    assert access.expires > access.created
    assert access.token != body["access_token"]  # stored as its checksum only (RFC 9700)
    assert (refresh.user, refresh.access_token, refresh.revoked) == (ada.user, access, None)
    assert refresh.token_family is not None
    assert access.resource == refresh.resource == []


@pytest.mark.django_db(transaction=True)
def test_an_app_another_server_removed_is_a_page_not_a_500(ada):
    app = add_app()
    browser = signed_in(ada)
    flow(browser, app)
    # Another server removed it: this process still keeps it (no signal, no stamp here).
    kept = appcache.get(app.client_id)
    assert kept is not None
    do_remove_app(app.application, Origin.cli())
    appcache.keep(app.client_id, kept, appcache.stamp())
    response = authorize(browser, app).response
    assert response.status_code == 400
    assert AuditEvent.objects.filter(action=Action.SSO_REFUSED, reason="app_removed").exists()


# --- The lean /authorize (threshold/sso/lean.py LeanTokenMiddleware.authorize) -----------------


def authorize_answer(response: Any) -> tuple[int, dict[str, str], dict[str, str]]:
    """Status, headers (the Location without its code and state; no length, no date) and
    cookies (no expiry)."""
    headers = {k: v for k, v in response.headers.items() if k not in ("Content-Length", "Expires")}
    assert "Expires" in response.headers  # never_cache's
    if "Location" in headers:
        headers["Location"] = re.sub(r"(code|state)=[^&]+", r"\1=X", headers["Location"])
    cookies = {
        name: {k: v for k, v in morsel.items() if k != "expires"}
        for name, morsel in response.cookies.items()
    }
    return response.status_code, headers, cookies


def test_the_lean_authorize_answers_as_the_full_stack(ada, clock):
    app = add_app()
    browser = signed_in(ada)
    flow(browser, app)  # the session's sid; the app kept
    answers = {}
    for stack in ("lean", "full"):
        with CaptureQueriesContext(connection) as queries:
            if stack == "full":
                with full_stack(browser):
                    response = authorize(browser, app).response
            else:
                response = authorize(browser, app).response
        answers[stack] = authorize_answer(response)
        # Read before the next request: Django empties the query log when one starts.
        answers[f"{stack} statements"] = shapes(queries)
        assert exchange(app, parse_code(response), "x" * 43).status_code == 400  # PKCE
    assert answers["lean"] == answers["full"]
    assert answers["lean"][0] == 302
    assert "Content-Security-Policy" in answers["lean"][1]
    # The person is read with the session, not by a SELECT of its own.
    assert answers["full statements"][1] == "SELECT accounts_user"
    assert answers["lean statements"] == [
        "SELECT web_session",
        "SELECT passkeys_passkey",
        "INSERT oauth2_provider_grant",
        "INSERT sso_appsignin",
        "INSERT audit_auditevent",
    ]
    assert answers["lean statements"] == (
        answers["full statements"][:1] + answers["full statements"][2:]
    )
    # A minute later the idle clock is refreshed (a session write): the full stack does it,
    # then the lean path answers again.
    clock.advance(61)
    later = authorize(browser, app).response
    assert later.status_code == 302
    assert settings.SESSION_COOKIE_NAME in later.cookies  # saved: its cookie renewed
    with CaptureQueriesContext(connection) as queries:
        assert authorize(browser, app).response.status_code == 302
    assert shapes(queries)[:3] == [
        "SELECT web_session",
        "SELECT passkeys_passkey",
        "INSERT oauth2_provider_grant",
    ]


def parse_code(response: Any) -> str:
    return re.search(r"[?&]code=([^&]+)", response["Location"]).group(1)


@pytest.mark.parametrize("mode", ["query", "fragment", "form_post"])
def test_the_lean_authorize_answers_each_response_mode_as_the_full_stack(ada, clock, mode):
    app = add_app()
    browser = signed_in(ada)
    flow(browser, app)
    answers = {}
    for stack in ("lean", "full"):
        stack_settings = full_stack(browser) if stack == "full" else contextlib.nullcontext()
        with CaptureQueriesContext(connection) as queries, stack_settings:
            response = authorize(browser, app, response_mode=mode).response
        status, headers, cookies = authorize_answer(response)
        headers.pop("Location", None)
        # The answer without its code and state, wherever the mode puts them, and without the
        # page's CSRF token (masked afresh for each answer).
        text = re.sub(
            r"(code|state|csrfmiddlewaretoken)(=|\" value=\")[^&\"]+",
            r"\1\2X",
            response.get("Location", "") + response.content.decode(),
        )
        answers[stack] = (status, headers, cookies, text)
        answers[f"{stack} statements"] = shapes(queries)
    assert answers["lean"] == answers["full"]
    assert answers["lean statements"] == (
        answers["full statements"][:1] + answers["full statements"][2:]
    )
    status, headers, _, text = answers["lean"]
    if mode == "form_post":
        assert status == 200
        assert "form-action 'self' http://127.0.0.1:9" in headers["Content-Security-Policy"]
        assert 'name="code" value="X"' in text
    else:
        assert status == 302
        assert ("#code=X" if mode == "fragment" else "?code=X") in text


def test_the_lean_authorize_takes_only_a_signed_in_plain_request(ada, clock):
    app = add_app()
    browser = signed_in(ada)
    flow(browser, app)
    lean = LeanTokenMiddleware(lambda request: None)  # type: ignore[arg-type,return-value]
    factory = RequestFactory()
    cookies = {settings.SESSION_COOKIE_NAME: browser.session_key}
    plain = {
        "response_type": "code", "client_id": app.client_id, "redirect_uri": REDIRECT_URI,
        "scope": "openid", "state": "s", "nonce": "n", "code_challenge": "c" * 43,
        "code_challenge_method": "S256",
    }  # fmt: skip

    def taken(query: Any = None, method: str = "get", **request_cookies: str) -> bool:
        request = getattr(factory, method)("/authorize?" + urlencode(query or plain, doseq=True))
        request.COOKIES.update(request_cookies if request_cookies else cookies)
        return lean.answer(request) is not None

    assert taken()
    for extra in ("prompt", "max_age", "acr_values", "id_token_hint", "threshold_reauth"):
        assert not taken({**plain, extra: "1"}), extra
    assert not taken({**plain, "state": ["a", "b"]})
    assert not taken(method="post")
    assert not taken(**{settings.SESSION_COOKIE_NAME: "nope"})
    assert not taken({**plain, "redirect_uri": "https://evil.example/cb"})
    assert not taken({**plain, "client_id": "unknown"})
    # Only apps without consent; assigned to everyone or to groups (the view decides).
    Application.objects.filter(pk=app.application.pk).update(require_consent=True)
    appcache.changed()
    authorize(browser, app)  # kept again
    assert not taken()
    Application.objects.filter(pk=app.application.pk).update(
        require_consent=False, for_everyone=False
    )
    appcache.changed()
    authorize(browser, app)
    assert taken()
    Application.objects.filter(pk=app.application.pk).update(for_everyone=True)
    appcache.changed()
    flow(browser, app)
    assert taken()
    # A session the timeout middleware would refresh or end.
    clock.advance(61)
    assert not taken()
    authorize(browser, app)  # the full stack refreshes it
    assert taken()
    clock.advance(settings.THRESHOLD_SESSION_IDLE_TIMEOUT + 1)
    assert not taken()


def test_the_lean_authorize_leaves_an_ended_session_to_the_full_stack(ada, clock):
    app = add_app()
    browser = signed_in(ada)
    flow(browser, app)
    clock.advance(settings.THRESHOLD_SESSION_IDLE_TIMEOUT + 1)
    response = authorize(browser, app).response
    assert response.status_code == 302
    assert response["Location"].startswith("/sign-in?")
    assert AuditEvent.objects.filter(action=Action.SESSION_EXPIRED, subject=ada.user).exists()
    # Locked: its sessions end (and one a sign-in wrote after the lock is ended by the stack).
    browser = signed_in(ada)
    flow(browser, app)
    type(ada.user).objects.filter(pk=ada.user.pk).update(locked_at=timezone.now())
    assert authorize(browser, app).response["Location"].startswith("/sign-in?")
    assert AuditEvent.objects.filter(
        action=Action.SESSION_EXPIRED, reason="account_locked"
    ).exists()


def test_the_grant_and_sign_in_rows_are_what_save_writes(ada, clock):
    app = add_app()
    browser = signed_in(ada)
    auth = authorize(browser, app)
    grant = get_grant_model().objects.get(code=auth.params["code"])
    assert (grant.user, grant.application, grant.redirect_uri) == (
        ada.user, app.application, REDIRECT_URI,
    )  # fmt: skip
    assert grant.scope == "openid profile email groups"
    assert (grant.code_challenge_method, grant.nonce, grant.claims) == ("S256", auth.nonce, "{}")
    assert grant.code_challenge
    assert grant.resource == []
    assert grant.created
    assert grant.updated
    assert grant.expires > grant.created
    sign_in = AppSignIn.objects.get(code_hash=hash_code(auth.params["code"]))
    assert (sign_in.user, sign_in.application) == (ada.user, app.application)
    assert all((sign_in.sid, sign_in.token_family, sign_in.created_at, sign_in.amr, sign_in.acr))
    assert sign_in.auth_time == int(
        Session.objects.get(session_key=browser.session_key).signed_in_at.timestamp()
    )


def test_access_and_refresh_tokens_are_oauthlibs_shape_from_one_draw(ada, monkeypatch):
    """30 characters of oauthlib's alphabet (about 178 bits), drawn once per token."""
    draws: list[int] = []
    randbelow = secrets.randbelow
    monkeypatch.setattr(secrets, "randbelow", lambda n: draws.append(n) or randbelow(n))
    app = add_app()
    auth = authorize(signed_in(ada), app)
    draws.clear()
    body = exchange(app, auth.params["code"], auth.verifier).json()
    for name in ("access_token", "refresh_token"):
        assert len(body[name]) == 30
        assert set(body[name]) <= set(UNICODE_ASCII_CHARACTER_SET)
    assert body["access_token"] != body["refresh_token"]
    assert draws.count(len(UNICODE_ASCII_CHARACTER_SET) ** 30) == 2


@pytest.mark.django_db(transaction=True)
def test_an_apps_calls_send_no_health_check_and_replace_a_dead_connection(ada, monkeypatch):
    """/token and /userinfo on the lean path run as the sign-in's do (passkeys/hotpath.py
    without_health_check): no SELECT 1 first; a connection found dead is replaced."""
    assert connection.settings_dict["CONN_HEALTH_CHECKS"]
    app = add_app()
    browser = signed_in(ada)
    checks: list[bool] = []
    is_usable = connection.is_usable

    def counted() -> bool:
        checks.append(usable := is_usable())
        return usable

    monkeypatch.setattr(connection, "is_usable", counted)

    def token_and_userinfo(auth: Any) -> None:
        body = urlencode(
            {"grant_type": "authorization_code", "code": auth.params["code"],
             "redirect_uri": REDIRECT_URI, "code_verifier": auth.verifier,
             "client_id": app.client_id, "client_secret": app.client_secret}
        ).encode()  # fmt: skip
        form = {"CONTENT_TYPE": "application/x-www-form-urlencoded"}
        status, _, content = wsgi("POST", "/token", body, {}, as_served=True, **form)
        assert status == 200, content
        bearer = {"HTTP_AUTHORIZATION": f"Bearer {json.loads(content)['access_token']}"}
        status, _, content = wsgi("GET", "/userinfo", b"", {}, as_served=True, **bearer)
        assert status == 200, content

    auth = authorize(browser, app)
    checks.clear()
    token_and_userinfo(auth)
    assert checks == []
    if connection.vendor != "postgresql":
        return  # SQLite's connection is a file: it cannot be killed
    auth = authorize(browser, app)  # Django's test client: its own connection handling
    other = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        with other.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(%s)", [connection.connection.info.backend_pid]
            )
    finally:
        other.close()
    token_and_userinfo(auth)


def test_an_authorization_is_validated_once_by_one_kept_oauthlib_server(ada, monkeypatch):
    """oauthlib validated each authorization twice (DOT's create_authorization_response runs
    the grant's whole validation again) and DOT's get_oauthlib_core built a new server for
    every request; the answer is the same (threshold/sso/views.py _issue_code)."""
    app = add_app()
    browser = signed_in(ada)
    flow(browser, app)
    counts = {"validations": 0, "servers": 0}
    validate = AuthorizationCodeGrant.validate_authorization_request
    server_init = OpenIDServer.__init__

    def counted_validation(self: Any, request: Any) -> Any:
        counts["validations"] += 1
        return validate(self, request)

    def counted_server(self: Any, *args: Any, **kwargs: Any) -> None:
        counts["servers"] += 1
        server_init(self, *args, **kwargs)

    # Spies: each calls oauthlib's own method and only counts.
    monkeypatch.setattr(
        AuthorizationCodeGrant, "validate_authorization_request", counted_validation
    )
    monkeypatch.setattr(OpenIDServer, "__init__", counted_server)
    for stack in ("lean", "full"):
        with full_stack(browser) if stack == "full" else contextlib.nullcontext():
            counts["validations"] = 0
            auth = authorize(browser, app)
            assert auth.response.status_code == 302
            assert counts["validations"] == 1, stack
            params = auth.params
            assert set(params) == {"code", "state", "iss"}
            assert params["iss"] == settings.THRESHOLD.public_url
            tokens = exchange(app, params["code"], auth.verifier)
            assert tokens.status_code == 200, tokens.content
    assert counts["servers"] == 0


@pytest.mark.django_db(transaction=True)
def test_a_lean_authorization_sends_no_health_check_and_replaces_a_dead_connection(
    ada, monkeypatch
):
    """The lean /authorize reads the session as /token's statements run (without_health_check):
    no SELECT 1 first on PostgreSQL; a connection found dead is replaced."""
    app = add_app()
    browser = signed_in(ada)
    flow(browser, app)  # the session's sid; the app kept
    cookies = {name: morsel.value for name, morsel in browser.client.cookies.items()}
    checks: list[bool] = []
    is_usable = connection.is_usable

    def counted() -> bool:
        checks.append(usable := is_usable())
        return usable

    monkeypatch.setattr(connection, "is_usable", counted)

    def authorized() -> None:
        _verifier, challenge = pkce()
        query = urlencode(
            {"response_type": "code", "client_id": app.client_id, "redirect_uri": REDIRECT_URI,
             "scope": "openid", "state": "s", "nonce": "n", "code_challenge": challenge,
             "code_challenge_method": "S256"}
        )  # fmt: skip
        status, headers, content = wsgi(
            "GET", "/authorize", b"", cookies, as_served=True, QUERY_STRING=query
        )
        assert status == 302, content
        assert "code=" in headers["Location"]

    checks.clear()
    authorized()
    assert checks == []
    if connection.vendor != "postgresql":
        return  # SQLite's connection is a file: it cannot be killed
    other = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        with other.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(%s)", [connection.connection.info.backend_pid]
            )
    finally:
        other.close()
    authorized()


def test_the_lean_authorize_answers_a_group_assigned_app_as_the_full_stack(ada, clock):
    """A group-assigned app takes the lean path too: one more SELECT (the person's
    membership), and the full stack's answers, the code or "You don't have access"."""
    app = add_app()
    do_assign_app(app.application, Origin.cli(), everyone=False, group_names=["wiki-editors"])
    browser = signed_in(ada)
    flow(browser, app)  # the session's sid; the app kept
    answers = {}
    for stack in ("lean", "full"):
        stack_settings = full_stack(browser) if stack == "full" else contextlib.nullcontext()
        with CaptureQueriesContext(connection) as queries, stack_settings:
            response = authorize(browser, app).response
        answers[stack] = authorize_answer(response)
        answers[f"{stack} statements"] = shapes(queries)
    assert answers["lean"] == answers["full"]
    assert answers["lean"][0] == 302
    assert answers["lean statements"] == [
        "SELECT web_session",
        "SELECT sso_application_groups",
        "SELECT passkeys_passkey",
        "INSERT oauth2_provider_grant",
        "INSERT sso_appsignin",
        "INSERT audit_auditevent",
    ]
    do_remove_member(Group.objects.get(name="wiki-editors"), ada.user, Origin.cli())
    refused = {}
    for stack in ("lean", "full"):
        stack_settings = full_stack(browser) if stack == "full" else contextlib.nullcontext()
        with CaptureQueriesContext(connection) as queries, stack_settings:
            response = authorize(browser, app).response
        refused[stack] = authorize_answer(response)
        refused[f"{stack} statements"] = shapes(queries)
        assert b"have access to Wiki" in response.content
    # The page's CSP nonce and CSRF token differ per answer.
    for stack in ("lean", "full"):
        status, headers, cookies = refused[stack]
        headers["Content-Security-Policy"] = re.sub(
            r"'nonce-[^']+'", "'nonce-X'", headers["Content-Security-Policy"]
        )
        refused[stack] = (status, headers, set(cookies))
    assert refused["lean"] == refused["full"]
    assert refused["lean"][0] == 403
    assert refused["lean statements"][:2] == ["SELECT web_session", "SELECT sso_application_groups"]
    assert AuditEvent.objects.filter(action=Action.SSO_REFUSED, reason="not_assigned").count() == 2


def test_the_groups_read_with_the_person_are_the_ones_their_own_select_reads(ada):
    """/token and /userinfo read the groups claim with the person (hotpath._group_names_column):
    the same names in the same order as group_names' SELECT ... ORDER BY, none as []."""
    for name in ("Zeta", "alpha", "Émile", "beta-2", "Beta 10"):
        do_add_member(do_add_group(name, Origin.cli()), ada.user, Origin.cli())
    expected = hotpath.group_names(ada.user.pk)
    assert len(expected) == 7
    app = add_app()
    browser = signed_in(ada)
    steps = flow(browser, app)
    tokens, info = steps["answers"]
    assert info.json()["groups"] == expected
    assert verify_id_token(tokens.json()["id_token"], app)["groups"] == expected
    assert "SELECT groups_group" not in steps["token"] + steps["userinfo"]
    for group in Group.objects.all():
        do_remove_member(group, ada.user, Origin.cli())
    tokens, info = flow(browser, app)["answers"]
    assert info.json()["groups"] == []
    assert verify_id_token(tokens.json()["id_token"], app)["groups"] == []
