"""Two administrators' changes at once never leave every administrator without a way in.

The admin portal refuses a policy or group rules change that would leave no administrator who
can sign in today a way to (``portal.policies.Lockout``). Each change below cuts off one of
two administrators, so each alone is saved; together they cut off both. The check and the
save are one transaction that takes the policy's row first (``policy.actions.lock_policy``):
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

from tests.integration.portal_support import post, staff
from tests.integration.test_concurrent_changes import while_one_holds
from tests.integration.test_policy_at_sign_in import SOFT_AAGUID
from tests.integration.test_revocation_order import the_waiting_connection
from threshold.accounts.methods import count_usable_sign_in_methods
from threshold.accounts.models import Role, User
from threshold.audit.actions import Origin
from threshold.core.policy import Policy
from threshold.groups import actions as groups_actions
from threshold.groups.actions import do_add_group, do_add_member
from threshold.groups.models import Group
from threshold.passkeys.models import Passkey
from threshold.policy import actions as policy_actions
from threshold.policy.access import get_policy
from threshold.policy.actions import do_update_policy
from threshold.policy.models import OrganisationPolicy

pytestmark = pytest.mark.django_db(transaction=True)

POLICY_TABLE = OrganisationPolicy._meta.db_table
# What the changes write: the policy, a group's rules (and the audit rows).
ITS_ROWS = {POLICY_TABLE, Group._meta.db_table, "audit_auditevent"}


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
    return {
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
        # Spare blocks synced passkeys in Root's group: Root is cut off.
        "roots_group": lambda: post(
            spare_browser,
            f"/admin/groups/{roots.pk}/rules",
            {"block_synced_passkeys": "true", "seen": "1"},
        ),
    }


# Where each holds its transaction open: its audit row, written just before it commits.
HOLDS_AT: dict[str, ModuleType] = {
    "policy": policy_actions,
    "spares_group": groups_actions,
    "roots_group": groups_actions,
}

PAIRS = [
    ("policy", "spares_group"),
    ("spares_group", "policy"),
    ("roots_group", "spares_group"),
]


def administrators_who_can_sign_in() -> list[str]:
    policy = get_policy()
    return [
        user.username
        for user in User.objects.filter(role=Role.ADMINISTRATOR).order_by("username")
        if count_usable_sign_in_methods(user, policy) > 0
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
