"""Group policies: a group's rules, set in the admin portal, apply to its members only, at
sign-in and at registration; the evaluation and the audit log name the group."""

from __future__ import annotations

import pytest

from tests.integration.conftest import (
    Browser,
    assert_failed,
    assert_ok,
    enroll,
    enrolled_person,
    invite,
    last_event,
    sign_in,
)
from tests.integration.portal_support import post, staff
from tests.support.authenticator import SoftAuthenticator
from threshold.accounts.models import Role
from threshold.audit.actions import Origin
from threshold.audit.models import AuditEvent
from threshold.cli.main import main
from threshold.groups.actions import do_add_group, do_add_member
from threshold.groups.models import Group

pytestmark = pytest.mark.django_db

RULES = {
    "block_synced_passkeys": "true",
    "require_trusted_attestation": "false",
    "aaguid_allow_list": "",
    "aaguid_deny_list": "",
}


@pytest.fixture
def engineering(db):
    return do_add_group("Engineering", Origin.cli())


def synced_person(username: str, name: str):
    return enrolled_person(username, name, backup_eligible=True, backup_state=True)


def test_a_group_policy_applies_to_its_members_only(engineering, capsys):
    admin, browser = staff("root@example.com", Role.ADMINISTRATOR)
    member = synced_person("eng@example.com", "Eng")
    outsider = synced_person("sales@example.com", "Sales")
    do_add_member(engineering, member.user, Origin.cli())

    preview = post(browser, f"/admin/groups/{engineering.pk}/rules", RULES)
    assert preview.status_code == 200
    text = preview.content.decode()
    assert "1 passkey of 1 person would no longer be allowed; 1 of those people" in text
    assert "block_synced_passkeys (Engineering)" in text
    assert "sales@example.com" not in text
    assert Group.objects.get(pk=engineering.pk).rules == {}

    saved = post(browser, f"/admin/groups/{engineering.pk}/rules", {**RULES, "seen": "1"})
    assert saved.status_code == 303
    assert Group.objects.get(pk=engineering.pk).rules == {"block_synced_passkeys": True}
    changed = last_event("group.rules_changed")
    assert changed.actor == admin.user
    assert (changed.detail["before"], changed.detail["after"]) == (
        {},
        {"block_synced_passkeys": True},
    )

    # The member's synced passkey no longer signs in, and the audit row names the group.
    assert_failed(sign_in(Browser(), member.authenticator), 400, "Passkey not allowed")
    refused = last_event("sign_in.failed")
    assert refused.reason == "synced_passkey_blocked"
    assert refused.detail["detail"] == "group Engineering"
    # The same kind of passkey outside the group still does.
    assert_ok(sign_in(Browser(), outsider.authenticator))

    # Registration: a new member's synced passkey is refused; a non-member's is not.
    created, token = invite("new-eng@example.com", "New Eng")
    do_add_member(engineering, created.user, Origin.cli())
    synced = SoftAuthenticator(backup_eligible=True, backup_state=True)
    assert enroll(Browser(), token, synced).status_code == 400
    failed = last_event("passkey.registration_failed")
    assert failed.reason == "synced_passkey_blocked"
    assert "group Engineering" in failed.detail.get("detail", "")
    _, other_token = invite("new-sales@example.com", "New Sales")
    assert_ok(enroll(Browser(), other_token, SoftAuthenticator(backup_eligible=True)))

    # The person page and `threshold policy check` say which group refuses it.
    page = browser.get(f"/admin/people/{member.user.pk}").content.decode()
    assert "block_synced_passkeys (Engineering)" in page
    capsys.readouterr()
    assert main(["policy", "check"]) == 1
    assert "block_synced_passkeys (Engineering)" in capsys.readouterr().out


def test_the_strictest_of_a_persons_groups_applies(engineering):
    member = enrolled_person("eng@example.com", "Eng")
    aaguid = str(member.passkey.aaguid)
    security = do_add_group("Security", Origin.cli())
    for group in (engineering, security):
        do_add_member(group, member.user, Origin.cli())
    Group.objects.filter(pk=security.pk).update(rules={"aaguid_deny_list": [aaguid]})
    assert_failed(sign_in(Browser(), member.authenticator), 400, "Passkey not allowed")
    refused = last_event("sign_in.failed")
    assert refused.reason == "authenticator_denied"
    assert refused.detail["detail"] == f"group Security: {aaguid}"


def test_bad_group_rules_get_the_clis_message_and_save_nothing(engineering):
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    response = post(
        browser,
        f"/admin/groups/{engineering.pk}/rules",
        {**RULES, "aaguid_deny_list": "not-an-aaguid", "block_synced_passkeys": "maybe"},
    )
    assert response.status_code == 400
    text = response.content.decode()
    assert "aaguid_deny_list: &#x27;not-an-aaguid&#x27; is not an AAGUID" in text
    assert "block_synced_passkeys must be true or false" in text
    assert Group.objects.get(pk=engineering.pk).rules == {}
    assert not AuditEvent.objects.filter(action="group.rules_changed").exists()


def test_only_an_administrator_sets_a_groups_rules(engineering):
    _, desk = staff("desk@example.com", Role.HELP_DESK)
    assert post(desk, f"/admin/groups/{engineering.pk}/rules", RULES).status_code == 404
    _, auditor = staff("audit@example.com", Role.AUDITOR)
    assert post(auditor, f"/admin/groups/{engineering.pk}/rules", RULES).status_code == 403
    assert Group.objects.get(pk=engineering.pk).rules == {}
