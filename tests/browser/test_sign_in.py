"""Signing in and out: autofill, the passkey button, username first, and failures."""

from __future__ import annotations

import json
from typing import Any

import pytest
from playwright.sync_api import Page, Request, expect

from tests.browser.conftest import (
    SPY_PREFIX,
    Authenticator,
    Console,
    Invite,
    Server,
    enroll,
    open_sign_in_with_autofill_pending,
    posts_to,
    record_requests,
    sign_out,
)
from threshold.core.catalog import CATALOG
from threshold.core.policy import Policy

pytestmark = pytest.mark.browser

# What the sign-in page may say when a passkey does not sign the person in (core/catalog.py).
SIGN_IN_FAILURE_TITLES = {
    "We could not verify you",
    "Passkey Not Found or Canceled",
    "Verification failed",
}


def _body(request: Request) -> dict[str, Any]:
    return json.loads(request.post_data or "{}")


def test_sign_out_then_sign_in_with_the_passkey_button(
    page: Page, authenticator: Authenticator, server: Server, invite: Invite, console: Console
) -> None:
    person = invite()
    enroll(page, person)

    sign_out(page)
    expect(page.get_by_role("link", name="Sign in again")).to_have_attribute("href", "/sign-in")
    home = page.request.get("/", max_redirects=0)
    assert home.status == 302, "signed out"
    assert home.headers["location"] == "/sign-in?next=/", "signed out"

    open_sign_in_with_autofill_pending(page)
    requests = record_requests(page)
    page.get_by_role("button", name="Sign in with a passkey").click()

    page.wait_for_url("/")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Welcome, {person.name}")
    assert console.credential_requests()[-1] == "optional", "the button makes a modal request"
    [options] = posts_to(requests, "/sign-in/options")
    assert _body(options) == {}, "discoverable: no username"
    assert len(posts_to(requests, "/sign-in/result")) == 1
    actions = [action for action, _reason in server.audit(person.email)]
    assert actions[:2] == ["sign_in.succeeded", "sign_out"]


def test_sign_in_by_autofill_needs_no_click(
    page: Page, authenticator: Authenticator, server: Server, invite: Invite, console: Console
) -> None:
    person = invite()
    enroll(page, person)
    sign_out(page)
    requests = record_requests(page)

    # The conditional request starts when the page loads. Chromium's virtual
    # authenticator answers it without any focus or click (a person would pick
    # the passkey from the username field's autofill list).
    page.goto("/sign-in")

    page.wait_for_url("/")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Welcome, {person.name}")
    assert console.credential_requests() == ["conditional"]
    [options] = posts_to(requests, "/sign-in/options")
    assert _body(options) == {}
    assert len(posts_to(requests, "/sign-in/result")) == 1
    assert server.audit(person.email)[0] == ("sign_in.succeeded", "")


# No authenticator: a desktop Chromium's autofill request waits (conftest.HEADLESS_SHELL).
@pytest.mark.full_chromium
def test_username_field_offers_passkeys_in_autofill(page: Page) -> None:
    # The virtual authenticator answers conditional requests whatever the
    # markup, so the autofill test above cannot see this attribute: a real
    # browser offers passkeys only in a field marked "webauthn".
    page.goto("/sign-in")
    tokens = (page.locator("#username").get_attribute("autocomplete") or "").split()
    assert tokens[-1] == "webauthn"
    assert "username" in tokens


def test_username_first_sign_in(
    page: Page, authenticator: Authenticator, server: Server, invite: Invite, console: Console
) -> None:
    person = invite()
    enroll(page, person)
    sign_out(page)
    open_sign_in_with_autofill_pending(page)
    requests = record_requests(page)

    page.get_by_label("Username or work email").fill(person.email.upper())
    page.get_by_role("button", name="Continue").click()

    page.wait_for_url("/")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Welcome, {person.name}")
    assert console.credential_requests()[-1] == "optional"
    [options] = posts_to(requests, "/sign-in/options")
    assert _body(options) == {"username": person.email.upper()}
    assert server.audit(person.email)[0] == ("sign_in.succeeded", "")


OPTIONS_FOR = """async (username) => {
    const csrf = document.getElementById("ceremony").dataset.csrf;
    const response = await fetch("/sign-in/options", {
        method: "POST",
        headers: {
            "Content-Type": "application/json",
            "X-CSRFToken": csrf,
            "X-Threshold-Flow": document.getElementById("ceremony").dataset.flow,
        },
        body: JSON.stringify({username}),
    });
    return await response.json();
}"""


def test_unknown_username_shows_friendly_error(
    page: Page, authenticator: Authenticator, server: Server, invite: Invite
) -> None:
    person = invite()
    enroll(page, person)
    sign_out(page)
    open_sign_in_with_autofill_pending(page)
    # Decoy credentials for unknown usernames take the shapes of real ones,
    # security keys included; for a USB-only decoy Chromium would wait for a key
    # to be plugged in. Pick an unknown username whose decoy is a platform passkey.
    unknown = next(
        username
        for username in (f"nobody-{n}@example.com" for n in range(100))
        if all(
            "internal" in decoy.get("transports", [])
            for decoy in page.evaluate(OPTIONS_FOR, username)["publicKey"]["allowCredentials"]
        )
    )

    page.get_by_label("Username or work email").fill(unknown)
    page.get_by_role("button", name="Continue").click()

    # The options listed the account's (here decoy) passkeys and the device has none of them.
    expect(page.locator("#ceremony-error")).to_be_visible()
    expect(page.locator("#ceremony-error-title")).to_have_text(
        "Passkey is not found on this device"
    )
    expect(page.locator("#ceremony-error-message")).to_contain_text(
        "No Passkey is set up for this device"
    )
    assert page.url.endswith("/sign-in")
    expect(page.get_by_role("button", name="Continue")).to_be_enabled()
    assert server.audit(person.email)[0] == ("sign_out", "")

    # Back in the username field, autofill is offered again.
    with page.expect_console_message(lambda m: m.text == SPY_PREFIX + "conditional"):
        page.get_by_label("Username or work email").focus()


def test_sign_in_options_do_not_reveal_whether_an_account_exists(
    page: Page, authenticator: Authenticator, invite: Invite
) -> None:
    person = invite()
    enroll(page, person)
    sign_out(page)
    open_sign_in_with_autofill_pending(page)

    def options_for(username: str) -> dict[str, Any]:
        status, answer = page.evaluate(
            """async (username) => {
                const csrf = document.getElementById("ceremony").dataset.csrf;
                const response = await fetch("/sign-in/options", {
                    method: "POST",
                    headers: {
                        "Content-Type": "application/json",
                        "X-CSRFToken": csrf,
                        "X-Threshold-Flow": document.getElementById("ceremony").dataset.flow,
                    },
                    body: JSON.stringify({username}),
                });
                return [response.status, await response.json()];
            }""",
            username,
        )
        assert status == 200, answer
        return dict(answer)

    known = options_for(person.email)
    unknown = options_for("nobody-at-all@example.com")
    unknown_again = options_for("nobody-at-all@example.com")

    assert known.keys() == unknown.keys()
    assert known["publicKey"].keys() == unknown["publicKey"].keys()
    for name in ("rpId", "timeout", "userVerification"):
        assert known["publicKey"][name] == unknown["publicKey"][name], name
    [real] = known["publicKey"]["allowCredentials"]
    decoys = unknown["publicKey"]["allowCredentials"]
    # A known account's list is the same on every request, so the decoy must be too.
    assert unknown_again["publicKey"]["allowCredentials"] == decoys
    # Decoys take the shapes real authenticators have (this virtual one included);
    # which shape is derived from the username, so they vary as accounts do. Their count
    # follows the organisation's passkeys per person (threshold/passkeys/decoys.py): any
    # count a real account may have under the policy's limit, ten by default.
    assert 1 <= len(decoys) <= Policy().passkey_limit
    for decoy in decoys:
        assert decoy.keys() == real.keys()
        assert decoy["type"] == real["type"] == "public-key"
        assert decoy["transports"] in (
            ["internal"],
            ["hybrid", "internal"],
            ["nfc", "usb"],
            ["usb"],
        )
    assert real["transports"] in (["internal"], ["hybrid", "internal"])


def test_sign_in_without_user_verification_shows_friendly_error(
    page: Page, authenticator: Authenticator, server: Server, invite: Invite
) -> None:
    person = invite()
    enroll(page, person)
    sign_out(page)
    authenticator.set_user_verified(False)
    open_sign_in_with_autofill_pending(page)
    requests = record_requests(page)

    page.get_by_role("button", name="Sign in with a passkey").click()

    expect(page.locator("#ceremony-error")).to_be_visible()
    title = page.locator("#ceremony-error-title").inner_text()
    assert title in SIGN_IN_FAILURE_TITLES
    assert page.url.endswith("/sign-in")
    events = server.audit(person.email)
    assert ("sign_in.succeeded", "") not in events
    if posts_to(requests, "/sign-in/result"):
        # The browser sent an assertion without UV: the server must refuse it for that reason.
        assert events[0] == ("sign_in.failed", "user_not_verified")
        assert title == "We could not verify you"
    else:
        # Chromium refuses user verification itself (NotAllowedError): the server never sees it.
        assert events[0] == ("sign_out", "")
        assert title == "Passkey Not Found or Canceled"


# No authenticator: a desktop Chromium's autofill request waits (conftest.HEADLESS_SHELL).
@pytest.mark.full_chromium
def test_an_empty_username_says_so_beside_the_field(page: Page) -> None:
    entry = CATALOG["username_required"]
    said = f"{entry.title}: {entry.message}"
    page.goto("/sign-in")
    requests = record_requests(page)
    field = page.get_by_label("Username or work email")
    expect(field).to_have_accessible_description("")

    page.get_by_role("button", name="Continue").click()
    expect(page.locator("#username-error")).to_have_text(said)
    expect(page.get_by_role("alert").filter(has_text=entry.title)).to_be_visible()
    expect(field).to_be_focused()
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_have_accessible_description(said)

    # Typing clears it; spaces alone are still no username.
    field.fill("   ")
    expect(page.locator("#username-error")).to_be_hidden()
    expect(field).to_have_attribute("aria-invalid", "false")
    expect(field).to_have_accessible_description("")
    field.press("Enter")
    expect(page.locator("#username-error")).to_be_visible()
    expect(field).to_have_accessible_description(said)
    # Nothing asked the server for this (the autofill's own request has no username).
    assert [r for r in posts_to(requests, "/sign-in/options") if "username" in _body(r)] == []
