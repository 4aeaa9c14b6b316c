"""Idle sign-in and step-up pages expire (threshold/sessions/flow.py): "Session Expired".

The token is read from the page here, as webauthn.js reads it, and sent with an
explicit header; the Browser helper's own token (conftest.PageClient) is always
overridden.
"""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from django.test import Client

from tests.integration.conftest import (
    ORIGIN,
    SESSION_EXPIRED,
    Browser,
    assert_failed,
    assert_ok,
    invite,
    sign_in,
)
from threshold.audit.actions import Origin
from threshold.passkeys.models import UsedChallenge
from threshold.policy.actions import do_update_policy, get_policy
from threshold.sessions import flow
from threshold.sessions.models import Session

pytestmark = pytest.mark.django_db

IDLE_LIMIT = 10 * 60  # the policy's default flow_idle_timeout_minutes, in seconds


def page_flow(browser: Browser, path: str) -> str:
    page = browser.get(path)
    assert page.status_code == 200
    match = re.search(r'data-flow="([^"]+)"', page.content.decode())
    assert match, f"{path} carries no flow token"
    return match.group(1)


def options(browser: Browser, path: str, token: str, data=None):
    return browser.post_json(path, data or {}, **{flow.META_KEY: token})


def assert_expired(response) -> None:
    body = assert_failed(response, 400, SESSION_EXPIRED)
    assert body["error"]["code"] == "session_expired"
    assert body["error"]["nextSteps"] == ["restart"]


# --- Sign-in ---------------------------------------------------------------------------------


def test_a_fresh_sign_in_page_gets_options(ada, clock):
    browser = Browser()
    token = page_flow(browser, "/sign-in")
    clock.advance(IDLE_LIMIT)
    body = assert_ok(options(browser, "/sign-in/options", token, {"username": "ada@example.com"}))
    assert body["publicKey"]["allowCredentials"]


def test_a_sign_in_page_idle_too_long_reads_session_expired(ada, clock):
    browser = Browser()
    token = page_flow(browser, "/sign-in")
    clock.advance(IDLE_LIMIT + 1)
    assert_expired(options(browser, "/sign-in/options", token))
    assert not browser.ceremonies, "no ceremony begins"

    # Reloading the page starts again.
    assert_ok(options(browser, "/sign-in/options", page_flow(browser, "/sign-in")))


def test_the_idle_limit_follows_the_policy(ada, clock):
    do_update_policy(dataclasses.replace(get_policy(), flow_idle_timeout_minutes=5), Origin.cli())
    browser = Browser()
    token = page_flow(browser, "/sign-in")
    clock.advance(5 * 60 + 1)
    assert_expired(options(browser, "/sign-in/options", token))


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "1700000000:not-a-signature",
        # Well signed, but not a time: a token is only ever a number of seconds.
        flow._signer(flow.Flow.SIGN_IN).sign("yesterday"),
    ],
    ids=["empty", "garbage", "bad signature", "not a time"],
)
def test_a_garbled_token_reads_session_expired(ada, clock, token):
    assert_expired(options(Browser(), "/sign-in/options", token))


def test_a_missing_token_reads_session_expired(ada):
    # A client that is not one of our pages: the plain test client sends no header.
    client = Client(HTTP_ACCEPT="application/json")
    response = client.post("/sign-in/options", "{}", content_type="application/json")
    assert_expired(response)


def test_a_token_for_another_flow_is_refused(ada, clock):
    browser = Browser()
    assert_expired(options(browser, "/sign-in/options", flow.issue_flow_token(flow.Flow.STEP_UP)))
    assert_expired(
        options(browser, "/sign-in/options", flow.issue_flow_token(flow.Flow.ENROLLMENT))
    )


def test_an_anonymous_sign_in_page_stores_nothing(db):
    # Stateless: a page view costs no session row and no ceremony.
    browser = Browser()
    for _ in range(3):
        page_flow(browser, "/sign-in")
    assert not Session.objects.exists()
    assert not browser.ceremonies
    assert not UsedChallenge.objects.exists()


def test_the_sign_in_page_is_never_served_from_a_cache(db):
    # An old copy would carry an old token.
    response = Browser().get("/sign-in")
    assert "no-store" in response["Cache-Control"]


# --- Step-up ("Verify it's you") ---------------------------------------------------------------


@pytest.fixture
def ada_signed_in(ada, clock) -> Browser:
    browser = Browser()
    token = page_flow(browser, "/sign-in")
    public_key = assert_ok(options(browser, "/sign-in/options", token))["publicKey"]
    assert_ok(browser.post_json("/sign-in/result", ada.authenticator.get(public_key, ORIGIN)))
    return browser


def test_a_step_up_page_idle_too_long_reads_session_expired(ada_signed_in, clock):
    token = page_flow(ada_signed_in, "/settings/verify")
    assert_ok(options(ada_signed_in, "/settings/verify/options", token))
    clock.advance(IDLE_LIMIT + 1)
    assert_expired(options(ada_signed_in, "/settings/verify/options", token))


def test_a_sign_in_token_does_not_open_a_step_up(ada_signed_in, clock):
    token = flow.issue_flow_token(flow.Flow.SIGN_IN)
    assert_expired(options(ada_signed_in, "/settings/verify/options", token))
    assert_expired(options(ada_signed_in, "/settings/verify/options", ""))


# --- The conformance API ------------------------------------------------------------------------


def test_the_conformance_api_needs_no_flow_token(ada):
    tool = Client(enforce_csrf_checks=True)
    response = tool.post(
        "/assertion/options",
        json.dumps({"username": "ada@example.com"}),
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "ok"
    response = tool.post(
        "/attestation/options",
        json.dumps({"username": "grace@example.com", "displayName": "Grace"}),
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "ok"


# --- Enrollment and recovery links ---------------------------------------------------------------


def test_an_enrollment_page_idle_too_long_reads_session_expired(db, clock):
    _, token = invite("grace@example.com", "Grace Hopper")
    browser = Browser()
    page_token = page_flow(browser, f"/enroll/{token}")
    clock.advance(IDLE_LIMIT + 1)
    assert_expired(options(browser, f"/enroll/{token}/options", page_token))
    assert not browser.ceremonies
    # The link still works: reloading the page starts again.
    assert_ok(options(browser, f"/enroll/{token}/options", page_flow(browser, f"/enroll/{token}")))


def test_a_sign_in_token_does_not_open_an_enrollment(db, clock):
    _, token = invite("grace@example.com", "Grace Hopper")
    browser = Browser()
    assert_expired(options(browser, f"/enroll/{token}/options", page_flow(browser, "/sign-in")))


def test_a_set_up_another_page_idle_too_long_reads_session_expired(ada, clock):
    do_update_policy(dataclasses.replace(get_policy(), step_up_max_age_seconds=3600), Origin.cli())
    browser = Browser()
    assert_ok(sign_in(browser, ada.authenticator))
    add = "/settings/security-methods/add"
    token = page_flow(browser, add)
    clock.advance(IDLE_LIMIT + 1)
    assert_expired(options(browser, f"{add}/options", token))
    assert_ok(options(browser, f"{add}/options", page_flow(browser, add)))
