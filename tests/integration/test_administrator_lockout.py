"""The changes of a person that can leave no administrator a way in: a group whose rules refuse
their passkeys, the administrator role taken away, a lock, a deactivation.

Each is refused, in the admin portal (409, the page again with why) and from the command line
(exit 1, why on standard error), when it would leave no administrator who can sign in today a
way to (``portal.policies``, as a policy or group rules change is); nothing is stored or
audited. ``--force`` makes it anyway from the command line; a change while no administrator
can sign in is never refused (the command line is the operator's way back in).
"""

from __future__ import annotations

import io

import pytest

from tests.integration.conftest import enrolled_person, last_event
from tests.integration.portal_support import administrators_who_can_sign_in, post, staff
from tests.integration.test_policy_at_sign_in import SOFT_AAGUID
from threshold.accounts.methods import count_usable_sign_in_methods
from threshold.accounts.models import Role, User
from threshold.audit.actions import Origin
from threshold.audit.models import AuditEvent
from threshold.cli.main import main
from threshold.enrollment.bulk import Outcome, invite_rows, read_rows
from threshold.groups.actions import do_add_group, do_add_member
from threshold.groups.models import Group, Membership
from threshold.policy.access import get_policy

pytestmark = pytest.mark.django_db

JOINING = (
    "Adding Root to Strict would leave no administrator able to sign in, so they were not "
    "added: the group's rules refuse their passkeys. Give an administrator a way to sign in "
    "that the group's rules allow first, then add them."
)
STEPPING_DOWN = (
    "Taking the administrator role from Root would leave no administrator able to sign in, "
    "so the role was not saved. Make someone who can sign in an administrator first, then "
    "save it."
)
LOCKING = (
    "Locking Root would leave no administrator able to sign in, so they were not locked. "
    "Make someone who can sign in an administrator first, then lock them."
)
DEACTIVATING = (
    "Deactivating Root would leave no administrator able to sign in, so they were not "
    "deactivated. Make someone who can sign in an administrator first, then deactivate them."
)
FORCE = "To make the change anyway, run the command again with --force."
CHANGES = ("group.member_added", "user.role_changed", "user.locked", "user.deactivated")


def strict() -> Group:
    """A group whose rules refuse the test authenticator, every enrolled person's."""
    group = do_add_group("Strict", Origin.cli())
    Group.objects.filter(pk=group.pk).update(rules={"aaguid_deny_list": [SOFT_AAGUID]})
    group.refresh_from_db()
    return group


def cut_off(user: User) -> None:
    """``user`` keeps their sessions but can no longer sign in: a group's rules (set after
    they signed in) refuse their one passkey."""
    group = do_add_group(f"Cut off {user.pk}", Origin.cli())
    do_add_member(group, user, Origin.cli())
    Group.objects.filter(pk=group.pk).update(rules={"aaguid_deny_list": [SOFT_AAGUID]})
    assert count_usable_sign_in_methods(user, get_policy()) == 0


def nothing_changed(root: User) -> None:
    root.refresh_from_db()
    assert root.role == Role.ADMINISTRATOR
    assert root.is_active
    assert root.locked_at is None
    assert not Membership.objects.filter(user=root, group__name="Strict").exists()
    assert not AuditEvent.objects.filter(action__in=CHANGES, subject=root).exists()
    assert administrators_who_can_sign_in() == ["root@example.com"]


def text_of(response) -> str:
    return response.content.decode().replace("&#x27;", "'")


# --- The admin portal ----------------------------------------------------------------------------


@pytest.fixture
def portal():
    """Root, the one administrator who can sign in, and Boss, an administrator signed in to
    the portal just now who can no longer sign in (a rule made since refuses his passkey)."""
    root = enrolled_person("root@example.com", "Root").user
    User.objects.filter(pk=root.pk).update(role=Role.ADMINISTRATOR)
    boss, browser = staff("boss@example.com", Role.ADMINISTRATOR)
    cut_off(boss.user)
    assert administrators_who_can_sign_in() == ["root@example.com"]
    return root, browser


PEOPLE_PAGE_CHANGES = [
    ("lock", {"reason": "left"}, LOCKING),
    ("deactivate", {}, DEACTIVATING),
    ("role", {"role": Role.HELP_DESK.value}, STEPPING_DOWN),
    ("role", {"role": Role.NONE.value}, STEPPING_DOWN),
]


@pytest.mark.parametrize(("path", "data", "message"), PEOPLE_PAGE_CHANGES)
def test_the_portal_refuses_to_take_away_the_last_administrators_way_in(
    portal, path, data, message
):
    root, browser = portal
    response = post(browser, f"/admin/people/{root.pk}/{path}", data)
    assert response.status_code == 409, text_of(response)[:2000]
    text = text_of(response)
    assert message in text
    # Root's page again, with why, as the portal's other refusals show it.
    assert 'id="portal-error"' in text
    assert "<h1>Root</h1>" in text
    nothing_changed(root)


@pytest.mark.parametrize(("path", "data", "message"), PEOPLE_PAGE_CHANGES)
def test_the_portal_makes_it_while_another_administrator_keeps_a_way_in(
    portal, path, data, message
):
    root, browser = portal
    spare = enrolled_person("spare@example.com", "Spare").user
    User.objects.filter(pk=spare.pk).update(role=Role.ADMINISTRATOR)
    response = post(browser, f"/admin/people/{root.pk}/{path}", data)
    assert response.status_code == 303, text_of(response)[:2000]
    assert administrators_who_can_sign_in() == ["spare@example.com"]
    # Spare is the last one now.
    again = post(browser, f"/admin/people/{spare.pk}/{path}", data)
    assert again.status_code == 409
    assert message.replace("Root", "Spare") in text_of(again)


@pytest.mark.parametrize(("path", "data", "message"), PEOPLE_PAGE_CHANGES)
def test_the_portal_never_refuses_while_no_administrator_can_sign_in(portal, path, data, message):
    root, browser = portal
    cut_off(root)
    assert administrators_who_can_sign_in() == []
    response = post(browser, f"/admin/people/{root.pk}/{path}", data)
    assert response.status_code == 303
    assert message not in text_of(response)


def test_the_portal_refuses_to_put_the_last_administrator_in_a_group_that_refuses_them(portal):
    root, browser = portal
    group = strict()
    response = post(browser, f"/admin/groups/{group.pk}/members", {"email": root.username})
    assert response.status_code == 409, text_of(response)[:2000]
    text = text_of(response)
    assert JOINING in text
    # The group's page again, with why, as its other refusals show it.
    assert 'id="group-error"' in text
    assert "<h1>Strict</h1>" in text
    nothing_changed(root)


def test_the_portal_refuses_an_administrator_putting_themselves_in_such_a_group(db):
    root, browser = staff("root@example.com", Role.ADMINISTRATOR)
    group = strict()
    response = post(browser, f"/admin/groups/{group.pk}/members", {"email": root.user.username})
    assert response.status_code == 409
    assert JOINING in text_of(response)
    nothing_changed(root.user)


def test_the_portal_adds_them_while_another_administrator_keeps_a_way_in(portal):
    root, browser = portal
    spare = enrolled_person("spare@example.com", "Spare").user
    User.objects.filter(pk=spare.pk).update(role=Role.ADMINISTRATOR)
    group = strict()
    added = post(browser, f"/admin/groups/{group.pk}/members", {"email": root.username})
    assert added.status_code == 303
    assert last_event("group.member_added").subject == root
    assert administrators_who_can_sign_in() == ["spare@example.com"]
    # Spare is the last one now; while no administrator can sign in, it is not refused.
    refused = post(browser, f"/admin/groups/{group.pk}/members", {"email": spare.username})
    assert refused.status_code == 409
    cut_off(spare)
    again = post(browser, f"/admin/groups/{group.pk}/members", {"email": spare.username})
    assert again.status_code == 303


def test_the_help_desk_still_locks_a_member(portal):
    _, desk_browser = staff("desk@example.com", Role.HELP_DESK)
    member = enrolled_person("ada@example.com", "Ada").user
    # Locking a member takes no administrator's way in.
    assert post(desk_browser, f"/admin/people/{member.pk}/lock", {"reason": ""}).status_code == 303
    assert User.objects.get(pk=member.pk).is_locked


# --- The command line ----------------------------------------------------------------------------


@pytest.fixture
def root(db):
    """Root, the one administrator who can sign in; Boss, an administrator who cannot."""
    root = enrolled_person("root@example.com", "Root").user
    boss = enrolled_person("boss@example.com", "Boss").user
    User.objects.filter(pk__in=[root.pk, boss.pk]).update(role=Role.ADMINISTRATOR)
    cut_off(boss)
    enrolled_person("ada@example.com", "Ada")  # not an administrator: she does not count
    root.refresh_from_db()
    return root


COMMANDS = [
    (["users", "lock", "root@example.com", "--reason", "left"], LOCKING),
    (["users", "deactivate", "root@example.com"], DEACTIVATING),
    (["users", "role", "root@example.com", "none"], STEPPING_DOWN),
    (["users", "role", "root@example.com", "helpdesk"], STEPPING_DOWN),
    (["groups", "add-member", "Strict", "root@example.com"], JOINING),
]


@pytest.mark.parametrize(("command", "message"), COMMANDS)
def test_the_command_line_refuses_to_take_away_the_last_administrators_way_in(
    root, capsys, command, message
):
    strict()
    assert main(command) == 1
    captured = capsys.readouterr()
    assert captured.err.endswith(f"threshold: {message}\n{FORCE}\n")
    assert captured.out == ""
    nothing_changed(root)


@pytest.mark.parametrize(("command", "message"), COMMANDS)
def test_force_makes_it_anyway_and_says_so(root, capsys, command, message):
    strict()
    assert main([*command, "--force"]) == 0
    captured = capsys.readouterr()
    assert "threshold: done with --force: no administrator can sign in now" in captured.err
    assert "(root@example.com could)" in captured.err
    assert message not in captured.err
    assert administrators_who_can_sign_in() == []
    assert AuditEvent.objects.filter(action__in=CHANGES, subject=root).count() == 1


@pytest.mark.parametrize(("command", "message"), COMMANDS)
def test_the_command_line_never_refuses_while_no_administrator_can_sign_in(
    root, capsys, command, message
):
    strict()
    cut_off(root)
    assert administrators_who_can_sign_in() == []
    assert main(command) == 0
    captured = capsys.readouterr()
    assert message not in captured.err
    assert "--force" not in captured.err


@pytest.mark.parametrize("command", [command for command, _ in COMMANDS])
def test_the_command_line_makes_it_while_another_administrator_keeps_a_way_in(
    root, capsys, command
):
    strict()
    spare = enrolled_person("spare@example.com", "Spare").user
    User.objects.filter(pk=spare.pk).update(role=Role.ADMINISTRATOR)
    assert main(command) == 0
    captured = capsys.readouterr()
    assert "administrator" not in captured.err
    assert "--force" not in captured.err
    assert administrators_who_can_sign_in() == ["spare@example.com"]


def test_a_lock_reason_too_long_is_a_usage_error_first(root, capsys):
    assert main(["users", "lock", "root@example.com", "--reason", "x" * 201]) == 2
    assert "at most 200" in capsys.readouterr().err
    nothing_changed(root)


# --- The CSV import ------------------------------------------------------------------------------


def test_an_import_never_puts_an_administrator_who_can_sign_in_in_a_group(root):
    """An import puts in groups only the people it invited, who have no way to sign in yet
    (someone who has one is skipped): so its groups column never cuts an administrator off."""
    strict()
    lines = io.StringIO("email,groups\nroot@example.com,Strict\nnew@example.com,Strict\n")
    results = list(invite_rows(read_rows(lines), Origin.cli(), None, may_change_groups=True))
    assert [result.outcome for result in results] == [Outcome.SKIPPED, Outcome.INVITED]
    nothing_changed(root)
    assert Membership.objects.filter(user__username="new@example.com").exists()
