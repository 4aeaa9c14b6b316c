"""An invite link, the page that explains passkeys, and creating the first passkey."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import Authenticator, Invite, Server, enroll

pytestmark = pytest.mark.browser

INVITE_UNUSABLE = "This link can\u2019t be used"


def test_invite_link_creates_a_passkey_and_signs_in(
    page: Page, authenticator: Authenticator, server: Server, invite: Invite
) -> None:
    person = invite()

    response = page.goto(person.link)
    assert response is not None
    assert response.status == 200
    # The token is in the URL: the page must not hand it on as a Referer.
    assert response.headers["referrer-policy"] == "no-referrer"
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Welcome, {person.name}")
    expect(page.locator("#ceremony")).to_contain_text("instead of a password")
    expect(page.locator("#not-supported")).to_be_hidden()

    page.get_by_role("button", name="Create a passkey").click()

    page.wait_for_url("/?enrolled=1")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Welcome, {person.name}")
    expect(page.get_by_role("status")).to_contain_text("Your passkey is ready")
    expect(page.locator("ul.methods > li")).to_have_count(1)
    expect(page.locator("header")).to_contain_text(person.name)

    [credential] = authenticator.credentials()
    assert credential["isResidentCredential"] is True
    assert credential["rpId"] == "localhost"
    assert credential["userName"] == person.email
    assert server.passkey_count(person.email) == 1
    actions = [action for action, _reason in server.audit(person.email)]
    assert "passkey.registered" in actions
    assert "invite.used" in actions


def test_used_or_garbled_invite_link_shows_link_cannot_be_used(
    browser: Browser, page: Page, authenticator: Authenticator, server: Server, invite: Invite
) -> None:
    person = invite()
    enroll(page, person)
    token = person.link.rsplit("/", 1)[1]
    garbled = [
        person.link[:-4],  # copied incompletely
        person.link[:-1] + ("A" if token[-1] != "A" else "B"),  # one character changed
    ]

    elsewhere = browser.new_context(base_url=server.url)
    try:
        other = elsewhere.new_page()
        for link in [person.link, *garbled]:
            response = other.goto(link)
            assert response is not None, link
            assert response.status == 404, link
            expect(other.get_by_role("heading", level=1)).to_have_text(INVITE_UNUSABLE)
            expect(other.locator("main")).to_contain_text("Ask your administrator for a new link")
            expect(other.get_by_role("button", name="Create a passkey")).to_have_count(0)
    finally:
        elsewhere.close()

    assert server.passkey_count(person.email) == 1
    rejected = [
        reason for action, reason in server.audit(person.email) if action == "invite.rejected"
    ]
    assert rejected == ["invite_unusable"], "the reused link is audited against its person"


def test_same_authenticator_cannot_register_twice(
    page: Page, authenticator: Authenticator, server: Server, invite: Invite
) -> None:
    person = invite()
    enroll(page, person)
    # A second link for the same person (someone enrolled gets a recovery link).
    second_link = server.cli("recover", person.email).strip().splitlines()[-1]
    assert second_link.startswith(f"{server.url}/enroll/")

    page.goto(second_link)
    page.get_by_role("button", name="Create a new passkey").click()

    error = page.locator("#ceremony-error")
    expect(error).to_be_visible()
    expect(page.locator("#ceremony-error-title")).to_have_text(
        "Passkey already registered for this device"
    )
    assert page.url == second_link
    assert len(authenticator.credentials()) == 1
    assert server.passkey_count(person.email) == 1
    actions = [action for action, _reason in server.audit(person.email)]
    assert actions.count("passkey.registered") == 1
    assert actions.count("invite.used") == 1
    assert actions.count("recovery.used") == 0, "the refused attempt must not use up the new link"


def test_first_administrator_enrolls_from_the_bootstrap_link(
    page: Page, authenticator: Authenticator, server: Server
) -> None:
    # The browser tests share one server, and others (the admin portal's) enroll administrators:
    # they step down first, so that this is the installation `make run` starts, with none
    # (the last who can sign in only with --force).
    for row in server.people():
        if row["ROLE"] == "administrator":
            server.cli("users", "role", row["USERNAME"], "none", "--force")
    # What `make run` prints on a new installation.
    printed = server.cli("bootstrap")
    [link] = [word for word in printed.split() if "/enroll/" in word]
    assert link.startswith(server.url + "/enroll/")

    page.goto(link)
    page.get_by_role("button", name="Create a passkey").click()
    page.wait_for_url("/?enrolled=1")
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Administrator")
    # Once an administrator has a passkey, bootstrap hands out no more links.
    assert "An administrator is enrolled" in server.cli("bootstrap")


def test_someone_elses_link_in_a_signed_in_browser_asks_before_signing_out(
    page: Page, authenticator: Authenticator, server: Server, invite: Invite
) -> None:
    first, second = invite(), invite()
    enroll(page, first)

    response = page.goto(second.link)
    assert response is not None
    assert response.headers["referrer-policy"] == "strict-origin"
    expect(page.get_by_role("heading", level=1)).to_have_text("You are signed in as someone else")
    card = page.locator("main")
    expect(card).to_contain_text(f"You are signed in to Threshold as {first.name} ({first.email})")
    expect(card).to_contain_text(f"This enrollment link is for {second.name}")
    expect(page.get_by_role("button", name="Create a passkey")).to_have_count(0)

    # "Cancel" leaves things as they were.
    page.get_by_role("link", name="Cancel").click()
    page.wait_for_url("/")
    expect(page.locator("header")).to_contain_text(first.name)

    # Continuing signs the first person out, then the link goes on as the second's.
    page.goto(second.link)
    page.get_by_role("button", name="Sign out and continue").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Welcome, {second.name}")
    assert page.url == second.link
    page.get_by_role("button", name="Create a passkey").click()
    page.wait_for_url("/?enrolled=1")
    expect(page.locator("header")).to_contain_text(second.name)
    assert server.passkey_count(second.email) == 1
    assert "sign_out" in [action for action, _ in server.audit(first.email)]
