"""Diff review 6: the session cookie that ends with the browser (ce82e0c) and a code's exchange
that finds the session it was given in (4516d1a).

Covered: every way a browser gets or renews its session cookie and the signed-in marker
(passkey sign-in on the lean path, the full stack and the pure-WSGI fast path; enrollment,
recovery, the password+app fallback, a Threshold Verify push, step-up, /authorize with
``prompt=login``, key cycling, the idle clock's refresh): none sends Max-Age or Expires, and
both cookies carry the same attributes; the session row still ends at the idle and absolute
timeouts. At /token: a first-party app's code still exchanges; a code whose session ended is
refused as ``invalid_grant``, saying no more than an unknown code's refusal; a session found
timed out there is ended as a timeout ends one; and the lock order with a concurrent sign-out
on PostgreSQL.

No defect was found. The two tests pin what no other test shows: the cookies the idle clock's
refresh sends (a renewal with an expiry would make the browser's cookie outlive it again), and
that a session ended at a code's exchange tells its apps (back-channel logout) and answers
exactly as a code that never existed.
"""

from __future__ import annotations

from http.cookies import Morsel
from typing import Any

import pytest
from django.conf import settings as django_settings
from oauth2_provider.models import get_access_token_model

from tests.integration.conftest import FrozenClock, Person, enrolled_person
from tests.integration.test_sso import (
    add_app,
    authorize,
    exchange,
    full_flow,
    signed_in,
    verify_logout_token,
)
from threshold.audit.models import AuditEvent
from threshold.sessions.middleware import SIGNED_IN_COOKIE
from threshold.sessions.models import Session


@pytest.fixture
def ada(db: None) -> Person:
    return enrolled_person("ada@example.com", "Ada Lovelace")


def _lasts_with_the_browser(cookie: Morsel[str]) -> tuple[Any, ...]:
    """What a browser keeps a cookie by: its expiry (none) and the attributes that must match."""
    return (
        cookie["max-age"],
        cookie["expires"],
        cookie["path"],
        cookie["domain"],
        bool(cookie["secure"]),
        bool(cookie["httponly"]),
        cookie["samesite"],
    )


def test_the_idle_clocks_refresh_renews_both_cookies_without_an_expiry(
    ada: Person, clock: FrozenClock
) -> None:
    browser = signed_in(ada)
    clock.advance(61)  # past the idle clock's resolution: this request saves the session

    page = browser.get("/settings")

    assert page.status_code == 200
    session = page.cookies[django_settings.SESSION_COOKIE_NAME]
    marker = page.cookies[SIGNED_IN_COOKIE]
    assert session.value == browser.session_key
    expected = ("", "", "/", "", False, True, "Lax")
    assert _lasts_with_the_browser(session) == expected, session.output()
    assert _lasts_with_the_browser(marker) == expected, marker.output()
    # The row itself still ends at the timeouts, whatever the cookie does.
    clock.advance(django_settings.THRESHOLD_SESSION_IDLE_TIMEOUT + 1)
    assert browser.get("/settings").status_code == 302
    assert not Session.objects.filter(session_key=browser.session_key).exists()


def test_a_session_found_timed_out_at_a_codes_exchange_tells_its_apps_and_says_no_more(
    ada: Person,
    clock: FrozenClock,
    settings: Any,
    receiver: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    app = add_app(backchannel_logout_uri=receiver.url)
    browser = signed_in(ada)
    sid = full_flow(browser, app)["claims"]["sid"]
    auth = authorize(browser, app)
    assert "code" in auth.params, auth.location
    unknown = exchange(app, "x" * 30, auth.verifier)
    # The idle timeout at its shortest; the code is still within its minute, the session not.
    settings.THRESHOLD_SESSION_IDLE_TIMEOUT = 60
    clock.advance(61)

    with django_capture_on_commit_callbacks(execute=True):
        refused = exchange(app, auth.params["code"], auth.verifier)

    assert refused.status_code == unknown.status_code == 400
    assert refused.json() == unknown.json() == {"error": "invalid_grant"}
    assert AuditEvent.objects.filter(action="sso.token_refused").latest("id").reason == (
        "session_ended"
    )
    expired = AuditEvent.objects.get(action="session.expired")
    assert (expired.detail["timeout"], expired.detail["app"]) == ("idle", app.client_id)
    assert not Session.objects.filter(session_key=browser.session_key).exists()
    # Its apps are told, as a timeout found by ``threshold cleanup`` tells them.
    assert len(receiver.received) == 1
    assert verify_logout_token(receiver.received[0], app)["sid"] == sid
    # Nothing issued, and what the session gave the app without offline_access is revoked.
    assert not get_access_token_model().objects.filter(user=ada.user).exists()
    # Tried again, the code is one its session's end revoked.
    assert exchange(app, auth.params["code"], auth.verifier).status_code == 400
    assert AuditEvent.objects.filter(action="sso.token_refused").latest("id").reason == (
        "code_revoked"
    )
