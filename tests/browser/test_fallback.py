"""The fallback in Chromium: set up a password and authenticator app, sign in with them, and
the "Set up a passkey" / "I'll do it later" prompt coming back after 10 sign-ins or 7 days.

Codes come from pyotp with the key the set-up page shows, at the server's clock
(which the tests move, so that every sign-in has a fresh 30-second step).
"""

from __future__ import annotations

import pyotp
import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.conftest import Invite, Person, Server, add_authenticator, enroll, sign_out

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery staple"


def set_up_fallback(page: Page, server: Server) -> str:
    """From Settings, with the enrollment's passkey: returns the authenticator-app key.

    The enrollment verified the person a moment ago: no "Verify it's you" first."""
    page.goto("/settings")
    page.locator("#fallback").get_by_role("link", name="Set up").click()
    expect(
        page.get_by_role("heading", name="Set up a password and authenticator app")
    ).to_be_visible()
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    expect(page.get_by_role("img", name="QR code for your authenticator app")).to_be_visible()
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("The same password again").fill(PASSWORD)
    page.get_by_label("6-digit code").fill(pyotp.TOTP(secret).at(server.now()))
    page.get_by_role("button", name="Set up").click()
    expect(page.get_by_role("heading", name="Save your recovery codes")).to_be_visible()
    assert page.locator("#recovery-codes li").count() == 10
    page.get_by_role("link", name="I saved them").click()
    expect(page.locator("#fallback")).to_contain_text("Password and authenticator app")
    return secret


def fallback_sign_in(page: Page, server: Server, person: Person, secret: str) -> bool:
    """Sign in with the password and a fresh code; True when the passkey prompt appears."""
    server.advance_clock(30)  # a new time step: each code works once
    page.goto("/sign-in/password")
    page.get_by_label("Username or work email").fill(person.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("Code from your authenticator app").fill(pyotp.TOTP(secret).at(server.now()))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    prompted = page.get_by_role("heading", name="Set up a passkey").is_visible()
    if not prompted:
        expect(page.get_by_role("heading", name=f"Welcome, {person.name}")).to_be_visible()
    return prompted


def test_password_and_code_sign_in_and_the_passkey_prompt(
    page: Page, context: BrowserContext, invite: Invite, server: Server
) -> None:
    person = invite()
    add_authenticator(context, page, transport="internal")
    enroll(page, person)
    secret = set_up_fallback(page, server)
    sign_out(page)

    # The first fallback sign-in asks for a passkey; "I'll do it later" goes on.
    assert fallback_sign_in(page, server, person, secret)
    page.get_by_role("button", name="I\u2019ll do it later").click()
    expect(page.get_by_role("heading", name=f"Welcome, {person.name}")).to_be_visible()

    # Not again for 9 sign-ins...
    shown = []
    for _ in range(9):
        sign_out(page)
        shown.append(fallback_sign_in(page, server, person, secret))
    assert shown == [False] * 9
    # ...and back at the 10th.
    sign_out(page)
    assert fallback_sign_in(page, server, person, secret)

    # Snoozed again, it is back after 7 days.
    page.get_by_role("button", name="I\u2019ll do it later").click()
    sign_out(page)
    assert not fallback_sign_in(page, server, person, secret)
    sign_out(page)
    server.advance_clock(7 * 24 * 3600)
    assert fallback_sign_in(page, server, person, secret)

    # "Set up a passkey" right from the prompt: no second verification needed.
    page.get_by_role("link", name="Set up a passkey").click()
    expect(page.get_by_role("heading", name="Set up another passkey")).to_be_visible()

    actions = [action for action, _ in server.audit(person.email)]
    assert "fallback.set_up" in actions
    assert "passkey_prompt.snoozed" in actions
