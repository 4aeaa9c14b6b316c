"""One-time links to create a passkey: enrollment and recovery."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from threshold.passkeys.pending import Purpose


class EnrollmentInvite(models.Model):
    """A one-time link to create a passkey without signing in.

    ``purpose`` says which: an enrollment (a first or another passkey, from
    ``threshold invite``) or a recovery (an administrator's short-lived link for
    a person who lost every passkey, from ``threshold recover``). Only a SHA-256
    of the token is stored: the database alone cannot be turned into working links.
    """

    user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="invites")
    # Purpose.ENROLLMENT or Purpose.RECOVERY, stored as their values.
    purpose = models.CharField(max_length=16, default=Purpose.ENROLLMENT.value)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True)
    revoked_at = models.DateTimeField(null=True)
    created_by = models.ForeignKey(
        "accounts.User", null=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The address the link itself was emailed to, once the email went; blank when the
    # administrator hands it over (printed, or a recovery link's default).
    sent_to = models.EmailField(blank=True, default="")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(purpose__in=[Purpose.ENROLLMENT.value, Purpose.RECOVERY.value]),
                name="enrollmentinvite_purpose_known",
            )
        ]

    def __str__(self) -> str:
        return f"{self.purpose.capitalize()} link for {self.user_id}"
