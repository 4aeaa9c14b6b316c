"""The core's closed vocabularies (threshold.core.vocabulary, the catalog's): StrEnums whose
values are the specification's strings and the ones stored. A rename fails here."""

from __future__ import annotations

from enum import StrEnum

import pytest

from threshold.core import attestation, ceremony
from threshold.core.catalog import Group, NextStep, Surface
from threshold.core.vocabulary import (
    Attachment,
    AttestationConveyance,
    AttestationFormat,
    AttestationType,
    Hint,
    ResidentKey,
    Transport,
    UserVerification,
)


def values(enum: type[StrEnum]) -> dict[str, str]:
    return {member.name: member.value for member in enum}


@pytest.mark.parametrize(
    ("enum", "expected"),
    [
        (
            UserVerification,
            {"REQUIRED": "required", "PREFERRED": "preferred", "DISCOURAGED": "discouraged"},
        ),
        (
            ResidentKey,
            {"REQUIRED": "required", "PREFERRED": "preferred", "DISCOURAGED": "discouraged"},
        ),
        (
            AttestationConveyance,
            {
                "NONE": "none",
                "INDIRECT": "indirect",
                "DIRECT": "direct",
                "ENTERPRISE": "enterprise",
            },
        ),
        (Attachment, {"PLATFORM": "platform", "CROSS_PLATFORM": "cross-platform"}),
        (
            Transport,
            {
                "BLE": "ble",
                "HYBRID": "hybrid",
                "INTERNAL": "internal",
                "NFC": "nfc",
                "SMART_CARD": "smart-card",
                "USB": "usb",
            },
        ),
        (
            Hint,
            {"CLIENT_DEVICE": "client-device", "HYBRID": "hybrid", "SECURITY_KEY": "security-key"},
        ),
        (
            AttestationType,
            {
                "BASIC": "basic",
                "SELF": "self",
                "ATT_CA": "attca",
                "ANON_CA": "anonca",
                "NONE": "none",
            },
        ),
        (
            AttestationFormat,
            {
                "PACKED": "packed",
                "TPM": "tpm",
                "ANDROID_KEY": "android-key",
                "ANDROID_SAFETYNET": "android-safetynet",
                "FIDO_U2F": "fido-u2f",
                "APPLE": "apple",
                "NONE": "none",
            },
        ),
        (
            Surface,
            {
                "AUTHENTICATION": "authentication",
                "REGISTRATION": "registration",
                "SETTINGS": "settings",
            },
        ),
        (
            NextStep,
            {
                "RETRY": "retry",
                "ANOTHER_DEVICE": "another_device",
                "PASSWORD": "password",
                "SET_UP_LATER": "set_up_later",
                "CONTACT_SUPPORT": "contact_support",
                "RESTART": "restart",
            },
        ),
        (
            Group,
            {
                "SIGN_IN": "sign-in",
                "SET_UP": "set-up",
                "BOTH": "both",
                "SETTINGS": "settings",
                "FALLBACK": "fallback",
                "BROWSER": "browser",
                "DEVICE_APP": "device-app",
            },
        ),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else "",
)
def test_vocabularies_keep_their_spellings(enum: type[StrEnum], expected: dict[str, str]) -> None:
    assert values(enum) == expected


def test_the_attestation_formats_are_the_ones_with_a_verifier() -> None:
    assert set(attestation.FORMATS) == set(AttestationFormat)


def test_the_ceremony_accepts_exactly_the_vocabularies_values() -> None:
    assert ceremony.USER_VERIFICATION_VALUES == ("required", "preferred", "discouraged")
    assert ceremony.HINTS == ("client-device", "hybrid", "security-key")
    assert set(ceremony.KNOWN_TRANSPORTS) == set(Transport)


def test_options_carry_the_plain_strings() -> None:
    options, state = ceremony.begin_registration(
        ceremony.RelyingParty(id="localhost", name="Threshold", origins=("http://localhost:8000",)),
        user_handle=b"u" * 32,
        user_name="ada",
        user_display_name="Ada",
        now=0,
        timeout_seconds=60,
        authenticator_attachment=Attachment.PLATFORM,
        hints=(Hint.CLIENT_DEVICE,),
    )
    selection = options["authenticatorSelection"]
    assert selection == {
        "residentKey": "required",
        "requireResidentKey": True,
        "userVerification": "required",
        "authenticatorAttachment": "platform",
    }
    assert options["attestation"] == "direct"
    assert options["hints"] == ["client-device"]
    assert state.to_json()["user_verification"] == "required"
