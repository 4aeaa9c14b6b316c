"""One-time links to create a passkey: enrollment and recovery."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class EnrollmentInvite(models.Model):
    """A one-time link to create a passkey without signing in.

    ``purpose`` says which: an enrollment (a first or another passkey, from
    ``threshold invite``) or a recovery (an administrator's short-lived link for
    a person who lost every passkey, from ``threshold recover``). Only a SHA-256
    of the token is stored: the database alone cannot be turned into working links.
    """

    ENROLLMENT = "enrollment"
    RECOVERY = "recovery"

    user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="invites")
    purpose = models.CharField(max_length=16, default=ENROLLMENT)  # ENROLLMENT or RECOVERY
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True)
    revoked_at = models.DateTimeField(null=True)
    created_by = models.ForeignKey(
        "accounts.User", null=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(purpose__in=["enrollment", "recovery"]),
                name="enrollmentinvite_purpose_known",
            )
        ]

    def __str__(self) -> str:
        return f"{self.purpose.capitalize()} link for {self.user_id}"
