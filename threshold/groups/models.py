"""Groups of people: who may use which app, and (with the admin portal) whose rules are stricter."""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING, Any

from django.db import models
from django.utils import timezone

if TYPE_CHECKING:
    from threshold.accounts.models import User

GROUP_NAME_MAX_LENGTH = 100


def group_key(name: str) -> str:
    """What makes two names one group's: "Engineering" and "engineering", "Équipe" and
    "équipe" are one group, since names are typed by people. Unicode's case folding (after
    NFC), the same on every database: SQLite's lower() folds only ASCII letters."""
    return unicodedata.normalize("NFC", name).casefold()


class Group(models.Model):
    name = models.CharField(max_length=GROUP_NAME_MAX_LENGTH)
    # group_key(name), unique: set by save(). Case folding may lengthen a name ("ß": "ss").
    name_key = models.CharField(max_length=GROUP_NAME_MAX_LENGTH * 3, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    members: models.ManyToManyField[User, Membership] = models.ManyToManyField(
        "accounts.User", through="Membership", related_name="member_of"
    )
    # The group's rules on its members' passkeys, stricter than the organisation's: the
    # settings of core.policy.GROUP_SETTINGS that are set (core.policy.GroupRules); {}: none.
    rules = models.JSONField(default=dict)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.name_key = group_key(self.name)
        fields = kwargs.get("update_fields")
        if fields is not None and "name" in fields:
            kwargs["update_fields"] = {*fields, "name_key"}
        super().save(*args, **kwargs)


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
