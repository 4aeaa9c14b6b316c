"""Groups of people: who may use which app, and (with the admin portal) whose rules are stricter."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

if TYPE_CHECKING:
    from threshold.accounts.models import User

GROUP_NAME_MAX_LENGTH = 100


class Group(models.Model):
    name = models.CharField(max_length=GROUP_NAME_MAX_LENGTH)
    created_at = models.DateTimeField(default=timezone.now)
    members: models.ManyToManyField[User, Membership] = models.ManyToManyField(
        "accounts.User", through="Membership", related_name="member_of"
    )
    # The group's rules on its members' passkeys, stricter than the organisation's: the
    # settings of core.policy.GROUP_SETTINGS that are set (core.policy.GroupRules); {}: none.
    rules = models.JSONField(default=dict)

    class Meta:
        ordering = ("name",)
        constraints = (
            # "Engineering" and "engineering" are one group: names are typed by people.
            models.UniqueConstraint(Lower("name"), name="groups_group_name_ci_unique"),
        )

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="memberships")
    added_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = (
            models.UniqueConstraint(fields=("group", "user"), name="groups_membership_unique"),
        )

    def __str__(self) -> str:
        return f"{self.user_id} in {self.group_id}"
