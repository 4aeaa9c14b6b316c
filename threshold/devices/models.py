"""Threshold Verify: devices, their set-up codes, push sign-ins and the used request IDs."""

from __future__ import annotations

import re
from enum import StrEnum

from django.db import models
from django.utils import timezone

from threshold.core.names import NICKNAME_MAX_LENGTH
from threshold.core.useragent import describe

# What ``actions.new_public_id`` makes (``secrets.token_urlsafe``) fits the columns below.
_PUBLIC_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


def is_public_id(value: object) -> bool:
    """Whether ``value`` may be a device's, set-up's or push's public ID: anything else names
    no row, and is refused before it reaches the database (PostgreSQL fails on a NUL in a
    text parameter: a 500)."""
    return isinstance(value, str) and _PUBLIC_ID.fullmatch(value) is not None


class KeyProtection(StrEnum):
    """Where a device's key lives, as far as the server verified it (stored values)."""

    TPM = "tpm"  # a TPM attestation of the key verified
    SOFTWARE = "software"  # anything else, whatever the device reports


class Device(models.Model):
    """One installation of Threshold Verify for one person: a P-256 key it signs requests with."""

    user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="devices")
    # The device's ID in the API (the JWS ``kid``): random, never the row's primary key.
    public_id = models.CharField(max_length=32, unique=True)
    public_key = models.JSONField()  # the public JWK: kty, crv, x, y
    # RFC 7638: one key is one device, across all accounts.
    key_thumbprint = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=NICKNAME_MAX_LENGTH)
    platform = models.CharField(max_length=40, blank=True)
    app_version = models.CharField(max_length=40, blank=True)
    # What the server verified (KeyProtection), and what the device said.
    key_protection = models.CharField(max_length=16, default=KeyProtection.SOFTWARE)
    reported_key_protection = models.CharField(max_length=16, blank=True)
    # False until the person typed the code it showed (DeviceEnrollment); then it may sign.
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True)
    revoked_at = models.DateTimeField(null=True)
    # Between a TPM's evidence and its proof (threshold/core/tpm.py): what finishing checks
    # against (the secret's SHA-256, the AK's and the key's public data), base64url; None once
    # it finished, or when the device sent no evidence.
    tpm_challenge = models.JSONField(null=True)
    # "Enable screen lock confirmation" (the phone web app, /verify/): a WebAuthn credential on
    # the device that only the device app uses; once set, every approval is a user-verified
    # assertion of it. Not a passkey: it signs nobody in (docs/device-api.md).
    screen_lock_credential_id = models.BinaryField(null=True)
    screen_lock_public_key = models.BinaryField(null=True)  # CBOR COSE_Key
    screen_lock_sign_count = models.PositiveBigIntegerField(default=0)
    screen_lock_backup_eligible = models.BooleanField(default=False)
    screen_lock_user_handle = models.BinaryField(null=True)
    # The ceremony waiting for the device's answer (ceremony.RegistrationState or
    # AuthenticationState as JSON, with its kind and push): used once, then cleared.
    screen_lock_ceremony = models.JSONField(null=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.name

    @property
    def has_screen_lock(self) -> bool:
        return self.screen_lock_credential_id is not None

    @property
    def is_hardware_protected(self) -> bool:
        return self.key_protection == KeyProtection.TPM

    @property
    def platform_label(self) -> str:
        return {
            "linux": "Linux",
            "macos": "macOS",
            "windows": "Windows",
            "ios": "iOS",
            "android": "Android",
        }.get(self.platform, self.platform or "Unknown system")

    @property
    def protection_label(self) -> str:
        if self.is_hardware_protected:
            return "Key in the device\u2019s TPM"
        if self.reported_key_protection == KeyProtection.TPM:
            return "Software key (TPM reported, not verified)"
        return "Software key"


class EnrollmentState(StrEnum):
    WAITING = "waiting"  # the setup code is not redeemed yet
    REDEEMED = "redeemed"  # a device redeemed it and shows its returned code
    DONE = "done"
    CANCELED = "canceled"


class DeviceEnrollment(models.Model):
    """A setup code: from Settings (``session_binding``) or from a device (``created_by``).

    The code is stored as an HMAC under the server's key, never in clear; it works once,
    for ten minutes. The device that redeems it shows a 6-digit returned code, stored
    the same way, which the person types where the setup code came from; three wrong
    ones cancel it.
    """

    public_id = models.CharField(max_length=32, unique=True)
    user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="+")
    code_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(Device, null=True, on_delete=models.CASCADE, related_name="+")
    session_binding = models.CharField(max_length=64, blank=True)
    state = models.CharField(max_length=16, default=EnrollmentState.WAITING)
    device = models.OneToOneField(
        Device, null=True, on_delete=models.CASCADE, related_name="enrollment"
    )
    returned_code_hash = models.CharField(max_length=64, blank=True)
    wrong_codes = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"Device set-up {self.public_id} ({self.state})"


class PushState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REFUSED = "refused"  # a wrong number ended it
    DENIED = "denied"  # "I didn't do this"
    USED = "used"  # the browser signed in (or verified) with it
    CANCELED = "canceled"  # the browser that sent it stopped waiting ("Cancel")


class PushPurpose(StrEnum):
    """What a push asks the person to approve (stored values)."""

    SIGN_IN = "sign_in"  # a browser signing in (/sign-in)
    # "Verify it's you" in a signed-in browser, which then may add a passkey (step-up)
    STEP_UP = "step_up"


class SignInApproval(models.Model):
    """A push sign-in: the number the browser shows, waiting for a device's answer.

    One is written for every push, also for an unknown username or a person without a
    device (``is_delivered`` False: no device ever sees it), so that the browser's view
    and the limits read the same whoever typed the username. A signed-in person's "Verify
    it's you" sends one too (``purpose`` step_up), bound to their session's browser alike.
    """

    public_id = models.CharField(max_length=32, unique=True)
    # SHA-256 of the username as typed (normalised): the limits count by it.
    username_hash = models.CharField(max_length=64, db_index=True)
    user = models.ForeignKey("accounts.User", null=True, on_delete=models.CASCADE, related_name="+")
    is_delivered = models.BooleanField(default=False)
    number = models.PositiveSmallIntegerField()
    # SHA-256 of the secret in the browser's cookie: only that browser signs in with it.
    browser_binding = models.CharField(max_length=64)
    state = models.CharField(max_length=16, default=PushState.PENDING)
    purpose = models.CharField(max_length=16, default=PushPurpose.SIGN_IN)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    expires_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True)
    device = models.ForeignKey(Device, null=True, on_delete=models.SET_NULL, related_name="+")
    ip = models.GenericIPAddressField(null=True)
    # core.throttle.network_of(ip): the per-network limit counts by it.
    network = models.CharField(max_length=64, blank=True, db_index=True)
    user_agent = models.CharField(max_length=512, blank=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"Push {self.public_id} ({self.state})"

    @property
    def client(self) -> str:
        return describe(self.user_agent).label


class UsedDeviceRequest(models.Model):
    """A device request's ``jti``, kept until the request expires: it works once.

    The same mechanism as ``passkeys.UsedChallenge``: one INSERT ... ON CONFLICT DO
    NOTHING, whose primary key refuses a replay even when two copies race.
    """

    jti_hash = models.CharField(max_length=64, primary_key=True)  # SHA-256 of kid/jwk + jti
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"Used device request {self.jti_hash[:12]}"


class PushSubscription(models.Model):
    """Where the push service of a phone's browser takes Web Push messages for its device
    (the Push API's PushSubscription): one per device, replaced when the browser renews it.

    The endpoint is the push service's URL, checked when it is stored and again before each
    send (threshold/devices/webpush.py); ``p256dh`` and ``auth`` are the browser's keys that
    each message is encrypted to (RFC 8291).
    """

    device = models.OneToOneField(Device, on_delete=models.CASCADE, related_name="push")
    endpoint = models.CharField(max_length=1024)
    p256dh = models.CharField(max_length=100)  # base64url of the browser's P-256 point
    auth = models.CharField(max_length=40)  # base64url of its 16-byte authentication secret
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"Web Push subscription of device {self.device_id}"


class SetupCodeFailure(models.Model):
    """A setup code that was wrong (unknown, used, expired): the guesses the limits count, per
    network (core.throttle.network_of) and overall, for a quarter of an hour."""

    network = models.CharField(max_length=64, db_index=True)
    at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"Wrong setup code from {self.network} at {self.at:%H:%M:%S}"
