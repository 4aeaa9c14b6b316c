"""Review: Threshold with the keyboard only and with a screen reader, in Chromium, against
WCAG 2.2 AA and the WAI-ARIA Authoring Practices.

Walked (see /tmp/keyboard-review/ for the exploration): the invite link, sign-in (autofill,
the button, username first, the push in the page and its Cancel, the password and code),
Home, Settings (name, Security Methods: set up another, rename, remove and the last-method
guard, the password and authenticator app with its QR code, key and recovery codes,
Threshold Verify's set-up, sessions), "Verify it's you", the "Set up a passkey" prompt,
error pages, help, and the admin portal (people, a person, invite, policy, audit log,
readiness). On each: the Tab order, the focus ring, no trap, the skip link, one h1 and the
heading order, titles, lang, labels and accessible names (Chromium's accessibility tree),
autocomplete, where the focus goes and what is announced after a failed submit or a failed
WebAuthn ceremony, table captions and headers, and animations (there are none to reduce).

One test per defect, a strict xfail until it is fixed (raises=AssertionError: a step that
cannot be taken fails the test for real); the fixed ones pass. The first test pins the focus
after a failed passkey ceremony, which no other test shows.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import (
    Authenticator,
    Invite,
    Server,
    enroll,
    open_sign_in_with_autofill_pending,
    sign_out,
)
from tests.browser.test_portal import staff, verify_now

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery staple"

# Where the focus is after a page loads, and which of the page's fields are marked invalid,
# with what describes each.
FOCUS_AND_INVALID_JS = """
() => {
  const active = document.activeElement;
  return {
    focused: !active || active === document.body ? null : (active.id || active.tagName),
    invalid: Object.fromEntries([...document.querySelectorAll('main [aria-invalid="true"]')]
      .map((field) => [field.id, field.getAttribute("aria-describedby") || ""])),
  };
}
"""


def focus_and_invalid(page: Page) -> dict[str, object]:
    page.wait_for_load_state()  # page.js (deferred) has run
    return dict(page.evaluate(FOCUS_AND_INVALID_JS))


def assert_field_in_error(page: Page, field_id: str, error_id: str) -> None:
    """The refused field is marked invalid and described (by the error, or a note of its own),
    and the focus is on it or on the error: what the sign-in's password and code steps do."""
    state = focus_and_invalid(page)
    invalid = state["invalid"]
    assert isinstance(invalid, dict)
    assert invalid.get(field_id), state
    assert state["focused"] in {field_id, error_id}, state


def press(page: Page, selector: str, key: str = "Enter") -> None:
    """Move the focus to ``selector`` and press ``key``, as a keyboard user would."""
    page.locator(selector).focus()
    page.keyboard.press(key)


# --- What works: the focus after a failed passkey ceremony ------------------------------------


def test_a_failed_passkey_sign_in_takes_the_focus_to_the_error_and_try_again_is_next(
    page: Page, authenticator: Authenticator, invite: Invite
) -> None:
    person = invite()
    enroll(page, person)
    sign_out(page)
    authenticator.set_user_verified(False)
    open_sign_in_with_autofill_pending(page)
    press(page, "#passkey-button")

    error = page.locator("#ceremony-error")
    expect(error).to_be_focused()
    expect(error).to_have_attribute("role", "alert")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Try again")).to_be_focused()
    authenticator.set_user_verified(True)
    page.keyboard.press("Enter")
    page.wait_for_url("/")
    expect(page.get_by_role("heading", level=1, name=f"Welcome, {person.name}")).to_be_visible()


# --- Defects ----------------------------------------------------------------------------------


def test_sign_in_with_a_password_instead_keeps_the_username_typed(
    page: Page, authenticator: Authenticator, invite: Invite
) -> None:
    person = invite()
    enroll(page, person)
    sign_out(page)
    authenticator.remove_credentials()  # no passkey on this device: username first fails
    open_sign_in_with_autofill_pending(page)
    page.get_by_label("Username or work email").fill(person.email)
    page.keyboard.press("Enter")
    page.locator("#ceremony-password").wait_for()  # the error's next step
    press(page, "#ceremony-password")
    page.wait_for_url("**/sign-in/password")
    page.get_by_label("Password").wait_for()

    assert page.get_by_label("Username or work email").input_value() == person.email


def test_a_refused_fallback_set_up_marks_the_field_and_takes_the_focus(
    page: Page, authenticator: Authenticator, invite: Invite
) -> None:
    enroll(page, invite())
    page.goto("/settings/fallback/set-up")  # verified by the enrollment a moment ago
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("The same password again").fill(PASSWORD + " again")
    page.get_by_label("6-digit code").fill("123456")
    page.keyboard.press("Enter")
    page.locator("#set-up-problems").wait_for()

    state = focus_and_invalid(page)
    assert state["invalid"], "no field is marked aria-invalid"
    assert state["focused"] in {"set-up-problems", *state["invalid"]}, state  # type: ignore[misc]
    # Each field a problem is about, described by the problems: both passwords (different, and
    # neither comes back) and the code; the focus on the first one to type again.
    assert state == {
        "focused": "password",
        "invalid": {
            "password": "set-up-problems password-rules",
            "confirm-password": "set-up-problems",
            "code": "set-up-problems",
        },
    }


def test_a_wrong_threshold_verify_code_marks_the_field_and_takes_the_focus(
    page: Page, authenticator: Authenticator, invite: Invite
) -> None:
    enroll(page, invite())
    page.goto("/settings/device-app/set-up")  # verified by the enrollment a moment ago
    press(page, "button:has-text('Show setup code')")
    field = page.get_by_label("6-digit code from Threshold Verify")
    field.fill("000000")
    field.press("Enter")
    page.locator("#set-up-error").wait_for()

    assert_field_in_error(page, "returned-code", "set-up-error")
    assert focus_and_invalid(page)["invalid"] == {"returned-code": "set-up-error"}


def test_a_refused_invite_marks_the_email_and_takes_the_focus(
    page: Page, authenticator: Authenticator, invite: Invite, server: Server
) -> None:
    admin = staff(server, invite, page, "admin")
    verify_now(page)
    page.goto("/admin/people/invite")
    page.get_by_label("Work email (their username)").fill(admin.email)  # can sign in already
    page.get_by_label("Full name").fill("Someone Again")
    page.get_by_label("Full name").press("Enter")
    page.locator("#invite-error").wait_for()

    assert_field_in_error(page, "invite-email", "invite-error")
    assert focus_and_invalid(page)["invalid"] == {"invite-email": "invite-error"}  # not the name


def test_a_refused_audit_filter_marks_the_field_and_takes_the_focus(
    page: Page, authenticator: Authenticator, invite: Invite, server: Server
) -> None:
    staff(server, invite, page, "auditor")
    page.goto("/admin/audit")
    page.get_by_label("From (UTC)").fill("yesterday")
    page.get_by_label("From (UTC)").press("Enter")
    page.locator("#audit-error").wait_for()

    assert_field_in_error(page, "f-since", "audit-error")
    assert focus_and_invalid(page)["invalid"] == {"f-since": "audit-error f-since-hint"}
    # The problem is met before the filters, and the date's format is shown, not only described.
    assert page.locator("#audit-error").evaluate(
        "error => !!(error.compareDocumentPosition(document.querySelector('form.filters'))"
        " & Node.DOCUMENT_POSITION_FOLLOWING)"
    )
    field = page.get_by_label("From (UTC)")
    expect(field).to_have_value("yesterday")
    expect(page.locator("#f-since-hint")).to_be_visible()
    expect(field).to_have_accessible_description(re.compile(r"Year-month-day, like 2026-12-01$"))


def test_skip_to_main_content_skips_the_portal_navigation(
    page: Page, authenticator: Authenticator, invite: Invite, server: Server
) -> None:
    staff(server, invite, page, "auditor")
    page.goto("/admin/people")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to main content")).to_be_focused()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")

    in_nav = page.evaluate("document.activeElement.closest('nav.portal-nav') !== null")
    assert not in_nav, page.evaluate("document.activeElement.outerHTML.slice(0, 80)")
    assert page.evaluate("document.activeElement.closest('main') !== null")


def test_the_account_menu_is_named_without_its_decorative_triangle(
    page: Page, authenticator: Authenticator, invite: Invite
) -> None:
    person = invite()
    enroll(page, person)
    cdp = page.context.new_cdp_session(page)
    root = cdp.send("DOM.getDocument")["root"]["nodeId"]
    summary = cdp.send("DOM.querySelector", {"nodeId": root, "selector": "header summary"})
    node = cdp.send(
        "Accessibility.getPartialAXTree", {"nodeId": summary["nodeId"], "fetchRelatives": False}
    )["nodes"][0]

    assert node["name"]["value"] == f"Account menu for {person.name}"
