"""Sign-out, session lifetimes, CSRF and the security headers on every page."""

from __future__ import annotations

import re

import pytest
from django.conf import settings as django_settings

from tests.integration.conftest import (
    CEREMONY_COOKIE_PREFIX,
    CSRF_COOKIE,
    ORIGIN,
    SESSION_COOKIE,
    SESSION_EXPIRED,
    Browser,
    assert_failed,
    assert_ok,
    audit_trail,
    invite,
    last_event,
    sign_in,
)
from tests.support.authenticator import SoftAuthenticator
from threshold.audit.models import AuditEvent
from threshold.passkeys.models import UsedChallenge
from threshold.sessions.models import Session

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(ada, clock) -> Browser:
    """Ada's browser, signed in with her passkey at ``clock.now``."""
    browser = Browser()
    assert_ok(sign_in(browser, ada.authenticator))
    assert browser.is_signed_in()
    return browser


# --- Sign-out --------------------------------------------------------------------------------


def test_sign_out_ends_the_session(ada, signed_in):
    session_key = signed_in.session_key
    response = signed_in.post_form("/sign-out")
    # See Other: the signed-out page is this address's GET (a reload sends no form again).
    assert (response.status_code, response["Location"]) == (303, "/sign-out")
    assert "You are signed out" in signed_in.get("/sign-out").content.decode()
    assert not Session.objects.filter(session_key=session_key).exists()

    home = signed_in.get("/")
    assert home.status_code == 302
    assert home["Location"].startswith("/sign-in")
    event = last_event("sign_out")
    assert event.actor == ada.user
    assert event.subject == ada.user
    assert event.reason == ""


def test_get_sign_out_shows_a_form_and_does_not_sign_out(signed_in):
    page = signed_in.get("/sign-out")
    assert page.status_code == 200
    html = page.content.decode()
    assert re.search(r'<form method="post" action="/sign-out">', html)
    assert 'name="csrfmiddlewaretoken"' in html
    # And a way back for someone who came here by mistake.
    assert '<a href="/" id="stay-signed-in">Stay signed in</a>' in html
    assert signed_in.is_signed_in()
    assert not AuditEvent.objects.filter(action="sign_out").exists()


def test_sign_out_without_the_csrf_token_is_refused(signed_in):
    response = signed_in.client.post("/sign-out", {})
    assert response.status_code == 403
    assert SESSION_EXPIRED in response.content.decode()
    assert signed_in.is_signed_in()


def test_signing_out_twice_is_harmless(signed_in):
    assert signed_in.post_form("/sign-out").status_code == 303
    assert signed_in.post_form("/sign-out").status_code == 303
    assert [a for a, _ in audit_trail()].count("sign_out") == 1


# --- Session lifetimes -------------------------------------------------------------------------


def test_idle_session_is_signed_out(ada, signed_in, clock):
    idle = django_settings.THRESHOLD_SESSION_IDLE_TIMEOUT
    clock.advance(idle - 1)
    assert signed_in.is_signed_in()  # activity restarts the idle clock
    clock.advance(idle - 1)
    assert signed_in.is_signed_in()
    clock.advance(idle + 1)
    assert not signed_in.is_signed_in()
    event = last_event("session.expired")
    assert event.actor == ada.user
    assert event.subject == ada.user
    assert not signed_in.is_signed_in()
    assert [a for a, _ in audit_trail()].count("session.expired") == 1


def test_session_ends_at_the_absolute_timeout_despite_activity(ada, signed_in, clock):
    max_age = django_settings.THRESHOLD_SESSION_MAX_AGE
    step = django_settings.THRESHOLD_SESSION_IDLE_TIMEOUT - 60
    elapsed = 0
    while elapsed + step < max_age:
        clock.advance(step)
        elapsed += step
        assert signed_in.is_signed_in(), elapsed
    clock.advance(max_age - elapsed + 1)
    assert not signed_in.is_signed_in()
    assert last_event("session.expired").subject == ada.user


def test_timeouts_follow_the_settings(ada, signed_in, clock, settings):
    settings.THRESHOLD_SESSION_IDLE_TIMEOUT = 120
    clock.advance(121)
    assert not signed_in.is_signed_in()
    assert last_event("session.expired").subject == ada.user


# --- CSRF --------------------------------------------------------------------------------------


def test_json_post_without_csrf_token_gets_a_json_403(ada):
    browser = Browser()
    browser.get("/sign-in")
    response = browser.client.post(
        "/sign-in/options", "{}", content_type="application/json", HTTP_ACCEPT="application/json"
    )
    body = assert_failed(response, 403, SESSION_EXPIRED)
    assert body["error"]["code"] == "session_expired"
    assert not browser.ceremonies

    # With the page's token (data-csrf), the same request works.
    page = browser.get("/sign-in")
    token = re.search(r'data-csrf="([^"]+)"', page.content.decode()).group(1)
    response = browser.client.post(
        "/sign-in/options",
        "{}",
        content_type="application/json",
        HTTP_ACCEPT="application/json",
        HTTP_X_CSRFTOKEN=token,
    )
    assert_ok(response)


def test_form_post_without_csrf_token_gets_the_problem_page(ada):
    browser = Browser()
    response = browser.client.post("/sign-in/options", {"username": "x"})
    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/html")
    assert SESSION_EXPIRED in response.content.decode()


@pytest.mark.parametrize("endpoint", ["/sign-in/options", "/sign-in/result", "options", "result"])
def test_every_state_changing_page_endpoint_needs_the_csrf_token(ada, endpoint):
    _, token = invite("grace@example.com", "Grace Hopper")
    path = endpoint if endpoint.startswith("/") else f"/enroll/{token}/{endpoint}"
    browser = Browser()
    browser.get(f"/enroll/{token}")
    used = UsedChallenge.objects.count()
    response = browser.client.post(
        path, "{}", content_type="application/json", HTTP_ACCEPT="application/json"
    )
    assert_failed(response, 403, SESSION_EXPIRED)
    assert not browser.ceremonies
    assert UsedChallenge.objects.count() == used
    assert audit_trail()[-1] == ("invite.created", "")  # the refused request changed nothing


def test_cross_site_origin_is_refused_even_with_a_token(ada):
    browser = Browser()
    response = browser.post_json("/sign-in/options", HTTP_ORIGIN="https://evil.example")
    assert_failed(response, 403, SESSION_EXPIRED)
    response = browser.post_json("/sign-in/options", HTTP_ORIGIN="http://localhost:8000")
    assert_ok(response)


def test_enrollment_needs_the_csrf_token_of_the_page(browser):
    _, token = invite()
    page = browser.get(f"/enroll/{token}")
    csrf = re.search(r'data-csrf="([^"]+)"', page.content.decode()).group(1)
    options = browser.client.post(
        f"/enroll/{token}/options", "{}", content_type="application/json", HTTP_X_CSRFTOKEN=csrf
    )
    assert_ok(options)


# --- Security headers --------------------------------------------------------------------------


def _check_security_headers(response) -> None:
    csp = response["Content-Security-Policy"]
    directives = {d.split()[0]: d.split()[1:] for d in (p.strip() for p in csp.split(";")) if d}
    assert directives["script-src"] == ["'self'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["default-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"]
    assert directives["base-uri"] == ["'none'"]
    assert "'unsafe-inline'" not in csp
    assert "'unsafe-eval'" not in csp
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] in ("same-origin", "no-referrer")
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in response  # plain http here


def _check_no_inline_script(html: str) -> None:
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert "src=" in tag or 'type="application/json"' in tag, tag
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"


def test_pages_send_strict_security_headers(ada, signed_in):
    _, token = invite("grace@example.com", "Grace Hopper")
    anonymous = Browser()
    pages = {
        "sign-in": anonymous.get("/sign-in"),
        "sign-out": anonymous.get("/sign-out"),
        "enroll": anonymous.get(f"/enroll/{token}"),
        "unusable link": anonymous.get("/enroll/nope"),
        "not found": anonymous.get("/no-such-page"),
        "home": signed_in.get("/"),
        "json": anonymous.post_json("/sign-in/options"),
    }
    expected_status = {"unusable link": 404, "not found": 404}
    for name, response in pages.items():
        assert response.status_code == expected_status.get(name, 200), name
        _check_security_headers(response)
        if response["Content-Type"].startswith("text/html"):
            _check_no_inline_script(response.content.decode())
    assert pages["enroll"]["Referrer-Policy"] == "no-referrer"
    assert pages["sign-in"]["Referrer-Policy"] == "same-origin"


def test_https_sends_hsts_and_secure_cookies(ada, settings):
    settings.SESSION_COOKIE_SECURE = True
    settings.CSRF_COOKIE_SECURE = True
    settings.SECURE_HSTS_SECONDS = 31536000
    browser = Browser(enforce_csrf_checks=False)

    page = browser.get("/sign-in", secure=True)
    assert page.status_code == 200
    assert page["Strict-Transport-Security"].startswith("max-age=31536000")
    csrf = page.cookies[CSRF_COOKIE]
    assert csrf["secure"] is True
    assert csrf["samesite"] == "Lax"

    options = browser.client.post(
        "/sign-in/options", "{}", content_type="application/json", secure=True
    )
    assert_ok(options)
    assert "Strict-Transport-Security" in options
    assert SESSION_COOKIE not in options.cookies  # a ceremony needs no session
    ceremony = options.cookies[f"{CEREMONY_COOKIE_PREFIX}authentication"]
    assert ceremony["secure"] is True
    assert ceremony["httponly"] is True
    assert ceremony["samesite"] == "Strict"
    assert ceremony["max-age"] == 300  # the ceremony's timeout

    # Enrollment over HTTPS: the signed-in session cookie is Secure too.
    _, token = invite("grace@example.com", "Grace Hopper")
    enrolling = Browser(enforce_csrf_checks=False)
    response = enroll_over_https(enrolling, token)
    assert_ok(response)
    assert response.cookies[SESSION_COOKIE]["secure"] is True

    # Plain http never gets HSTS.
    assert "Strict-Transport-Security" not in browser.get("/sign-in")


def enroll_over_https(browser: Browser, token: str):
    options = browser.client.post(
        f"/enroll/{token}/options", "{}", content_type="application/json", secure=True
    )
    credential = SoftAuthenticator().create(assert_ok(options)["publicKey"], ORIGIN)
    return browser.client.post(
        f"/enroll/{token}/result", credential, content_type="application/json", secure=True
    )


def test_session_cookie_is_httponly_over_http(ada):
    browser = Browser()
    response = sign_in(browser, ada.authenticator)
    assert_ok(response)
    cookie = response.cookies[SESSION_COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert not cookie["secure"]
