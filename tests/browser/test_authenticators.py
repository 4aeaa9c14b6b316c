"""Registrations from Chromium's virtual authenticators are named, classified and policed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.conftest import Invite, Server, add_authenticator, enroll

pytestmark = pytest.mark.browser


def passkey_entry(page: Page) -> str:
    """The home page's description of the first passkey (passkeys/_passkey.html, as in Settings)."""
    return page.locator("ul.methods li").first.inner_text()


def test_platform_authenticator_is_named_as_a_built_in_passkey(
    page: Page, context: BrowserContext, invite: Invite
) -> None:
    add_authenticator(context, page, transport="internal")
    enroll(page, invite())

    entry = passkey_entry(page)
    # Chromium's test AAGUID is in no metadata or provider list: named by its kind.
    assert "Built-in passkey" in entry
    assert "Built-in authenticator · Only on this device" in entry
    assert "verified authenticator" not in entry  # its attestation chains to no trusted root


def test_usb_authenticator_is_named_as_a_security_key(
    page: Page, context: BrowserContext, invite: Invite
) -> None:
    add_authenticator(context, page, transport="usb")
    enroll(page, invite())

    entry = passkey_entry(page)
    assert entry.startswith("Security key")
    assert "Security key · Only on this key" in entry


def test_backup_eligible_authenticator_is_shown_as_a_synced_passkey(
    page: Page, context: BrowserContext, invite: Invite
) -> None:
    add_authenticator(
        context, page, transport="internal", defaultBackupEligibility=True, defaultBackupState=True
    )
    enroll(page, invite())

    entry = passkey_entry(page)
    assert entry.startswith("Synced passkey")
    assert "Synced across your devices" in entry
    assert "Only on this device" not in entry


@pytest.fixture
def synced_passkeys_blocked(server: Server) -> Iterator[None]:
    server.cli("policy", "set", "block_synced_passkeys=true")
    try:
        yield
    finally:
        server.cli("policy", "set", "block_synced_passkeys=false")


def test_policy_blocking_synced_passkeys_refuses_a_backup_eligible_credential(
    page: Page,
    context: BrowserContext,
    invite: Invite,
    server: Server,
    synced_passkeys_blocked: None,
) -> None:
    add_authenticator(
        context, page, transport="internal", defaultBackupEligibility=True, defaultBackupState=True
    )
    person = invite()
    page.goto(person.link)
    page.get_by_role("button", name="Create a passkey").click()

    expect(page.locator("#ceremony-error-title")).to_have_text("Synced Passkeys Not Allowed")
    expect(page.locator("#ceremony-error-message")).to_contain_text("stays on one device")
    assert server.passkey_count(person.email) == 0
    assert ("passkey.registration_failed", "synced_passkey_blocked") in server.audit(person.email)
    # The link is not used up: the person can try again with a security key.
    expect(page.get_by_role("button", name="Create a passkey")).to_be_enabled()
