"""Changing groups, each change audited in its transaction.

Refusals raise ``GroupError`` with a sentence for a person (the CLI prints it, the
admin portal shows it); nothing is stored when one is raised.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction

from threshold.accounts.models import User
from threshold.audit.actions import Action, Origin, record
from threshold.core import errors
from threshold.core.names import clean_name
from threshold.core.policy import GroupRules
from threshold.groups.access import get_group
from threshold.groups.models import GROUP_NAME_MAX_LENGTH, Group, Membership
from threshold.groups.signals import members_left


class GroupError(ValueError):
    """A group change that cannot be made, in words for the person who asked."""


def clean_group_name(name: str) -> str:
    try:
        return clean_name(name, GROUP_NAME_MAX_LENGTH)
    except errors.NameInvalid as exc:
        raise GroupError(f"That group name can't be used ({exc.detail}).") from None


def do_add_group(name: str, origin: Origin, *, actor: User | None = None) -> Group:
    cleaned = clean_group_name(name)
    try:
        with transaction.atomic():
            group = Group.objects.create(name=cleaned)
            record(Action.GROUP_ADDED, origin, actor=actor, group=group.name)
    except IntegrityError:
        raise GroupError(f"There is a group called {cleaned!r} already.") from None
    return group


@transaction.atomic
def do_remove_group(group: Group, origin: Origin, *, actor: User | None = None) -> int:
    """Remove ``group``; its members stay (``members_left`` tells the apps above that they
    left it). Returns how many members it had. Its row is held first, as ``do_add_member``
    holds it, so a member added meanwhile is either counted here or refused there."""
    Group.objects.select_for_update().filter(pk=group.pk).exists()
    user_ids = list(group.memberships.values_list("user_id", flat=True))
    record(Action.GROUP_REMOVED, origin, actor=actor, group=group.name, members=len(user_ids))
    group.delete()
    members_left.send(
        Group,
        user_ids=user_ids,
        group=group.name,
        origin=origin,
        actor=actor,
        reason="group_removed",
    )
    return len(user_ids)


def do_add_member(group: Group, user: User, origin: Origin, *, actor: User | None = None) -> bool:
    """Add ``user`` to ``group``; False when they were a member already (nothing recorded).

    ``Group.DoesNotExist`` when the group was removed meanwhile: its row is held until the
    transaction ends, as ``do_remove_group`` holds it (on PostgreSQL the membership's key to
    it is checked only at COMMIT, too late for a refusal in words)."""
    if Membership.objects.filter(group=group, user=user).exists():
        return False
    with transaction.atomic():
        if not Group.objects.select_for_update().filter(pk=group.pk).exists():
            raise Group.DoesNotExist("the group was removed")
        try:
            with transaction.atomic():
                Membership.objects.create(group=group, user=user)
                record(
                    Action.GROUP_MEMBER_ADDED, origin, actor=actor, subject=user, group=group.name
                )
        except IntegrityError:
            return False
    return True


@transaction.atomic
def do_remove_member(
    group: Group, user: User, origin: Origin, *, actor: User | None = None
) -> bool:
    """Take ``user`` out of ``group``; False when they were not in it (nothing recorded)."""
    removed, _ = Membership.objects.filter(group=group, user=user).delete()
    if not removed:
        return False
    record(Action.GROUP_MEMBER_REMOVED, origin, actor=actor, subject=user, group=group.name)
    members_left.send(
        Group,
        user_ids=[user.pk],
        group=group.name,
        origin=origin,
        actor=actor,
        reason="removed_from_group",
    )
    return True


def hold_group(group: Group) -> None:
    """``group``'s name and rules read again, its row held until the transaction ends (FOR NO
    KEY UPDATE on PostgreSQL: what saving its rules takes; its removal waits for it);
    ``Group.DoesNotExist`` when it was removed meanwhile."""
    group.refresh_from_db(
        fields=["name", "rules"], from_queryset=Group.objects.select_for_update(no_key=True)
    )


def find_group(name: str) -> Group:
    group = get_group(name)
    if group is None:
        raise GroupError(f"There is no group called {name.strip()!r}.")
    return group


@transaction.atomic
def do_set_group_rules(
    group: Group, rules: GroupRules, origin: Origin, *, actor: User | None = None
) -> bool:
    """Store ``group``'s rules on its members' passkeys; False when they did not change.

    ``Group.DoesNotExist`` when the group was removed meanwhile: its row is read again and
    held until the transaction ends (``hold_group``), as ``do_remove_group`` holds it, so a
    removal waits for the rules to be saved, or the save for the removal (and then says so),
    never a save that matches no row."""
    hold_group(group)
    before = dict(group.rules)
    after = rules.as_json()
    if before == after:
        return False
    group.rules = after
    group.save(update_fields=["rules"])
    record(
        Action.GROUP_RULES_CHANGED,
        origin,
        actor=actor,
        group=group.name,
        before=before,
        after=after,
    )
    return True
