"""The admin portal's policy and authenticators pages: the one declaration, the CLI's
validation, the preview of a stricter rule (counts equal to the database's), and a deny-list
built by name that refuses the next sign-in and registration."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.conftest import (
    Browser,
    Person,
    assert_failed,
    enroll,
    enrolled_person,
    invite,
    last_event,
    sign_in,
)
from tests.integration.portal_support import post, staff
from tests.integration.test_policy_at_sign_in import SOFT_AAGUID
from tests.support.authenticator import SoftAuthenticator
from threshold.accounts.methods import count_usable_sign_in_methods
from threshold.accounts.models import Role, User
from threshold.audit.actions import Origin
from threshold.audit.models import AuditEvent
from threshold.core.policy import SETTINGS, Policy
from threshold.fallback.models import TotpDevice
from threshold.groups.actions import do_add_group, do_add_member
from threshold.groups.models import Group
from threshold.passkeys.models import Passkey
from threshold.policy.access import get_policy

pytestmark = pytest.mark.django_db

YUBIKEY = uuid.UUID("ee882879-721c-4913-9775-3dfcce97072a")


def _administrator(username: str, **authenticator) -> Person:
    """Another administrator, enrolled with a passkey (``authenticator``: its AAGUID, ...)."""
    person = enrolled_person(username, username.split("@", maxsplit=1)[0].title(), **authenticator)
    User.objects.filter(pk=person.user.pk).update(role=Role.ADMINISTRATOR.value)
    return person


def _synced(*people: Person) -> None:
    """Their passkeys become synced ones: ``block_synced_passkeys`` refuses them."""
    Passkey.objects.filter(user__in=[person.user for person in people]).update(backup_eligible=True)


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
    _administrator("spare@example.com", aaguid=YUBIKEY.bytes)  # keeps a way in
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
    # The administrator's own passkey is that authenticator's too: they tick that they know.
    confirmed = post(browser, "/admin/policy", {**fields, "seen": seen, "cut_off_self": "1"})
    assert confirmed.status_code == 303
    assert aaguid in get_policy().aaguid_deny_list
    assert last_event("policy.changed").actor == admin.user

    assert_failed(sign_in(Browser(), ada.authenticator), 400, "Passkey not allowed")
    assert last_event("sign_in.failed").reason == "authenticator_denied"
    _, token = invite("new@example.com", "New")
    refused = enroll(Browser(), token, SoftAuthenticator(aaguid=ada.authenticator.aaguid))
    assert refused.status_code == 400
    assert last_event("passkey.registration_failed").reason == "authenticator_denied"


# --- A change that would leave no administrator, or the viewer, a way in -------------------------

NO_ADMINISTRATOR = (
    "This change would leave no administrator able to sign in, so it was not saved. Give an "
    "administrator a way to sign in that the new rules allow first, then save it."
)


def _refused_whole(response) -> None:
    assert response.status_code == 409, response.status_code
    text = response.content.decode().replace("&#x27;", "'")
    assert NO_ADMINISTRATOR in text
    assert "Save anyway" not in text  # nothing to confirm
    assert 'name="cut_off_self"' not in text


def test_a_policy_change_that_would_strand_every_administrator_is_refused(ada):
    admin, browser = staff("root@example.com", Role.ADMINISTRATOR)
    _synced(admin, ada)
    before = get_policy()
    # Shown, confirmed, ticked: each time refused, nothing stored.
    for data in [{}, {"seen": "2"}, {"seen": "2", "cut_off_self": "1"}]:
        response = post(browser, "/admin/policy", {"block_synced_passkeys": "true", **data})
        _refused_whole(response)
        assert "root@example.com (you)" in response.content.decode()
    assert get_policy() == before
    assert _policy_rows() == 0


def test_every_administrators_way_in_counts_the_fallback_too(ada):
    admin, browser = staff("root@example.com", Role.ADMINISTRATOR)
    _synced(admin)
    # The other administrator signs in only with the password and app.
    other = User.objects.create_user("other@example.com", full_name="Other")
    User.objects.filter(pk=other.pk).update(role=Role.ADMINISTRATOR.value)
    TotpDevice.objects.create(user=other, secret="JBSWY3DPEHPK3PXP", created_at="2026-01-01T00:00Z")
    before = get_policy()
    both = {"block_synced_passkeys": "true", "allow_password_fallback": "false"}
    _refused_whole(post(browser, "/admin/policy", {**both, "seen": "1", "cut_off_self": "1"}))
    assert get_policy() == before
    # One of the two: the other administrator keeps their way in. No passkey is refused, but
    # the preview names who would be cut off before it is saved.
    shown = post(browser, "/admin/policy", {"allow_password_fallback": "false"})
    assert shown.status_code == 200
    assert "Administrators who could no longer sign in: other@example.com." in (
        shown.content.decode()
    )
    assert get_policy() == before
    saved = post(browser, "/admin/policy", {"allow_password_fallback": "false", "seen": "0"})
    assert saved.status_code == 303
    assert get_policy().allow_password_fallback is False


def test_a_change_that_cuts_off_the_viewer_warns_and_needs_a_tick(ada):
    admin, browser = staff("root@example.com", Role.ADMINISTRATOR)
    _administrator("spare@example.com")  # device-bound: keeps a way in
    _synced(admin)
    before = get_policy()
    change = {"block_synced_passkeys": "true"}

    shown = post(browser, "/admin/policy", change)
    assert shown.status_code == 200
    text = shown.content.decode()
    assert "You would no longer be able to sign in" in text
    assert 'name="cut_off_self" value="1" required' in text
    assert "root@example.com (you)" in text

    # "Save anyway" without the tick: shown again with why, nothing saved.
    unticked = post(browser, "/admin/policy", {**change, "seen": "1"})
    assert unticked.status_code == 400
    text = unticked.content.decode()
    assert 'aria-describedby="cut-off-self-error"' in text
    assert "Tick the box to confirm that you will not be able to sign in again" in text
    assert get_policy() == before
    assert _policy_rows() == 0

    ticked = post(browser, "/admin/policy", {**change, "seen": "1", "cut_off_self": "1"})
    assert ticked.status_code == 303
    assert get_policy().block_synced_passkeys is True


def test_a_change_that_strands_others_but_not_the_viewer_asks_no_tick(ada):
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    _synced(ada)
    shown = post(browser, "/admin/policy", {"block_synced_passkeys": "true"})
    assert shown.status_code == 200
    assert "You would no longer be able to sign in" not in shown.content.decode()
    assert 'name="cut_off_self"' not in shown.content.decode()
    assert "Administrators who could no longer sign in" not in shown.content.decode()


def test_denying_every_administrators_authenticator_by_name_is_refused(ada):
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    before = get_policy()
    response = post(
        browser, "/admin/authenticators", {"change": "deny", "aaguid": str(ada.passkey.aaguid)}
    )
    _refused_whole(response)
    assert get_policy() == before
    assert _policy_rows() == 0


def test_group_rules_that_would_strand_every_administrator_are_refused(ada):
    admin, browser = staff("root@example.com", Role.ADMINISTRATOR)
    spare = _administrator("spare@example.com", aaguid=YUBIKEY.bytes)
    group = do_add_group("Staff", Origin.cli())
    do_add_member(group, admin.user, Origin.cli())
    do_add_member(group, spare.user, Origin.cli())
    rules = {"block_synced_passkeys": "false", "require_trusted_attestation": "false"}
    both = f"{SOFT_AAGUID},{YUBIKEY}"
    response = post(browser, f"/admin/groups/{group.pk}/rules", {**rules, "aaguid_deny_list": both})
    _refused_whole(response)
    assert Group.objects.get(pk=group.pk).rules == {}
    # Only the viewer's own authenticator: the warning and the tick instead.
    mine = {**rules, "aaguid_deny_list": SOFT_AAGUID}
    shown = post(browser, f"/admin/groups/{group.pk}/rules", mine)
    assert shown.status_code == 200
    assert "You would no longer be able to sign in" in shown.content.decode()
    assert post(browser, f"/admin/groups/{group.pk}/rules", {**mine, "seen": "1"}).status_code == (
        400
    )
    assert Group.objects.get(pk=group.pk).rules == {}
    ticked = post(
        browser, f"/admin/groups/{group.pk}/rules", {**mine, "seen": "1", "cut_off_self": "1"}
    )
    assert ticked.status_code == 303
    assert Group.objects.get(pk=group.pk).rules["aaguid_deny_list"] == [SOFT_AAGUID]


def _control(page: str, element_id: str) -> str:
    """The opening tag of the form control with ``element_id``."""
    start = page.index(f'id="{element_id}"')
    return page[page.rindex("<", 0, start) : page.index(">", start) + 1]


@pytest.mark.parametrize(
    ("field", "value"),
    [("passkey_limit", "ten"), ("user_verification", "sometimes"), ("aaguid_deny_list", "x")],
)
def test_a_policy_fields_error_is_tied_to_its_control(db, field, value):
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    page = post(browser, "/admin/policy", {field: value}).content.decode()
    control = _control(page, f"f-{field}")
    assert 'aria-invalid="true"' in control
    assert f'aria-describedby="error-{field} explain-{field}"' in control
    assert f'<p class="flag" id="error-{field}">{field}' in page
    # The summary at the top links to the control; the others are not marked.
    assert f'<li><a href="#f-{field}">{field}' in page
    assert page.count('aria-invalid="true"') == 1
    assert 'aria-describedby="explain-ceremony_timeout_seconds"' in page


def test_a_group_rules_error_is_tied_to_its_control(db):
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    group = do_add_group("Staff", Origin.cli())
    for field, value in [("aaguid_allow_list", "x"), ("block_synced_passkeys", "perhaps")]:
        response = post(browser, f"/admin/groups/{group.pk}/rules", {field: value})
        assert response.status_code == 400
        page = response.content.decode()
        control = _control(page, f"r-{field}")
        assert 'aria-invalid="true"' in control
        assert f'aria-describedby="rule-error-{field} rule-explain-{field}"' in control
        assert f'id="rule-error-{field}">{field}' in page
