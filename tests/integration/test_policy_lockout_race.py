"""Two administrators' changes at once never leave every administrator without a way in.

The admin portal refuses a change that would leave no administrator who can sign in today a
way to (``portal.policies.Lockout``): of the policy or a group's rules, a person put in a
group, the administrator role taken away, a lock, a deactivation, someone else's passkey
removed. Each change below cuts off one of two administrators, so each alone is saved;
together they cut off both. The check and
the save are one transaction that takes the policy's row first (``policy.actions.lock_policy``):
here one change holds it, on a real connection, just before it commits, while the other
begins on another. On PostgreSQL the other must be waiting for that row, having written
nothing yet; on both databases it is then checked against the first, and refused (409).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from django.db import connection

from tests.integration.conftest import Browser, assert_ok, sign_in
from tests.integration.portal_support import administrators_who_can_sign_in, post, staff
from tests.integration.test_concurrent_changes import while_one_holds
from tests.integration.test_device_app import set_up_device
from tests.integration.test_fallback import SECRET
from tests.integration.test_policy_at_sign_in import SOFT_AAGUID
from tests.integration.test_revocation_order import the_waiting_connection
from tests.integration.test_security_methods import add_passkey
from tests.support.authenticator import SoftAuthenticator
from threshold.accounts import actions as accounts_actions
from threshold.accounts.models import Role, User
from threshold.audit.actions import Origin
from threshold.core.policy import Policy
from threshold.devices import actions as devices_actions
from threshold.devices.models import Device
from threshold.fallback import actions as fallback_actions
from threshold.fallback.actions import do_set_up_fallback
from threshold.fallback.models import RecoveryCode, TotpDevice
from threshold.groups import actions as groups_actions
from threshold.groups.actions import do_add_group, do_add_member
from threshold.groups.models import Group, Membership
from threshold.passkeys import actions as passkeys_actions
from threshold.passkeys.models import Passkey
from threshold.policy import actions as policy_actions
from threshold.policy.access import get_policy
from threshold.policy.actions import do_update_policy
from threshold.policy.models import OrganisationPolicy

pytestmark = pytest.mark.django_db(transaction=True)

POLICY_TABLE = OrganisationPolicy._meta.db_table
# What the changes write: the policy, a group's rules or members, a person, a passkey (and the
# audit rows).
ITS_ROWS = {
    POLICY_TABLE,
    Group._meta.db_table,
    Membership._meta.db_table,
    User._meta.db_table,
    Passkey._meta.db_table,
    "audit_auditevent",
}


def changes() -> dict[str, Callable[[], Any]]:
    """Root, whose one passkey syncs, and Spare, whose one passkey does not, both signed in
    to the portal just now: each change, ready to run, cuts off one of them. Each is the
    form "Save anyway" posts, its preview confirmed (``seen``: the one passkey it refuses).
    """
    root, root_browser = staff("root@example.com", Role.ADMINISTRATOR)
    spare, spare_browser = staff("spare@example.com", Role.ADMINISTRATOR)
    Passkey.objects.filter(user=root.user).update(backup_eligible=True)
    roots = do_add_group("Root's group", Origin.cli())
    do_add_member(roots, root.user, Origin.cli())
    spares = do_add_group("Spare's group", Origin.cli())
    do_add_member(spares, spare.user, Origin.cli())
    do_update_policy(Policy(), Origin.cli())  # the policy's row exists
    # Boss, an administrator signed in to the portal twice just now, who can no longer sign in
    # (his group's rules, made since, refuse his passkey): he changes Root and Spare, and no
    # change to them ends his sessions.
    boss, boss_browser = staff("boss@example.com", Role.ADMINISTRATOR)
    other_boss_browser = Browser()
    assert_ok(sign_in(other_boss_browser, boss.authenticator))
    bosses = do_add_group("Boss's group", Origin.cli())
    do_add_member(bosses, boss.user, Origin.cli())
    Group.objects.filter(pk=bosses.pk).update(rules={"aaguid_deny_list": [SOFT_AAGUID]})
    strict = do_add_group("Strict", Origin.cli())
    Group.objects.filter(pk=strict.pk).update(rules={"aaguid_deny_list": [SOFT_AAGUID]})
    return {
        # Boss locks Spare, or deactivates her: Spare is cut off.
        "spare_locked": lambda: post(boss_browser, f"/admin/people/{spare.user.pk}/lock"),
        "spare_deactivated": lambda: post(
            boss_browser, f"/admin/people/{spare.user.pk}/deactivate"
        ),
        # Boss (in his other browser) locks Root, or takes Root's administrator role away.
        "root_locked": lambda: post(other_boss_browser, f"/admin/people/{root.user.pk}/lock"),
        "root_stepped_down": lambda: post(
            other_boss_browser, f"/admin/people/{root.user.pk}/role", {"role": Role.NONE.value}
        ),
        # Boss puts Spare in Strict, whose rules refuse her passkey.
        "spare_joins": lambda: post(
            boss_browser, f"/admin/groups/{strict.pk}/members", {"email": spare.user.username}
        ),
        # Spare blocks synced passkeys: Root is cut off.
        "policy": lambda: post(
            spare_browser, "/admin/policy", {"block_synced_passkeys": "true", "seen": "1"}
        ),
        # Root denies Spare's authenticator to Spare's group: Spare is cut off.
        "spares_group": lambda: post(
            root_browser,
            f"/admin/groups/{spares.pk}/rules",
            {"aaguid_deny_list": SOFT_AAGUID, "seen": "1"},
        ),
        # Root removes Spare's one passkey (lost, say), and Spare removes Root's.
        "spare_passkey_removed": lambda: post(
            root_browser,
            f"/admin/people/{spare.user.pk}/passkeys/{_only_passkey(spare.user)}/remove",
        ),
        "root_passkey_removed": lambda: post(
            spare_browser,
            f"/admin/people/{root.user.pk}/passkeys/{_only_passkey(root.user)}/remove",
        ),
        # Spare blocks synced passkeys in Root's group: Root is cut off.
        "roots_group": lambda: post(
            spare_browser,
            f"/admin/groups/{roots.pk}/rules",
            {"block_synced_passkeys": "true", "seen": "1"},
        ),
    }


def _only_passkey(user: User) -> int:
    [passkey_id] = Passkey.objects.filter(user=user).values_list("pk", flat=True)
    return passkey_id


# Where each holds its transaction open: its audit row, written just before it commits.
HOLDS_AT: dict[str, ModuleType] = {
    "policy": policy_actions,
    "spares_group": groups_actions,
    "roots_group": groups_actions,
    "spare_locked": accounts_actions,
    "spare_deactivated": accounts_actions,
    "root_locked": accounts_actions,
    "root_stepped_down": accounts_actions,
    "spare_joins": groups_actions,
    "spare_passkey_removed": passkeys_actions,
    "root_passkey_removed": passkeys_actions,
}

PAIRS = [
    ("policy", "spares_group"),
    ("spares_group", "policy"),
    ("roots_group", "spares_group"),
    ("spare_locked", "root_locked"),
    ("root_stepped_down", "spare_deactivated"),
    ("spare_joins", "root_locked"),
    ("policy", "spare_joins"),
    ("spares_group", "root_stepped_down"),
    ("spare_passkey_removed", "root_passkey_removed"),
    ("root_locked", "spare_passkey_removed"),
]


@pytest.mark.parametrize(("first", "second"), PAIRS)
def test_two_changes_at_once_never_leave_every_administrator_without_a_way_in(
    monkeypatch, first, second
):
    ready = changes()
    # Each alone would be saved: it leaves the other administrator a way in.
    assert administrators_who_can_sign_in() == ["root@example.com", "spare@example.com"]

    one, other, waiting = while_one_holds(
        monkeypatch,
        HOLDS_AT[first],
        "record",
        ready[first],
        ready[second],
        meanwhile=the_waiting_connection,
    )

    assert not isinstance(one, BaseException), one
    assert not isinstance(other, BaseException), other
    assert one.status_code == 303, one.content.decode()[:2000]
    # The second is checked against the first, which it waited for: refused, nothing stored.
    assert other.status_code == 409, other.content.decode()[:2000]
    assert "leave no administrator able to sign in" in other.content.decode().replace("&#x27;", "'")
    assert len(administrators_who_can_sign_in()) == 1
    if connection.vendor == "postgresql":
        assert waiting is not None, f"{second} did not wait for {first}"
        assert waiting["waits_on"] == {POLICY_TABLE}, waiting
        assert not waiting["wrote"] & ITS_ROWS, waiting


# --- A person's own removal in Settings, at the same moment as a lockout-checked change -----------

OWN_METHODS = ("passkey", "fallback", "device")
# Where Root's own removal holds its transaction open: its audit row, just before it commits.
OWN_REMOVAL_HOLDS_AT: dict[str, ModuleType] = {
    "passkey": passkeys_actions,
    "fallback": fallback_actions,
    "device": devices_actions,
}


def own_removal(method: str) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """Root, the one administrator who can sign in, with a synced passkey and one other way in
    (``method``: a passkey that does not sync, a password and app, or Threshold Verify),
    signed in just now; Boss, an administrator who cannot sign in, in the portal. Ready to run:
    Root removing that other way in Settings, and Boss blocking synced passkeys. Each alone
    leaves Root a way in; together they leave none."""
    root, root_browser = staff("root@example.com", Role.ADMINISTRATOR)
    if method == "fallback":
        do_set_up_fallback(root.user, "correct horse battery staple", SECRET, 0, Origin.cli())
        # A new password ends the sessions it was not set up in: Root signs in again.
        root_browser = Browser()
        assert_ok(sign_in(root_browser, root.authenticator))
    Passkey.objects.filter(user=root.user).update(backup_eligible=True)
    if method == "passkey":
        assert add_passkey(root_browser, SoftAuthenticator()).status_code == 200
        [other] = Passkey.objects.filter(user=root.user, backup_eligible=False)
        path = f"/settings/security-methods/{other.pk}/remove"
    elif method == "fallback":
        path = "/settings/fallback/remove"
    else:
        path = f"/settings/device-app/{set_up_device(root, root_browser).device_id}/remove"
    boss, boss_browser = staff("boss@example.com", Role.ADMINISTRATOR)
    bosses = do_add_group("Boss's group", Origin.cli())
    do_add_member(bosses, boss.user, Origin.cli())
    Group.objects.filter(pk=bosses.pk).update(rules={"aaguid_deny_list": [SOFT_AAGUID]})
    do_update_policy(Policy(), Origin.cli())  # the policy's row exists
    assert administrators_who_can_sign_in() == ["root@example.com"]
    return (
        lambda: post(root_browser, path),
        lambda: post(boss_browser, "/admin/policy", {"block_synced_passkeys": "true", "seen": "1"}),
    )


@pytest.mark.parametrize("method", OWN_METHODS)
@pytest.mark.parametrize("removal_first", [True, False], ids=["removal_first", "policy_first"])
def test_ones_own_removal_and_a_policy_change_at_once_leave_the_administrator_a_way_in(
    monkeypatch, clock, method, removal_first
):
    """The removal holds the policy's row first too (``lock_policy``): whichever comes
    second waits for it, then counts what the first saved, and is refused."""
    removal, policy_change = own_removal(method)
    first, second = (removal, policy_change) if removal_first else (policy_change, removal)

    one, other, waiting = while_one_holds(
        monkeypatch,
        OWN_REMOVAL_HOLDS_AT[method] if removal_first else policy_actions,
        "record",
        first,
        second,
        meanwhile=the_waiting_connection,
    )

    assert not isinstance(one, BaseException), one
    assert not isinstance(other, BaseException), other
    assert one.status_code == 303, one.content.decode()[:2000]
    assert other.status_code == 409, other.content.decode()[:2000]
    refused = other.content.decode().replace("&#x27;", "'").replace("\u2019", "'")
    if removal_first:
        assert "leave no administrator able to sign in" in refused
        assert not get_policy().block_synced_passkeys
    else:
        assert "You Can't Remove Your Only Sign-in Method" in refused
        assert get_policy().block_synced_passkeys
    assert administrators_who_can_sign_in() == ["root@example.com"]
    if connection.vendor == "postgresql":
        assert waiting is not None, "the second did not wait for the first"
        assert waiting["waits_on"] == {POLICY_TABLE}, waiting
        assert not waiting["wrote"] & (ITS_ROWS | OWN_ROWS), waiting


OWN_ROWS = {
    TotpDevice._meta.db_table,
    RecoveryCode._meta.db_table,
    Device._meta.db_table,
}
