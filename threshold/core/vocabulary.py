"""WebAuthn's closed vocabularies, as StrEnums whose values are the specification's strings.

Each is spelt once, here; the values travel in options and responses, sit in ceremony
tokens and are stored in columns (``Passkey.attestation_type``, ``authenticator_attachment``,
``transports``), so they never change.
"""

from __future__ import annotations

from enum import StrEnum


class UserVerification(StrEnum):
    """UserVerificationRequirement (WebAuthn L3 §5.8.6)."""

    REQUIRED = "required"
    PREFERRED = "preferred"
    DISCOURAGED = "discouraged"


class ResidentKey(StrEnum):
    """ResidentKeyRequirement (§5.4.6): whether the credential must be discoverable."""

    REQUIRED = "required"
    PREFERRED = "preferred"
    DISCOURAGED = "discouraged"


class AttestationConveyance(StrEnum):
    """AttestationConveyancePreference (§5.4.7)."""

    NONE = "none"
    INDIRECT = "indirect"
    DIRECT = "direct"
    ENTERPRISE = "enterprise"


class Attachment(StrEnum):
    """AuthenticatorAttachment (§5.4.5). A stored passkey whose attachment neither the client
    nor its transports told has "" instead."""

    PLATFORM = "platform"
    CROSS_PLATFORM = "cross-platform"


class Transport(StrEnum):
    """AuthenticatorTransport (§5.8.4), the ones Threshold knows."""

    BLE = "ble"
    HYBRID = "hybrid"
    INTERNAL = "internal"
    NFC = "nfc"
    SMART_CARD = "smart-card"
    USB = "usb"


class Hint(StrEnum):
    """PublicKeyCredentialHint (§5.8.7): which kind of authenticator the person chose."""

    CLIENT_DEVICE = "client-device"
    HYBRID = "hybrid"
    SECURITY_KEY = "security-key"


class AttestationFormat(StrEnum):
    """Attestation statement format identifiers (§8, the IANA registry) that Threshold verifies.
    Stored in ``Passkey.attestation_format``."""

    PACKED = "packed"
    TPM = "tpm"
    ANDROID_KEY = "android-key"
    ANDROID_SAFETYNET = "android-safetynet"
    FIDO_U2F = "fido-u2f"
    APPLE = "apple"
    NONE = "none"


class AttestationType(StrEnum):
    """The attestation type a verified statement proves (§6.5.4)."""

    BASIC = "basic"
    SELF = "self"
    ATT_CA = "attca"
    ANON_CA = "anonca"
    NONE = "none"
