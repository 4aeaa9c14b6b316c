"""Review: secrets and personal data in logs, audit rows, emails, URLs and error pages.

What was driven, in-process (Django's test client, and the production WSGI application
for the lean passkey sign-in path), with every log record captured at DEBUG and formatted
by the production formatter (``settings.LOGGING``'s RedactingFormatter), every audit row
and every email (locmem) read afterwards:

- an invite emailed and used, a passkey sign-in on the lean path, "Verify it's you",
  the password and authenticator-app fallback set up (TOTP secret, password, recovery
  codes) and used (wrong password, wrong code, a recovery code), an administrator's
  recovery links (notice without the link, and with it), an app's client secret, a full
  single sign-on (authorization code, PKCE verifier, access, refresh and ID tokens, a
  refresh token replayed, a wrong client secret), RP-initiated logout, and Threshold Verify
  set up from a setup code with its returned code; refusals production does log (a CSRF
  failure on a live link's path, a foreign Host);
- the gunicorn access log's RedactingLogger, given the atoms of requests that carry
  secrets in their URL;
- Django's error page with DEBUG on; the end-session confirmation page's caching.

Found right (the passing sweep pins it): no secret reaches a log line the production
configuration writes, any audit row, or any email but the one link an invitation (or a
recovery with --email-link) exists to deliver; the recovery notice that says it has no
link has none; every web-originated audit row has the address and the browser; pages
showing a secret are no-store. Records below the production levels are not asserted on:
oauthlib's DEBUG lines hold codes and tokens, and django.template's hold a page's whole
context (a link's token, the CSRF token), but Threshold's LOGGING writes INFO and up, with
no setting to lower it. The three tests after it are the defects it found, fixed since.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import logging
import re
import secrets
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pyotp
import pytest
from django.conf import settings as django_settings
from django.core import mail
from django.core.handlers.exception import response_for_exception
from django.test import Client, RequestFactory
from gunicorn.config import Config

from tests.integration.conftest import (
    CSRF_COOKIE,
    ORIGIN,
    Browser,
    Person,
    enroll,
)
from tests.support.authenticator import SoftAuthenticator
from tests.support.device import SoftDevice
from tests.support.wsgi import wsgi
from threshold.accounts.actions import do_set_role
from threshold.accounts.models import Role
from threshold.audit.actions import Origin
from threshold.audit.models import AuditEvent
from threshold.cli.accesslog import RedactingLogger
from threshold.enrollment.actions import do_invite
from threshold.sessions import flow
from threshold.sso.actions import NewApp, do_add_app

APP_URI = "https://wiki.example.com/cb"
LOGOUT_URI = "https://wiki.example.com/bye"
PASSWORD = "correct horse battery staple 42"
NO_STORE = "no-store"


# --- Capturing what is written -------------------------------------------------------------------


@dataclass
class Written:
    """Every log record, formatted as the production handler formats it, with whether the
    production configuration writes it (its logger's level before the capture lowered it)."""

    lines: list[tuple[bool, str]] = field(default_factory=list)

    def production(self) -> str:
        return "\n".join(line for written, line in self.lines if written)


class _Handler(logging.Handler):
    def __init__(self, written: Written, levels: dict[str, int]) -> None:
        super().__init__(logging.DEBUG)
        self.written = written
        self.levels = levels
        plain = django_settings.LOGGING["formatters"]["plain"]
        module, name = plain["()"].rsplit(".", 1)
        self.formatter = getattr(sys.modules[module], name)(plain["format"])

    def production_level(self, name: str) -> int:
        """The level the production configuration gives this logger: its own, else its
        nearest ancestor's, as they were before the capture lowered them."""
        while name:
            level = self.levels.get(name, logging.NOTSET)
            if level != logging.NOTSET:
                return level
            name = name.rpartition(".")[0]
        return self.levels[""]

    def emit(self, record: logging.LogRecord) -> None:
        assert self.formatter is not None
        written = record.levelno >= self.production_level(record.name)
        self.written.lines.append((written, self.formatter.format(record)))


# The loggers the brief names, and Django's and Threshold's own.
LOGGERS = (
    "",
    "django",
    "django.request",
    "django.security",
    "django.template",
    "oauth2_provider",
    "oauthlib",
    "fido2",
    "threshold",
    "gunicorn.access",
    "gunicorn.error",
)


@pytest.fixture
def written(settings) -> Iterator[Written]:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    # Loaded first: its django.setup() configures logging again, dropping a handler added before.
    import threshold.wsgi  # noqa: F401, PLC0415

    capture = Written()
    manager = logging.Logger.manager.loggerDict
    levels = {
        name: logger.level for name, logger in manager.items() if isinstance(logger, logging.Logger)
    }
    levels[""] = logging.getLogger().level
    saved = {name: logging.getLogger(name).level for name in LOGGERS}
    levels.update(saved)
    handler = _Handler(capture, levels)
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    logging.getLogger().addHandler(handler)
    try:
        yield capture
    finally:
        logging.getLogger().removeHandler(handler)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
        assert capture.lines, "nothing was captured: the handler was dropped"


# --- Helpers -------------------------------------------------------------------------------------


def _flow_of(page: bytes) -> str:
    found = re.search(rb'data-flow="([^"]+)"', page)
    assert found, "the page has no flow token"
    return found.group(1).decode()


def _step_up(browser: Browser, authenticator: SoftAuthenticator) -> None:
    page = browser.get("/settings/verify")
    options = browser.post_json(
        "/settings/verify/options", **{flow.META_KEY: _flow_of(page.content)}
    )
    assert options.status_code == 200, options.content
    credential = authenticator.get(options.json()["publicKey"], ORIGIN)
    result = browser.post_json("/settings/verify/result", credential)
    assert result.status_code == 200, result.content


def _post(browser: Browser, path: str, **fields: str) -> Any:
    return browser.client.post(path, {"csrfmiddlewaretoken": browser.csrf_token(), **fields})


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _basic(app: NewApp, secret: str | None = None) -> str:
    pair = f"{app.application.client_id}:{secret or app.client_secret}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


def _code_for(browser: Browser, app: NewApp, challenge: str, **extra: str) -> str:
    query = {
        "client_id": app.application.client_id,
        "redirect_uri": APP_URI,
        "response_type": "code",
        "scope": "openid profile email offline_access",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "st8",
        "nonce": "n0nce",
        **extra,
    }
    answer = browser.get("/authorize?" + urlencode(query))
    if answer.status_code == 200:  # the consent page
        answer = _post(browser, "/authorize?" + urlencode(query), allow="yes")
    assert answer.status_code == 302, answer.content[:300]
    return parse_qs(urlsplit(answer["Location"]).query)["code"][0]


def _tokens(browser: Browser, app: NewApp, code: str, verifier: str) -> dict[str, Any]:
    answer = browser.client.post(
        "/token",
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": APP_URI,
            "code_verifier": verifier,
        },
        HTTP_AUTHORIZATION=_basic(app),
    )
    assert answer.status_code == 200, answer.content
    body: dict[str, Any] = answer.json()
    return body


def _lean_sign_in(person: Person) -> str:
    """A passkey sign-in through the production WSGI application (the lean path); the
    session key it was given."""
    cookies: dict[str, str] = {}
    status, _, _ = wsgi("GET", "/sign-in", cookies=cookies, CONTENT_TYPE=None)
    assert status == 200
    csrf = cookies[CSRF_COOKIE]
    headers = {
        "HTTP_X_CSRFTOKEN": csrf,
        "HTTP_ORIGIN": ORIGIN,
        flow.META_KEY: flow.issue_flow_token(flow.Flow.SIGN_IN),
    }
    status, _, body = wsgi("POST", "/sign-in/options", b"{}", cookies, **headers)
    assert status == 200, body
    credential = person.authenticator.get(json.loads(body)["publicKey"], ORIGIN)
    status, _, body = wsgi(
        "POST", "/sign-in/result", json.dumps(credential).encode(), cookies, **headers
    )
    assert status == 200, body
    return cookies["threshold_session"]


def _access_line(method: str, path: str, query: str, status: str) -> str:
    """The line gunicorn's access log (``threshold serve``'s RedactingLogger, default
    format) writes for this request."""
    config = Config()
    config.set("accesslog", "-")
    logger = RedactingLogger(config)
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger.access_log.handlers = [Keep()]
    environ = {
        "REQUEST_METHOD": method,
        "RAW_URI": f"{path}?{query}" if query else path,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "203.0.113.7",
        "HTTP_USER_AGENT": "curl/8.5.0",
    }
    response = types.SimpleNamespace(
        status=status, status_code=int(status.split(maxsplit=1)[0]), sent=0
    )
    response.headers = [("Content-Type", "application/json")]
    request = types.SimpleNamespace(path=path, headers=[("USER-AGENT", "curl/8.5.0")])
    logger.access(response, request, environ, datetime.timedelta(milliseconds=3))
    return "\n".join(lines)


# --- The sweep (passes: what was found right) ----------------------------------------------------


def test_no_secret_reaches_a_written_log_line_an_audit_row_or_an_email(
    db, written, clock, django_capture_on_commit_callbacks
):
    found: dict[str, str] = {}  # every secret seen, by what it is
    person = SoftAuthenticator()

    # An invite, emailed, and used from its link.
    with django_capture_on_commit_callbacks(execute=True):
        created = do_invite("ada@example.com", Origin.cli(), full_name="Ada Lovelace")
    invite_token = created.link.rsplit("/", 1)[1]
    found["invite link token"] = invite_token
    browser = Browser()
    page = browser.get(f"/enroll/{invite_token}")
    assert NO_STORE in page["Cache-Control"]
    assert page["Referrer-Policy"] == "no-referrer"
    with django_capture_on_commit_callbacks(execute=True):
        assert enroll(browser, invite_token, person).status_code == 200
    ada = Person(created.user, person, created.invite)
    do_set_role(ada.user, Role.ADMINISTRATOR, Origin.cli())

    # A passkey sign-in on the lean path; "Verify it's you".
    found["lean session key"] = _lean_sign_in(ada)
    _step_up(browser, ada.authenticator)
    found["session key"] = browser.session_key or ""
    found["CSRF token"] = browser.client.cookies[CSRF_COOKIE].value

    # The fallback: its secret, the password, the recovery codes.
    page = browser.get("/settings/fallback/set-up")
    assert NO_STORE in page["Cache-Control"]
    totp_secret = browser.client.session["threshold.fallback.pending_secret"]
    found["TOTP secret"] = totp_secret
    found["password"] = PASSWORD
    code = pyotp.TOTP(totp_secret).at(clock.now)
    found["TOTP code"] = code
    shown = _post(
        browser,
        "/settings/fallback/set-up",
        password=PASSWORD,
        confirm_password=PASSWORD,
        code=code,
    )
    assert shown.status_code == 200
    assert NO_STORE in shown["Cache-Control"]
    codes = re.findall(
        r"\b[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}\b", shown.content.decode()
    )
    assert len(codes) == 10
    found.update({f"recovery code {i}": c for i, c in enumerate(codes)})

    # Signing in with them: a wrong password, a wrong code, then a recovery code.
    other = Browser()
    wrong = _post(other, "/sign-in/password", username="ada@example.com", password=PASSWORD + "x")
    found["wrong password"] = PASSWORD + "x"
    assert wrong.status_code >= 400
    assert _post(
        other, "/sign-in/password", username="ada@example.com", password=PASSWORD
    ).status_code in (302, 303)
    clock.advance(90)
    wrong_code = f"{(int(pyotp.TOTP(totp_secret).at(clock.now)) + 1) % 10**6:06d}"
    found["wrong TOTP code"] = wrong_code
    assert _post(other, "/sign-in/code", code=wrong_code).status_code >= 400
    with django_capture_on_commit_callbacks(execute=True):
        assert _post(other, "/sign-in/code", code=codes[0]).status_code in (302, 303)

    # Recovery links an administrator issues for Bob: the notice, then the link by email.
    with django_capture_on_commit_callbacks(execute=True):
        bob = do_invite("bob@example.com", Origin.cli(), full_name="Bob Builder")
    bob_token = bob.link.rsplit("/", 1)[1]
    found["Bob's invite token"] = bob_token
    # Refusals production logs (WARNING), with the live link in the path and a foreign Host.
    stranger = Client(enforce_csrf_checks=True, HTTP_USER_AGENT="curl/8.5.0")
    assert stranger.post(f"/enroll/{bob_token}/options").status_code == 403
    assert stranger.get(f"/enroll/{bob_token}", HTTP_HOST="evil.example").status_code == 400
    bob_soft = SoftAuthenticator()
    assert enroll(Browser(), bob_token, bob_soft).status_code == 200
    recovery_mail_from = len(mail.outbox)
    with django_capture_on_commit_callbacks(execute=True):
        issued = _post(browser, f"/admin/people/{bob.user.pk}/recovery")
    assert issued.status_code == 200
    assert NO_STORE in issued["Cache-Control"]
    found["recovery link token"] = re.findall(
        r"/enroll/([A-Za-z0-9_-]{20,})", issued.content.decode()
    )[0]
    notice = mail.outbox[recovery_mail_from:]
    assert len(notice) == 1
    assert "not in this email" in notice[0].body
    assert "http" not in notice[0].body, "a notice that says it has no link has one"
    with django_capture_on_commit_callbacks(execute=True):
        emailed = _post(browser, f"/admin/people/{bob.user.pk}/recovery", email_link="1")
    emailed_token = re.findall(r"/enroll/([A-Za-z0-9_-]{20,})", emailed.content.decode())[0]
    found["emailed recovery token"] = emailed_token

    # Single sign-on: a client secret, a code, a verifier and tokens.
    app = do_add_app(
        "Wiki", Origin.cli(), redirect_uris=[APP_URI], post_logout_redirect_uris=[LOGOUT_URI]
    )
    assert app.client_secret is not None
    found["client secret"] = app.client_secret
    verifier, challenge = _pkce()
    found["PKCE verifier"] = verifier
    authorization_code = _code_for(browser, app, challenge, prompt="consent")
    found["authorization code"] = authorization_code
    tokens = _tokens(browser, app, authorization_code, verifier)
    for name in ("access_token", "refresh_token", "id_token"):
        found[name] = tokens[name]
    userinfo = browser.client.get(
        "/userinfo", HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}"
    )
    assert userinfo.status_code == 200
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    renewed = browser.client.post("/token", refresh, HTTP_AUTHORIZATION=_basic(app))
    assert renewed.status_code == 200
    found["renewed refresh token"] = renewed.json()["refresh_token"]
    replayed = browser.client.post("/token", refresh, HTTP_AUTHORIZATION=_basic(app))
    assert replayed.status_code == 400
    wrong_secret = app.client_secret[::-1]
    found["wrong client secret"] = wrong_secret
    refused = browser.client.post("/token", refresh, HTTP_AUTHORIZATION=_basic(app, wrong_secret))
    assert refused.status_code == 401

    # Threshold Verify: a setup code and the code the device returns.
    _step_up(browser, ada.authenticator)
    set_up = _post(browser, "/settings/device-app/set-up")
    assert set_up.status_code == 200
    assert NO_STORE in set_up["Cache-Control"]
    text = set_up.content.decode()
    setup_code = re.findall(r"\b[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}\b", text)[0]
    found["setup code"] = setup_code
    confirm_path = re.findall(r'action="(/settings/device-app/set-up/[^"]+)"', text)[0]
    device = SoftDevice(now=lambda: clock.now)
    signed = device.sign(
        "/api/device/v1/enroll",
        {"setup_code": setup_code, "name": "Laptop", "platform": "linux", "app_version": "1"},
        with_jwk=True,
    )
    found["device request"] = signed
    answer = browser.client.post("/api/device/v1/enroll", signed, content_type="application/jose")
    assert answer.status_code == 200, answer.content
    returned = answer.json()["returned_code"]
    found["returned code"] = returned
    with django_capture_on_commit_callbacks(execute=True):
        added = _post(browser, confirm_path, returned_code=returned)
    assert added.status_code in (302, 303), added.content[:300]

    # RP-initiated logout with the ID token as its hint.
    logout = browser.get("/end-session?" + urlencode({"id_token_hint": tokens["id_token"]}))
    assert logout.status_code in (200, 302)

    # What was written.
    logs = written.production()
    assert "/enroll/[token]/options" in logs  # the production lines were read, redacted
    rows = list(AuditEvent.objects.order_by("id").values())
    audit = json.dumps(rows, default=str)
    links_emailed = {invite_token, bob_token, emailed_token}
    for what, secret in found.items():
        assert secret, what
        assert secret not in logs, f"the {what} is in a log line"
        assert secret not in audit, f"the {what} is in an audit row"
        for email in mail.outbox:
            if secret in links_emailed and secret in email.body:
                continue  # the one link that email exists to deliver
            assert secret not in email.body + email.subject, f"the {what} is in {email.subject!r}"
    # The precise reasons are there, and the address and browser of every web request.
    reasons = {row["reason"] for row in rows}
    assert {"password_incorrect", "refresh_token_reused", "invalid_client"} <= reasons
    for row in rows:
        if row["via"] == "web" and row["action"] not in ("sso.backchannel_logout_sent",):
            assert row["ip"], row
            assert row["user_agent"], row


# --- Defects -------------------------------------------------------------------------------------


def test_the_access_log_keeps_no_client_secret_or_code_from_a_url(db):
    ada_soft = SoftAuthenticator()
    created = do_invite("ada@example.com", Origin.cli(), full_name="Ada Lovelace")
    browser = Browser()
    assert enroll(browser, created.link.rsplit("/", 1)[1], ada_soft).status_code == 200
    app = do_add_app("Wiki", Origin.cli(), redirect_uris=[APP_URI])
    assert app.client_secret is not None
    verifier, challenge = _pkce()
    code = _code_for(browser, app, challenge)
    # An app written for a provider that takes GET (Facebook's /oauth/access_token does)
    # sends the exchange as a URL: Threshold refuses it (RFC 6749 §2.3.1, §3.2)...
    query = urlencode(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": APP_URI,
            "client_id": app.application.client_id,
            "client_secret": app.client_secret,
            "code_verifier": verifier,
        }
    )
    refused = browser.client.get(f"/token?{query}")
    assert refused.status_code == 405
    # ...which leaves the code unused: for its minute, with the secret and the verifier
    # beside it in the same line, it is worth tokens to whoever reads the log.
    line = _access_line("GET", "/token", query, "405 Method Not Allowed")
    assert "/token" in line
    assert _tokens(browser, app, code, verifier)["access_token"]
    assert app.client_secret not in line
    assert code not in line
    assert verifier not in line


def test_the_debug_error_page_does_not_show_the_secret_key(db, settings):
    settings.DEBUG = True  # only allowed with http:// origins (config._debug): a developer's
    request = RequestFactory().post(
        "/sign-in/password", {"username": "ada@example.com", "password": PASSWORD}
    )
    try:
        raise RuntimeError("any unhandled exception")  # what a bug would raise
    except RuntimeError as exc:
        # What Django's handler answers any uncaught exception with (DEBUG: the technical page).
        page = response_for_exception(request, exc).content.decode()
    assert "SECRET_KEY" in page  # Django's own setting, masked as it should be
    assert settings.SECRET_KEY not in page


def test_the_logout_confirmation_holding_an_id_token_is_not_stored(db):
    ada_soft = SoftAuthenticator()
    created = do_invite("ada@example.com", Origin.cli(), full_name="Ada Lovelace")
    laptop = Browser()
    assert enroll(laptop, created.link.rsplit("/", 1)[1], ada_soft).status_code == 200
    app = do_add_app(
        "Wiki", Origin.cli(), redirect_uris=[APP_URI], post_logout_redirect_uris=[LOGOUT_URI]
    )
    verifier, challenge = _pkce()
    id_token = _tokens(laptop, app, _code_for(laptop, app, challenge), verifier)["id_token"]
    # Ada signed in on another browser too; the app's logout link there asks first
    # (the hint is from another session), on a page that carries the ID token.
    phone = Browser()
    options = phone.post_json("/sign-in/options", {}).json()["publicKey"]
    assert phone.post_json("/sign-in/result", ada_soft.get(options, ORIGIN)).status_code == 200
    query = urlencode({"id_token_hint": id_token, "post_logout_redirect_uri": LOGOUT_URI})
    page = phone.get(f"/end-session?{query}")
    assert page.status_code == 200
    assert id_token in page.content.decode()
    assert NO_STORE in page.get("Cache-Control", "")
