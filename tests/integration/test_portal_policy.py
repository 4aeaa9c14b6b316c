"""The admin portal's policy and authenticators pages: the one declaration, the CLI's
validation, the preview of a stricter rule (counts equal to the database's), and a deny-list
built by name that refuses the next sign-in and registration."""

from __future__ import annotations

import pytest

from tests.integration.conftest import (
    Browser,
    assert_failed,
    enroll,
    enrolled_person,
    invite,
    last_event,
    sign_in,
)
from tests.integration.portal_support import post, staff
from tests.support.authenticator import SoftAuthenticator
from threshold.accounts.methods import count_usable_sign_in_methods
from threshold.accounts.models import Role, User
from threshold.audit.models import AuditEvent
from threshold.core.policy import SETTINGS, Policy
from threshold.fallback.models import TotpDevice
from threshold.passkeys.models import Passkey
from threshold.policy.access import get_policy

pytestmark = pytest.mark.django_db


def _policy_rows() -> int:
    return AuditEvent.objects.filter(action="policy.changed").count()


def test_the_policy_page_shows_every_setting_from_its_declaration(db):
    _, browser = staff("audit@example.com", Role.AUDITOR)
    page = browser.get("/admin/policy")
    assert page.status_code == 200
    text = page.content.decode()
    for setting in SETTINGS:
        assert f'id="setting-{setting.name}"' in text
        assert setting.explanation.replace("`", "").replace("\u2019", "&rsquo;")[:20] in (
            text.replace("\u2019", "&rsquo;")
        )
        assert setting.allowed_text.replace("`", "") in text.replace("&ndash;", "\u2013")
    assert "<select" not in text.split("<table", 1)[1]  # read-only for an auditor
    assert post(browser, "/admin/policy", {"passkey_limit": "5"}).status_code == 403


def test_help_desk_has_no_policy_or_authenticators_page(db):
    _, browser = staff("desk@example.com", Role.HELP_DESK)
    assert browser.get("/admin/policy").status_code == 404
    assert browser.get("/admin/authenticators").status_code == 404


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("passkey_limit", "0", "passkey_limit must be a whole number from 1 to 100"),
        ("passkey_limit", "ten", "passkey_limit must be a whole number"),
        ("user_verification", "sometimes", "user_verification must be one of required, preferred"),
        (
            "aaguid_deny_list",
            "not-an-aaguid",
            "aaguid_deny_list: &#x27;not-an-aaguid&#x27; is not an AAGUID",
        ),
        ("allowed_algorithms", "", "allowed_algorithms must be a non-empty list"),
        ("block_synced_passkeys", "perhaps", "block_synced_passkeys must be true or false"),
    ],
)
def test_bad_policy_values_get_the_clis_message_and_save_nothing(db, field, value, message):
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    before = get_policy()
    response = post(browser, "/admin/policy", {field: value})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert b"The policy was not saved" in response.content
    assert get_policy() == before
    assert _policy_rows() == 0


def test_a_change_that_refuses_no_passkey_is_saved_and_audited(ada):
    admin, browser = staff("root@example.com", Role.ADMINISTRATOR)
    response = post(browser, "/admin/policy", {"passkey_limit": "5"})
    assert response.status_code == 303
    assert get_policy().passkey_limit == 5
    changed = last_event("policy.changed")
    assert changed.actor == admin.user
    assert changed.detail["changes"] == {"passkey_limit": {"from": 10, "to": 5}}


def test_the_preview_counts_equal_the_database_before_anything_is_saved(ada):
    admin, browser = staff("root@example.com", Role.ADMINISTRATOR)
    bob = enrolled_person("bob@example.com", "Bob")
    carol = enrolled_person("carol@example.com", "Carol")
    # Synced passkeys: Bob's only one; Carol's, and she has a password and app too.
    Passkey.objects.filter(user__in=[bob.user, carol.user]).update(backup_eligible=True)
    TotpDevice.objects.create(
        user=carol.user, secret="JBSWY3DPEHPK3PXP", created_at="2026-01-01T00:00Z"
    )
    before = get_policy()

    response = post(browser, "/admin/policy", {"block_synced_passkeys": "true"})
    assert response.status_code == 200
    text = response.content.decode()

    stricter = Policy(block_synced_passkeys=True)
    synced = list(Passkey.objects.filter(backup_eligible=True))
    people = {passkey.user_id for passkey in synced}
    stranded = {
        pk for pk in people if count_usable_sign_in_methods(User.objects.get(pk=pk), stricter) == 0
    }
    assert (len(synced), len(people), len(stranded)) == (2, 2, 1)
    summary = (
        f"{len(synced)} passkeys of {len(people)} people would no longer be allowed; "
        f"{len(stranded)} of those people would have no usable method left."
    )
    assert summary in text
    assert "bob@example.com" in text
    assert "carol@example.com" in text
    assert get_policy() == before  # nothing saved yet
    assert _policy_rows() == 0

    # Confirmed for the two passkeys shown.
    confirmed = post(browser, "/admin/policy", {"block_synced_passkeys": "true", "seen": "2"})
    assert confirmed.status_code == 303
    assert get_policy().block_synced_passkeys is True
    assert last_event("policy.changed").actor == admin.user


def test_a_preview_confirmed_for_fewer_passkeys_than_now_is_shown_again(ada):
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    Passkey.objects.filter(user=ada.user).update(backup_eligible=True)
    response = post(browser, "/admin/policy", {"block_synced_passkeys": "true", "seen": "0"})
    assert response.status_code == 200
    assert b"1 passkey of 1 person would no longer be allowed" in response.content
    assert get_policy().block_synced_passkeys is False


def test_the_picker_finds_authenticators_by_name(db):
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    text = browser.get("/admin/authenticators?q=yubikey").content.decode()
    assert "YubiKey" in text
    assert '<img src="data:image/' in text  # metadata's icons
    assert "iCloud Keychain" in browser.get("/admin/authenticators?q=icloud").content.decode()
    assert "No authenticator has that name" in (
        browser.get("/admin/authenticators?q=zzzz-nothing").content.decode()
    )


def test_the_authenticators_page_counts_passkeys_and_people(ada):
    _, browser = staff("audit@example.com", Role.AUDITOR)
    enrolled_person("bob@example.com", "Bob")
    text = browser.get("/admin/authenticators").content.decode()
    aaguid = str(ada.passkey.aaguid)
    row = text.split(f"<code>{aaguid}</code>", 1)[1].split("</tr>", 1)[0]
    # Ada's, Bob's and the auditor's own passkeys: the soft authenticator's AAGUID.
    assert Passkey.objects.filter(aaguid=aaguid).count() == 3
    assert "<td>3</td><td>3</td>" in row.replace("\n", "").replace(" ", "")


def test_bad_input_on_the_authenticators_form_changes_nothing(db):
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    before = get_policy()
    for data in [
        {"change": "deny", "aaguid": "nonsense"},
        {"change": "explode", "aaguid": "ee882879-721c-4913-9775-3dfcce97072a"},
        {},
    ]:
        response = post(browser, "/admin/authenticators", data)
        assert response.status_code == 400
        assert b"Nothing changed" in response.content
    assert get_policy() == before


def test_a_deny_listed_authenticator_picked_by_name_is_refused_at_sign_in_and_registration(ada):
    admin, browser = staff("root@example.com", Role.ADMINISTRATOR)
    aaguid = str(ada.passkey.aaguid)
    name = ada.passkey.authenticator_name
    # Picked by its name: the search finds it among those registered here.
    found = browser.get(f"/admin/authenticators?q={name.split()[0]}").content.decode()
    assert f'name="aaguid" value="{aaguid}"' in found
    preview = post(browser, "/admin/authenticators", {"change": "deny", "aaguid": aaguid})
    # Every enrolled passkey here is this authenticator's, the administrator's own too.
    assert preview.status_code == 200
    assert b"would no longer be allowed" in preview.content
    assert aaguid not in get_policy().aaguid_deny_list
    fields = {
        setting.name: text
        for setting in SETTINGS
        for text in [
            preview.content.decode()
            .split(f'name="{setting.name}" value="', 1)[1]
            .split('"', 1)[0]
            .replace("&amp;", "&")
        ]
    }
    assert fields["aaguid_deny_list"] == aaguid
    seen = preview.content.decode().split('name="seen" value="', 1)[1].split('"', 1)[0]
    assert post(browser, "/admin/policy", {**fields, "seen": seen}).status_code == 303
    assert aaguid in get_policy().aaguid_deny_list
    assert last_event("policy.changed").actor == admin.user

    assert_failed(sign_in(Browser(), ada.authenticator), 400, "Passkey not allowed")
    assert last_event("sign_in.failed").reason == "authenticator_denied"
    _, token = invite("new@example.com", "New")
    refused = enroll(Browser(), token, SoftAuthenticator(aaguid=ada.authenticator.aaguid))
    assert refused.status_code == 400
    assert last_event("passkey.registration_failed").reason == "authenticator_denied"
