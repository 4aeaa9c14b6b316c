"""The fallback sign-in: a password (Argon2, on the User) plus an app or recovery code.

A person has all three or none: the password alone never signs anyone in.
"""

from __future__ import annotations

from django.db import models


class TotpDevice(models.Model):
    """An authenticator app (RFC 6238: SHA-1, 6 digits, 30-second steps)."""

    user = models.OneToOneField("accounts.User", on_delete=models.CASCADE, related_name="totp")
    # Base32, as in the otpauth:// URI the app scanned.
    secret = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    # The time step of the last accepted code: a code is accepted once, and
    # never one from an earlier step (RFC 6238 §5.2).
    last_used_step = models.BigIntegerField(null=True)

    def __str__(self) -> str:
        return f"Authenticator app of user {self.user_id}"


class RecoveryCode(models.Model):
    """A one-time code for when the authenticator app is not at hand.

    80 random bits, so a SHA-256 of it is safe to store and to look up by.
    """

    user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="+")
    code_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True)

    def __str__(self) -> str:
        return f"Recovery code of user {self.user_id}"


class FailureCounter(models.Model):
    """Recent failed fallback attempts for one username or one network address.

    Keyed by a hash of the username as typed (normalised), whether or not an
    account has it, so throttling answers the same for unknown usernames.
    """

    key = models.CharField(max_length=80, unique=True)
    failures = models.PositiveIntegerField(default=0)
    first_failure_at = models.DateTimeField()
    last_failure_at = models.DateTimeField()
    # Attempts before this are refused without being checked.
    locked_until = models.DateTimeField(null=True)

    def __str__(self) -> str:
        return f"{self.key}: {self.failures}"


class PasskeyPrompt(models.Model):
    """When the person chose "I'll do it later" on the "Set up a passkey" prompt."""

    user = models.OneToOneField(
        "accounts.User", on_delete=models.CASCADE, related_name="passkey_prompt"
    )
    snoozed_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"Passkey prompt of user {self.user_id}"
