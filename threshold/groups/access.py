"""Reading groups: by name (any case), a person's groups, everyone's with their counts."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count, QuerySet

from threshold.accounts.models import User
from threshold.core.names import has_ascii_control
from threshold.core.policy import GroupRules
from threshold.groups.models import Group, Membership, group_key


def get_group(name: str) -> Group | None:
    """The group named ``name`` (any case, around it spaces or a line's end), if any. No
    group's name holds a control character (``clean_group_name``; PostgreSQL refuses a NUL
    in a query)."""
    name = name.strip()
    if has_ascii_control(name):
        return None
    return Group.objects.filter(name_key=group_key(name)).first()


def list_groups() -> QuerySet[Group]:
    return Group.objects.annotate(member_count=Count("memberships")).order_by("name")


def group_names_of(user: User) -> list[str]:
    """The names of ``user``'s groups, sorted (the ``groups`` claim, the portal)."""
    return list(
        Group.objects.filter(memberships__user=user).order_by("name").values_list("name", flat=True)
    )


def members_of(group: Group) -> QuerySet[User]:
    return User.objects.filter(memberships__group=group).order_by("username")


def rules_of(user: User) -> tuple[GroupRules, ...]:
    """The rules of ``user``'s groups that have any (``core.policy.evaluate`` applies them)."""
    return tuple(
        GroupRules.from_document(name, rules)
        for name, rules in Group.objects.filter(memberships__user=user)
        .exclude(rules={})
        .order_by("name")
        .values_list("name", "rules")
    )


def rules_by_user(user_ids: Iterable[int]) -> dict[int, tuple[GroupRules, ...]]:
    """``rules_of`` for many people in one query: user ID -> their groups' rules."""
    found: dict[int, list[GroupRules]] = {}
    rows = (
        Membership.objects.filter(user_id__in=list(user_ids))
        .exclude(group__rules={})
        .order_by("group__name")
        .values_list("user_id", "group__name", "group__rules")
    )
    for user_id, name, rules in rows:
        found.setdefault(user_id, []).append(GroupRules.from_document(name, rules))
    return {user_id: tuple(rules) for user_id, rules in found.items()}
