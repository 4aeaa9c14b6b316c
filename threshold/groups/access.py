"""Reading groups: by name (any case), a person's groups, everyone's with their counts."""

from __future__ import annotations

from django.db.models import Count, QuerySet

from threshold.accounts.models import User
from threshold.groups.models import Group


def get_group(name: str) -> Group | None:
    return Group.objects.filter(name__iexact=name.strip()).first()


def list_groups() -> QuerySet[Group]:
    return Group.objects.annotate(member_count=Count("memberships")).order_by("name")


def group_names_of(user: User) -> list[str]:
    """The names of ``user``'s groups, sorted (the ``groups`` claim, the portal)."""
    return list(
        Group.objects.filter(memberships__user=user).order_by("name").values_list("name", flat=True)
    )


def members_of(group: Group) -> QuerySet[User]:
    return User.objects.filter(memberships__group=group).order_by("username")
