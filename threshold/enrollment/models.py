"""One-time enrollment links."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class EnrollmentInvite(models.Model):
    """An invite to create a first (or replacement) passkey without signing in.

    Only a SHA-256 of the token is stored: the database alone cannot be
    turned into working links.
    """

    user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="invites")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True)
    revoked_at = models.DateTimeField(null=True)
    created_by = models.ForeignKey(
        "accounts.User", null=True, on_delete=models.SET_NULL, related_name="+"
    )

    def __str__(self) -> str:
        return f"Invite for {self.user_id}"
