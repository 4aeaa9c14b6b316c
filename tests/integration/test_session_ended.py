"""A person whose session ended is told so on the sign-in page, once; nobody else is.

However the session ended (idle or absolute timeout, signed out from another
browser, a recovery or a lock), the browser lands on /sign-in. The page says
"Your session ended" when this browser was signed in (the ``threshold_signed_in``
cookie, sessions/middleware.py), and writes nothing to the database to know it.
"""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.integration.conftest import (
    ORIGIN,
    SESSION_COOKIE,
    Browser,
    Person,
    assert_ok,
    sign_in,
    token_of,
)
from tests.support.authenticator import SoftAuthenticator
from threshold.accounts.actions import do_lock_user
from threshold.audit.actions import Origin
from threshold.enrollment.actions import do_issue_recovery
from threshold.sessions.models import Session
from threshold.sessions.store import SessionStore

pytestmark = pytest.mark.django_db

SESSION_ENDED = "Your session ended. Sign in again to continue."
SIGNED_IN_COOKIE = "threshold_signed_in"


@pytest.fixture
def signed_in(ada: Person, clock) -> Browser:
    browser = Browser()
    assert_ok(sign_in(browser, ada.authenticator))
    assert browser.is_signed_in()
    return browser


def says_session_ended(browser: Browser) -> bool:
    page = browser.get("/sign-in")
    assert page.status_code == 200
    return SESSION_ENDED in page.content.decode()


def lands_on_sign_in(browser: Browser) -> None:
    """The browser opens Settings and is sent to sign in."""
    response = browser.get("/settings")
    assert response.status_code == 302
    assert response["Location"] == "/sign-in?next=/settings"


# --- However it ended, the sign-in page says so, once ----------------------------------------


def test_an_idle_session_that_ended_is_explained_once(signed_in, clock):
    clock.advance(django_settings.THRESHOLD_SESSION_IDLE_TIMEOUT + 1)
    lands_on_sign_in(signed_in)
    assert says_session_ended(signed_in)
    assert not says_session_ended(signed_in)  # shown once


def test_a_session_past_its_absolute_timeout_is_explained(signed_in, clock):
    step = django_settings.THRESHOLD_SESSION_IDLE_TIMEOUT - 60
    elapsed = 0
    while elapsed + step < django_settings.THRESHOLD_SESSION_MAX_AGE:
        clock.advance(step)
        elapsed += step
        assert signed_in.is_signed_in()
    clock.advance(django_settings.THRESHOLD_SESSION_MAX_AGE - elapsed + 1)
    lands_on_sign_in(signed_in)
    assert says_session_ended(signed_in)


def test_a_session_signed_out_from_another_browser_is_explained(ada, signed_in):
    other = Browser()
    assert_ok(sign_in(other, ada.authenticator))
    assert other.post_form("/settings/sessions/sign-out-others").status_code == 303

    lands_on_sign_in(signed_in)
    assert says_session_ended(signed_in)
    assert other.is_signed_in()


def test_a_session_ended_by_a_recovery_elsewhere_is_explained(ada, signed_in):
    issued = do_issue_recovery(ada.user, Origin.cli(), send_email=False)
    token = token_of(issued.link)
    phone = Browser()
    options = assert_ok(phone.post_json(f"/enroll/{token}/options"))["publicKey"]
    credential = SoftAuthenticator().create(options, ORIGIN)
    assert_ok(phone.post_json(f"/enroll/{token}/result", credential))

    lands_on_sign_in(signed_in)
    assert says_session_ended(signed_in)


def test_a_session_ended_by_a_lock_is_explained(ada, signed_in):
    do_lock_user(ada.user, Origin.cli(), "laptop stolen")
    lands_on_sign_in(signed_in)
    assert says_session_ended(signed_in)


# --- Nobody else hears it ----------------------------------------------------------------------


def test_signing_out_here_is_not_a_session_that_ended(signed_in):
    assert signed_in.post_form("/sign-out").status_code == 303
    assert not says_session_ended(signed_in)


def test_a_visitor_who_never_signed_in_is_told_nothing(ada):
    visitor = Browser()
    assert not says_session_ended(visitor)
    # An anonymous session (a password step begun, never finished: a passkey ceremony keeps
    # none) that went away is no signed-in one.
    anonymous = SessionStore()
    anonymous["threshold.fallback.user_id"] = ada.user.pk
    anonymous.save()
    visitor.client.cookies[SESSION_COOKIE] = anonymous.session_key
    assert visitor.session_key is not None
    Session.objects.all().delete()
    assert not says_session_ended(visitor)


def test_knowing_it_writes_nothing_to_the_database(signed_in, clock):
    clock.advance(django_settings.THRESHOLD_SESSION_IDLE_TIMEOUT + 1)
    lands_on_sign_in(signed_in)
    with CaptureQueriesContext(connection) as queries:
        assert says_session_ended(signed_in)
        assert not says_session_ended(signed_in)
    writes = [
        query["sql"]
        for query in queries.captured_queries
        if query["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
    ]
    assert writes == []


def test_the_cookie_is_http_only_and_follows_the_session_cookie(ada, settings):
    settings.SESSION_COOKIE_SECURE = True
    browser = Browser(enforce_csrf_checks=False)
    options = browser.client.post(
        "/sign-in/options", "{}", content_type="application/json", secure=True
    )
    assertion = ada.authenticator.get(assert_ok(options)["publicKey"], ORIGIN)
    response = browser.client.post(
        "/sign-in/result", assertion, content_type="application/json", secure=True
    )
    assert_ok(response)
    cookie = response.cookies[SIGNED_IN_COOKIE]
    assert cookie.value == "1"
    assert cookie["httponly"] is True
    assert cookie["secure"] is True
    assert cookie["samesite"] == "Lax"
    # Both end with the browser (SESSION_EXPIRE_AT_BROWSER_CLOSE).
    assert not cookie["max-age"], cookie.output()
    assert not cookie["expires"], cookie.output()
    assert not response.cookies[django_settings.SESSION_COOKIE_NAME]["max-age"]
