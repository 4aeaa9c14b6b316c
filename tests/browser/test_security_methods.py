"""Settings → Security Methods in Chromium: add, name and remove passkeys, with step-up.

Chromium's virtual authenticators stand in for the devices: the enrollment's
platform authenticator ("This device") and, added later on the same page, a
USB security key. The WebAuthn Signal API calls the pages make are recorded
by an init script, next to what the pages themselves report.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.conftest import (
    Authenticator,
    Console,
    Invite,
    Person,
    Server,
    add_authenticator,
    enroll,
    open_account_menu,
    open_sign_in_with_autofill_pending,
    sign_out,
)
from threshold.core.encoding import b64url_encode

pytestmark = pytest.mark.browser

# Records each WebAuthn Signal API call on the console, then makes it unchanged
# (Chromium applies them to its virtual authenticators, as a password manager
# would). A page with window.__thresholdSkipAcceptedSignal drops
# signalAllAcceptedCredentials, like a browser without it.
SIGNAL_SPY = """
(() => {
  const api = window.PublicKeyCredential;
  if (!api) return;
  for (const method of ["signalAllAcceptedCredentials", "signalCurrentUserDetails",
                        "signalUnknownCredential"]) {
    const original = typeof api[method] === "function" ? api[method].bind(api) : null;
    api[method] = (options) => {
      console.debug("threshold-test:signal:" + method + ":" + JSON.stringify(options));
      const skip = method === "signalAllAcceptedCredentials"
        && window.__thresholdSkipAcceptedSignal;
      return original && !skip ? original(options) : Promise.resolve();
    };
  }
})();
"""
SIGNAL_PREFIX = "threshold-test:signal:"


def signals(console: Console, method: str) -> list[dict]:
    prefix = f"{SIGNAL_PREFIX}{method}:"
    return [json.loads(t[len(prefix) :]) for t in console.texts() if t.startswith(prefix)]


@pytest.fixture
def spied(context: BrowserContext, console: Console) -> Console:
    context.add_init_script(SIGNAL_SPY)
    return console


def open_settings(page: Page) -> None:
    open_account_menu(page)
    page.get_by_role("link", name="Settings").click()
    page.get_by_role("heading", name="Security Methods").wait_for()


def methods(page: Page) -> list[str]:
    return page.locator("ul.methods li.method strong").all_inner_texts()


def verify_if_asked(page: Page) -> None:
    """Answer "Verify it's you" with the passkey at hand, when the page asks."""
    if page.get_by_role("heading", name="Verify it\u2019s you").is_visible():
        page.get_by_role("button", name="Verify").click()


def set_up_another(page: Page, choice: str) -> None:
    """From Settings: "Set up another", verify if asked, then pick where to keep the passkey."""
    page.get_by_role("link", name="Set up another").first.click()
    page.wait_for_load_state()
    verify_if_asked(page)
    page.get_by_role("button", name=choice).click()


def enrolled(page: Page, context: BrowserContext, person: Person) -> Authenticator:
    platform = add_authenticator(context, page, transport="internal")
    enroll(page, person)
    return platform


@pytest.fixture
def passkey_limit_of_two(server: Server) -> Iterator[None]:
    server.cli("policy", "set", "passkey_limit=2")
    try:
        yield
    finally:
        server.cli("policy", "set", "passkey_limit=10")


def test_add_name_and_remove_a_security_key(
    page: Page, context: BrowserContext, invite: Invite, server: Server, spied: Console
) -> None:
    person = invite()
    enrolled(page, context, person)
    open_settings(page)
    assert len(methods(page)) == 1
    expect(page.locator("#readiness")).to_contain_text("another method can be used")

    # The enrollment verified the person (fingerprint, face or PIN) a moment ago: "Set up
    # another" opens without a second "Verify it's you".
    page.get_by_role("link", name="Set up another").first.click()
    expect(page.get_by_role("heading", name="Set up another passkey")).to_be_visible()

    key = add_authenticator(context, page, transport="usb")
    page.get_by_role("button", name="A security key").click()
    page.wait_for_url("**/settings?added=*")
    assert len(key.credentials()) == 1

    # Name it: the default (authenticator and browser) is pre-filled.
    nickname = page.locator("#new-nickname")
    expect(nickname).to_have_value("Security key (Chrome on Linux)")
    nickname.fill("Blue YubiKey")
    page.get_by_role("button", name="Save nickname").first.click()
    expect(page.get_by_role("status").first).to_have_text("Nickname saved.")
    assert methods(page)[-1] == "Blue YubiKey"
    entry = page.locator("ul.methods li.method").last
    expect(entry).to_contain_text("Security key · Only on this key")
    expect(entry).to_contain_text("Most recently added")
    expect(page.locator("#readiness")).to_have_count(0)

    # Remove it again: the key is told, and forgets the passkey.
    page.get_by_role("link", name="Remove Blue YubiKey").click()
    expect(page.get_by_role("heading", name="Remove \u201cBlue YubiKey\u201d?")).to_be_visible()
    page.get_by_role("button", name="Remove").click()
    expect(page.get_by_role("status").first).to_have_text("The passkey was removed.")
    assert methods(page) == [methods(page)[0]]
    assert len(methods(page)) == 1

    # The browser was told which passkeys remain (WebAuthn Signal API).
    expect(page.locator("#security-methods")).to_have_attribute(
        "data-signal-all-accepted-credentials", "sent"
    )
    accepted = signals(spied, "signalAllAcceptedCredentials")
    assert len(accepted[-1]["allAcceptedCredentialIds"]) == 1
    assert len(accepted[-2]["allAcceptedCredentialIds"]) == 2
    assert key.credentials() == []

    # And told by email, both times.
    mail = "\n".join(server.emails())
    assert f"To: {person.email}" in mail
    assert "Subject: A passkey was added" in mail
    assert "Subject: A passkey was removed" in mail
    assert "Blue YubiKey" in mail
    actions = [action for action, _ in server.audit(person.email)]
    assert {"passkey.renamed", "passkey.removed"} <= set(actions)
    assert "step_up.succeeded" not in actions


def test_a_duplicate_and_the_passkey_limit(
    page: Page,
    context: BrowserContext,
    invite: Invite,
    server: Server,
    passkey_limit_of_two: None,
) -> None:
    enrolled(page, context, invite())
    open_settings(page)

    # The platform authenticator already holds a passkey: excludeCredentials.
    set_up_another(page, "This device")
    expect(page.locator("#ceremony-error-title")).to_have_text(
        "Passkey already registered for this device"
    )

    add_authenticator(context, page, transport="usb")
    page.get_by_role("button", name="A security key").click()
    page.wait_for_url("**/settings?added=*")
    expect(page.get_by_text("2 of 2 passkeys: the limit.")).to_be_visible()

    # At the limit the page runs no ceremony, and no script fails on it.
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.get_by_role("link", name="Set up another").first.click()
    expect(page.get_by_role("heading", name="Passkey Limit Reached")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("Remove an existing passkey")
    expect(page.get_by_role("button", name="A security key")).to_have_count(0)
    page.wait_for_load_state("load")
    page.reload()
    page.wait_for_load_state("load")
    expect(page.get_by_role("heading", name="Passkey Limit Reached")).to_be_visible()
    assert errors == []


def test_the_last_method_cannot_be_removed(
    page: Page, context: BrowserContext, invite: Invite
) -> None:
    enrolled(page, context, invite())
    open_settings(page)
    page.locator("ul.methods").get_by_role("link", name="Remove").click()
    verify_if_asked(page)
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("You Can\u2019t Remove Your Only Sign-in Method")
    expect(alert).to_contain_text("Set up another passkey first")
    expect(page.get_by_role("button", name="Remove")).to_have_count(0)
    page.get_by_role("link", name="Set up another").click()
    expect(page.get_by_role("heading", name="Set up another passkey")).to_be_visible()


def test_the_step_up_expires(
    page: Page, context: BrowserContext, invite: Invite, server: Server
) -> None:
    enrolled(page, context, invite())
    sign_out(page)
    open_sign_in_with_autofill_pending(page)
    page.get_by_role("button", name="Sign in with a passkey").click()
    page.wait_for_url("/")

    # A passkey sign-in with user verification is a fresh step-up...
    page.goto("/settings/security-methods/add")
    expect(page.get_by_role("heading", name="Set up another passkey")).to_be_visible()

    # ...for five minutes.
    server.advance_clock(301)
    page.goto("/settings/security-methods/add")
    expect(page.get_by_role("heading", name="Verify it\u2019s you")).to_be_visible()
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", name="Set up another passkey")).to_be_visible()


def test_a_removed_passkey_is_signalled_as_unknown_at_sign_in(
    page: Page, context: BrowserContext, invite: Invite, spied: Console
) -> None:
    # A browser that does not pass on the list of accepted passkeys.
    page.add_init_script("window.__thresholdSkipAcceptedSignal = true;")
    platform = enrolled(page, context, invite())
    open_settings(page)
    page.get_by_role("link", name="Set up another").first.click()
    verify_if_asked(page)
    key = add_authenticator(context, page, transport="usb")
    page.get_by_role("button", name="A security key").click()
    page.wait_for_url("**/settings?added=*")

    # Remove the platform authenticator's passkey; its credential stays on the device.
    page.locator("ul.methods li.method").first.get_by_role("link", name="Remove").click()
    page.get_by_role("button", name="Remove").click()
    expect(page.get_by_role("status").first).to_have_text("The passkey was removed.")
    assert len(platform.credentials()) == 1
    removed_id = base64.b64decode(platform.credentials()[0]["credentialId"])
    key.remove()

    sign_out(page)
    open_sign_in_with_autofill_pending(page)
    page.get_by_role("button", name="Sign in with a passkey").click()
    expect(page.locator("#ceremony-error-title")).to_have_text("Verification failed")
    expect(page.locator("#ceremony")).to_have_attribute("data-signal-unknown-credential", "sent")
    unknown = signals(spied, "signalUnknownCredential")
    assert unknown
    assert unknown[-1]["credentialId"] == b64url_encode(removed_id)
    # The device was told, and forgot the passkey.
    assert platform.credentials() == []


def test_a_new_display_name_is_signalled(
    page: Page, context: BrowserContext, invite: Invite, spied: Console
) -> None:
    person = invite()
    enrolled(page, context, person)
    open_settings(page)
    page.get_by_label("Name shown to you and to your password manager").fill("Grace B. Hopper")
    page.get_by_role("button", name="Save name").click()
    expect(page.get_by_role("status").first).to_have_text("Your name was saved.")
    expect(page.locator("header .account-menu summary")).to_contain_text("Grace B. Hopper")
    expect(page.locator("#security-methods")).to_have_attribute(
        "data-signal-current-user-details", "sent"
    )
    details = signals(spied, "signalCurrentUserDetails")
    assert details[-1]["displayName"] == "Grace B. Hopper"
    assert details[-1]["name"] == person.email


def test_after_set_up_another_the_nickname_prompt_is_in_view_and_focused(
    page: Page, context: BrowserContext, invite: Invite
) -> None:
    """The page lands on "Your new passkey is ready", its nickname field focused, whatever the
    length of the list below it."""
    enrolled(page, context, invite())
    open_settings(page)
    # A short window: the list of passkeys reaches well below it.
    page.set_viewport_size({"width": 800, "height": 500})
    add_authenticator(context, page, transport="usb")
    set_up_another(page, "A security key")
    page.wait_for_url("**/settings?added=*")
    page.wait_for_load_state("load")
    prompt = page.locator("#name-new-passkey")
    expect(prompt.get_by_role("heading", name="Your new passkey is ready")).to_be_in_viewport()
    nickname = page.get_by_label("Give it a nickname so it\u2019s easily identifiable")
    expect(nickname).to_be_focused()
    expect(nickname).to_be_in_viewport()
    assert page.evaluate("location.hash") == ""


def test_a_refused_nickname_keeps_what_was_typed_and_focuses_the_field(
    page: Page, context: BrowserContext, invite: Invite
) -> None:
    enrolled(page, context, invite())
    open_settings(page)
    page.get_by_text("Rename").first.click()
    field = page.locator("ul.methods").get_by_label("Nickname")
    expect(field).to_have_accessible_description("Up to 60 characters.")
    field.fill("Work <laptop>")
    page.locator("ul.methods").get_by_role("button", name="Save nickname").click()
    page.wait_for_load_state("load")

    field = page.locator("ul.methods").get_by_label("Nickname")
    expect(field).to_be_focused()
    expect(field).to_have_value("Work <laptop>")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_have_accessible_description(re.compile(r"^Name Not Saved: Enter a name"))
    expect(field).to_have_accessible_description(re.compile(r"Up to 60 characters\.$"))
    expect(field).to_be_in_viewport()
