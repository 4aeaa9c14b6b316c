"""The error catalog in Chromium: each entry a browser can produce, produced for real.

Chromium's virtual authenticator stands in for the device: no passkey on it, user
verification failing, nobody touching it until the ceremony times out. The page
maps the browser's DOMException and its context to a catalog entry
(webauthn.js, browserError) and shows its next steps.

Produced elsewhere: "Passkey already registered for this device"
(test_enrollment.py::test_same_authenticator_cannot_register_twice and
test_security_methods.py::test_a_duplicate_and_the_passkey_limit), "Verification
failed" (test_security_methods.py::test_a_removed_passkey_is_signalled_as_unknown_at_sign_in),
"Passkeys Not Supported" (test_page_security.py), "Synced Passkeys Not Allowed"
(test_authenticators.py), "Passkey Limit Reached" and "This link can't be used".

Not producible with Chromium: it reports a missing capability (ConstraintError:
"No compatible device found"), an unsupported algorithm (NotSupportedError) and
an unusable credential (InvalidStateError at sign-in) all as NotAllowedError, for
privacy; SecurityError needs a page on an origin the server's CSRF check refuses
first; UnknownError needs a failing authenticator.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import BrowserContext, Locator, Page, expect

from tests.browser.conftest import (
    STEP_TIMEOUT_MS,
    Authenticator,
    Console,
    Invite,
    Server,
    add_authenticator,
    enroll,
    open_sign_in_with_autofill_pending,
    sign_out,
)
from threshold.core.policy import SETTINGS_BY_NAME, Policy

pytestmark = pytest.mark.browser

SHORTEST_TIMEOUT = SETTINGS_BY_NAME["ceremony_timeout_seconds"].minimum
IDLE_LIMIT_SECONDS = Policy.flow_idle_timeout_minutes * 60

# A client that does not honour the requested user verification: the server's
# check is the last line. (Chromium itself refuses a failed verification before
# anything reaches the server, as NotAllowedError, which reads like a cancel.)
SKIP_USER_VERIFICATION = """
(() => {
  const container = navigator.credentials;
  const get = container.get.bind(container);
  container.get = (options) => {
    if (options && options.publicKey) options.publicKey.userVerification = "discouraged";
    return get(options);
  };
})();
"""


def title(page: Page) -> Locator:
    return page.locator("#ceremony-error-title")


def step(page: Page, name: str) -> Locator:
    return page.locator(f'#ceremony-next-steps li[data-step="{name}"]:visible')


def visible_steps(page: Page) -> list[str]:
    return page.locator("#ceremony-next-steps li:visible").evaluate_all(
        "items => items.map(item => item.dataset.step)"
    )


@pytest.fixture
def shortest_ceremony_timeout(server: Server) -> Iterator[int]:
    server.cli("policy", "set", f"ceremony_timeout_seconds={SHORTEST_TIMEOUT}")
    try:
        yield SHORTEST_TIMEOUT
    finally:
        server.cli("policy", "set", f"ceremony_timeout_seconds={Policy.ceremony_timeout_seconds}")


@pytest.fixture
def passkeys_only(server: Server) -> Iterator[None]:
    server.cli("policy", "set", "allow_password_fallback=false")
    try:
        yield
    finally:
        server.cli("policy", "set", "allow_password_fallback=true")


# --- No passkey on the device ---------------------------------------------------------------------


def test_no_passkey_on_the_device_reads_not_found_or_canceled(
    page: Page, authenticator: Authenticator, console: Console
) -> None:
    open_sign_in_with_autofill_pending(page)
    page.get_by_role("button", name="Sign in with a passkey").click()

    expect(title(page)).to_have_text("Passkey Not Found or Canceled")
    assert visible_steps(page) == ["retry", "another_device", "password"]
    # The page's catalog carries each entry under its code, which the script puts back.
    expect(page.locator("#ceremony-error-code")).to_have_text("passkey_not_found_or_canceled")
    expect(step(page, "password").get_by_role("link")).to_have_attribute(
        "href", "/sign-in/password"
    )
    # Offered once: the page's own link steps aside while the error's next step offers it.
    expect(page.get_by_role("link", name="Sign in with a password instead")).to_have_count(1)
    expect(page.locator("#password-link")).to_be_hidden()

    # "Try again" repeats the request: the same answer from the same empty device.
    requests = len(console.credential_requests())
    step(page, "retry").get_by_role("button", name="Try again").click()
    expect(page.locator("#ceremony-error")).to_be_visible()
    expect(title(page)).to_have_text("Passkey Not Found or Canceled")
    assert console.credential_requests()[requests:] == ["optional"]


def test_no_passkey_of_this_account_on_the_device_reads_not_found_on_this_device(
    page: Page, authenticator: Authenticator, invite: Invite, server: Server
) -> None:
    person = invite()
    enroll(page, person)
    sign_out(page)
    authenticator.remove_credentials()  # the passkey was deleted from the device
    open_sign_in_with_autofill_pending(page)

    page.get_by_label("Username or work email").fill(person.email)
    page.get_by_role("button", name="Continue").click()

    expect(title(page)).to_have_text("Passkey is not found on this device")
    expect(page.locator("#ceremony-error-message")).to_contain_text("on another device")
    assert visible_steps(page) == ["retry", "another_device", "password"]
    assert server.audit(person.email)[0] == ("sign_out", ""), "the server saw no assertion"


def test_a_closed_prompt_at_verify_its_you_reads_not_found_or_canceled(
    page: Page, authenticator: Authenticator, invite: Invite, server: Server
) -> None:
    """Signed in and verifying it's them, a person who closes the prompt is not told their
    passkey is gone, nor to sign in another way (a new user's walk, December 7)."""
    person = invite()
    enroll(page, person)
    server.advance_clock(301)  # past the step-up window
    authenticator.set_user_verified(False)  # Chromium ends it as a closed prompt would
    page.goto("/settings/verify?next=%2Fsettings%2Fsecurity-methods%2Fadd")
    page.get_by_role("button", name="Verify").click()

    expect(title(page)).to_have_text("Passkey Not Found or Canceled")
    expect(page.locator("#ceremony-error-message")).not_to_contain_text("sign in another way")
    assert page.url.endswith("/settings/verify?next=%2Fsettings%2Fsecurity-methods%2Fadd")


def test_the_password_step_is_offered_only_when_the_policy_allows_it(
    page: Page, authenticator: Authenticator, passkeys_only: None
) -> None:
    open_sign_in_with_autofill_pending(page)
    page.get_by_role("button", name="Sign in with a passkey").click()

    expect(title(page)).to_have_text("Passkey Not Found or Canceled")
    assert visible_steps(page) == ["retry", "another_device"]
    expect(page.get_by_role("link", name="Sign in with a password instead")).to_have_count(0)


# --- User verification --------------------------------------------------------------------------


def test_sign_in_without_user_verification_reads_we_could_not_verify_you(
    page: Page, authenticator: Authenticator, invite: Invite, server: Server
) -> None:
    person = invite()
    enroll(page, person)
    sign_out(page)
    authenticator.set_user_verified(False)
    page.add_init_script(SKIP_USER_VERIFICATION)
    open_sign_in_with_autofill_pending(page)

    page.get_by_role("button", name="Sign in with a passkey").click()

    expect(title(page)).to_have_text("We could not verify you")
    assert visible_steps(page) == ["retry", "another_device", "password"]
    assert server.audit(person.email)[0] == ("sign_in.failed", "user_not_verified")


def test_set_up_without_user_verification_reads_set_up_canceled(
    page: Page, authenticator: Authenticator, invite: Invite, server: Server
) -> None:
    # Chromium ends the request itself (NotAllowedError) before the prompt's timeout.
    person = invite()
    authenticator.set_user_verified(False)
    page.goto(person.link)
    page.get_by_role("button", name="Create a passkey").click()

    expect(title(page)).to_have_text("Passkey Set Up Canceled")
    # No page to go to later from an invite link yet, and never a password at set-up.
    assert visible_steps(page) == ["retry", "another_device"]
    expect(step(page, "another_device")).to_contain_text("Set up the passkey on another device")
    assert server.passkey_count(person.email) == 0


# --- Nobody answers -----------------------------------------------------------------------------


def test_an_unanswered_prompt_reads_request_timed_out(
    page: Page,
    context: BrowserContext,
    authenticator: Authenticator,
    invite: Invite,
    shortest_ceremony_timeout: int,
) -> None:
    """Sign-in and set-up wait side by side, in two tabs: one timeout's wait for both."""
    signing_in, setting_up = invite(), invite()
    enroll(page, signing_in)
    sign_out(page)
    open_sign_in_with_autofill_pending(page)
    authenticator.set_presence_simulation(False)  # nobody touches the device
    other = context.new_page()
    add_authenticator(context, other, automaticPresenceSimulation=False)
    other.goto(setting_up.link)

    started = time.monotonic()
    page.get_by_role("button", name="Sign in with a passkey").click()
    other.get_by_role("button", name="Create a passkey").click()

    wait = (shortest_ceremony_timeout + 5) * 1000
    expect(title(page)).to_have_text("Passkey Request Timed Out", timeout=wait)
    expect(title(other)).to_have_text("Passkey Request Timed Out", timeout=STEP_TIMEOUT_MS)
    assert time.monotonic() - started >= shortest_ceremony_timeout - 1
    expect(page.locator("#ceremony-error-message")).to_have_text(
        "You did not respond to the passkey prompt in time. Please try again."
    )
    expect(other.locator("#ceremony-error-message")).to_contain_text("set it up later")
    assert visible_steps(page) == ["retry", "another_device"]
    assert visible_steps(other) == ["retry"]


# --- Idle pages and unreachable servers -----------------------------------------------------------


def test_an_idle_sign_in_page_reads_session_expired_and_starts_again(
    page: Page, authenticator: Authenticator, invite: Invite, server: Server
) -> None:
    person = invite()
    enroll(page, person)
    sign_out(page)
    open_sign_in_with_autofill_pending(page)

    server.advance_clock(IDLE_LIMIT_SECONDS + 1)
    page.get_by_role("button", name="Sign in with a passkey").click()

    expect(title(page)).to_have_text("Session Expired")
    assert visible_steps(page) == ["restart"]
    # The error offers no password: the page's own link stays.
    expect(page.locator("#password-link")).to_be_visible()
    step(page, "restart").get_by_role("link", name="Start again").click()
    expect(page.locator("#ceremony-error")).to_be_hidden()
    page.get_by_role("button", name="Sign in with a passkey").click()
    page.wait_for_url("/")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Welcome, {person.name}")


def test_an_unreachable_server_reads_passkey_unavailable(
    page: Page, authenticator: Authenticator
) -> None:
    open_sign_in_with_autofill_pending(page)
    page.route("**/sign-in/options", lambda route: route.abort("connectionrefused"))
    page.get_by_role("button", name="Sign in with a passkey").click()

    expect(title(page)).to_have_text("Passkey Unavailable")
    assert visible_steps(page) == ["retry", "password"]


def test_without_passkeys_the_sign_in_page_still_offers_a_password(page: Page) -> None:
    page.add_init_script("delete window.PublicKeyCredential;")
    page.goto("/sign-in")
    expect(page.locator("#not-supported")).to_be_visible()
    expect(page.locator("#password-link")).to_be_visible()
    expect(page.locator("#password-link")).to_have_attribute("href", "/sign-in/password")
