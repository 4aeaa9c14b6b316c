"""The organisation policy: one row, read by every ceremony."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class OrganisationPolicy(models.Model):
    """Singleton (pk=1). Read it through ``threshold.policy.actions.get_policy``."""

    ceremony_timeout_seconds = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(15), MaxValueValidator(600)]
    )
    # "required": every passkey ceremony must verify the person (PIN, biometric).
    # "preferred": ask for it but accept a security key without a PIN.
    user_verification = models.CharField(max_length=16, default="required")
    passkey_limit = models.PositiveIntegerField(
        default=10, validators=[MinValueValidator(1), MaxValueValidator(100)]
    )
    invite_lifetime_hours = models.PositiveIntegerField(
        default=168, validators=[MinValueValidator(1), MaxValueValidator(24 * 90)]
    )
    step_up_max_age_seconds = models.PositiveIntegerField(
        default=300, validators=[MinValueValidator(60), MaxValueValidator(3600)]
    )
    flow_idle_timeout_minutes = models.PositiveIntegerField(
        default=10, validators=[MinValueValidator(5), MaxValueValidator(15)]
    )
    allow_password_fallback = models.BooleanField(default=True)
    password_lockout_threshold = models.PositiveIntegerField(
        default=10, validators=[MinValueValidator(3), MaxValueValidator(100)]
    )
    passkey_prompt_snooze_sign_ins = models.PositiveIntegerField(
        default=10, validators=[MinValueValidator(1), MaxValueValidator(100)]
    )
    passkey_prompt_snooze_days = models.PositiveIntegerField(
        default=7, validators=[MinValueValidator(1), MaxValueValidator(90)]
    )
    recovery_link_lifetime_minutes = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(5), MaxValueValidator(24 * 60)]
    )
    # Registration rules; see threshold.core.policy.Policy.check_registration.
    require_trusted_attestation = models.BooleanField(default=False)
    aaguid_allow_list = models.JSONField(default=list)
    aaguid_deny_list = models.JSONField(default=list)
    block_synced_passkeys = models.BooleanField(default=False)
    allowed_algorithms = models.JSONField(default=list)
    refuse_u2f_authenticators = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return "Organisation policy"
