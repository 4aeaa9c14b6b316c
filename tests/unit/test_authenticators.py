"""Authenticator names and kinds (threshold.core.authenticators), alone and through registration.

The name comes from FIDO metadata first, then the table of well-known passkey
providers, then a generic name by kind. "Security key" as a kind means roaming,
hardware-attested and not synced.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

import pytest

from tests.support.authenticator import SoftAuthenticator
from tests.unit.conftest import NOW, ORIGIN, TIMEOUT_SECONDS
from tests.unit.vectors import (
    FIXTURES,
    REAL,
    register,
    today,
    vector,
)
from threshold.core.authenticators import (
    KNOWN_PROVIDERS,
    AuthenticatorDescription,
    attachment_of,
    describe,
)
from threshold.core.ceremony import (
    RelyingParty,
    begin_registration,
    finish_registration,
    parse_registration_response,
)
from threshold.core.metadata import MetadataEntry, default_store
from threshold.core.vocabulary import Attachment

PLATFORM, ROAMING = Attachment.PLATFORM, Attachment.CROSS_PLATFORM

ICLOUD = "fbfc3007-154e-4ecc-8c0b-6e020557d7bd"
GOOGLE_PASSWORD_MANAGER = "ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4"
ONE_PASSWORD = "bada5566-a7aa-401f-bd96-45619a55120d"
BITWARDEN = "d548826e-79b4-db40-a3d8-11116f7e8349"
WINDOWS_HELLO = "08987058-cadc-4b81-b6e1-30de50dcbe96"
# In neither the bundled metadata nor KNOWN_PROVIDERS (checked below).
UNKNOWN = "5e1f0b7a-7e57-4000-8000-7e5700000001"
ZERO = bytes(16)

RESEARCH = {
    row["aaguid"]: row
    for row in json.loads((FIXTURES / "passkey_providers_research.json").read_text())
}


def _entry(description: str) -> MetadataEntry:
    return MetadataEntry(
        description=description,
        aaguid=UNKNOWN,
        key_identifiers=(),
        protocol_family="fido2",
        root_certificates_der=(),
        statuses=("FIDO_CERTIFIED",),
        attachment_hints=(),
        key_protection=(),
        attestation_types=(),
        versions=(),
    )


def _describe(
    aaguid: str | bytes = UNKNOWN,
    *,
    metadata: MetadataEntry | None = None,
    backup_eligible: bool = False,
    attachment: str | None = None,
    transports: Sequence[str] = (),
    trusted: bool = False,
) -> AuthenticatorDescription:
    return describe(
        aaguid if isinstance(aaguid, bytes) else uuid.UUID(aaguid).bytes,
        metadata=metadata,
        backup_eligible=backup_eligible,
        authenticator_attachment=attachment,
        transports=transports,
        attestation_trusted=trusted,
    )


# --- Names ----------------------------------------------------------------------------------------


def test_metadata_name_comes_first() -> None:
    # Windows Hello is in both: the metadata's more precise name wins.
    entry = default_store().by_aaguid[WINDOWS_HELLO]

    assert _describe(WINDOWS_HELLO, metadata=entry).name == "Windows Hello Hardware Authenticator"
    assert _describe(WINDOWS_HELLO).name == "Windows Hello"


def test_metadata_name_comes_first_even_for_a_known_provider() -> None:
    assert _describe(ICLOUD, metadata=_entry("A Metadata Name")).name == "A Metadata Name"


@pytest.mark.parametrize(
    ("aaguid", "name"),
    [
        (ICLOUD, "iCloud Keychain"),
        (GOOGLE_PASSWORD_MANAGER, "Google Password Manager"),
        (ONE_PASSWORD, "1Password"),
        (BITWARDEN, "Bitwarden"),
        ("fdb141b2-5d84-443e-8a35-4698c205a502", "KeePassXC"),
        ("adce0002-35bc-c60a-648b-0b25f1f05503", "Chrome on Mac"),
        ("de1e552d-db1d-4423-a619-566b625cdc84", "Microsoft Authenticator"),
        ("53414d53-554e-4700-0000-000000000000", "Samsung Pass"),
    ],
)
def test_known_provider_is_named_when_metadata_lacks_it(aaguid: str, name: str) -> None:
    assert _describe(aaguid, backup_eligible=True, attachment=PLATFORM).name == name


def test_known_provider_aaguid_is_matched_whatever_the_attachment() -> None:
    for attachment in (PLATFORM, ROAMING, None):
        assert _describe(GOOGLE_PASSWORD_MANAGER, attachment=attachment).name == (
            "Google Password Manager"
        )


def test_every_known_provider_agrees_with_the_research_fixture() -> None:
    for aaguid, name in KNOWN_PROVIDERS.items():
        assert aaguid == str(uuid.UUID(aaguid)), f"{aaguid} is not canonical"
        assert aaguid in RESEARCH, f"{aaguid} ({name}) is not in the research"
        # The research records the fullest name ("iCloud Keychain (Apple Passwords)",
        # "Microsoft Authenticator for iOS"); the table may shorten it, never change it.
        assert RESEARCH[aaguid]["name"].startswith(name), (aaguid, name, RESEARCH[aaguid]["name"])


def test_known_providers_cover_the_providers_the_issue_names() -> None:
    names = set(KNOWN_PROVIDERS.values())

    assert {
        "iCloud Keychain",
        "Google Password Manager",
        "Windows Hello",
        "Chrome on Mac",
        "Microsoft Authenticator",
        "Samsung Pass",
        "1Password",
        "Bitwarden",
        "Dashlane",
        "KeePassXC",
    } <= names


@pytest.mark.parametrize(
    ("backup_eligible", "attachment", "transports", "trusted", "name"),
    [
        (False, ROAMING, ("usb",), True, "Security key"),
        (False, ROAMING, ("usb", "nfc"), False, "Security key"),
        (False, None, ("nfc",), False, "Security key"),
        (False, ROAMING, ("hybrid", "internal"), False, "Passkey on a phone or tablet"),
        (True, ROAMING, ("hybrid",), False, "Passkey on a phone or tablet"),
        (True, PLATFORM, ("internal", "hybrid"), False, "Synced passkey"),
        (True, None, (), False, "Synced passkey"),
        (False, PLATFORM, ("internal",), True, "Built-in passkey"),
        (False, None, ("internal",), False, "Built-in passkey"),
        (False, None, (), False, "Passkey"),
    ],
)
def test_unknown_authenticator_gets_a_generic_name_by_kind(
    backup_eligible: bool,
    attachment: str | None,
    transports: tuple[str, ...],
    trusted: bool,
    name: str,
) -> None:
    described = _describe(
        UNKNOWN,
        backup_eligible=backup_eligible,
        attachment=attachment,
        transports=transports,
        trusted=trusted,
    )

    assert described.name == name


@pytest.mark.parametrize(
    ("attachment", "transports"),
    [(ROAMING, ("usb",)), (None, ("nfc",))],
)
def test_synced_passkey_is_never_named_a_security_key(
    attachment: str, transports: tuple[str, ...]
) -> None:
    # The module's own rule: "A synced passkey is never a security key". A backup
    # eligible credential from a roaming authenticator (a phone, a password manager's
    # hardware companion) must not read "Security key" in the passkey list.
    described = _describe(
        UNKNOWN, backup_eligible=True, attachment=attachment, transports=transports, trusted=True
    )

    assert described.is_security_key is False
    assert described.name != "Security key"


def test_the_unknown_aaguid_of_these_tests_is_unknown() -> None:
    assert UNKNOWN not in KNOWN_PROVIDERS
    assert default_store().for_aaguid(uuid.UUID(UNKNOWN).bytes) is None


def test_zero_aaguid_gets_a_generic_name() -> None:
    assert ZERO.hex() not in {a.replace("-", "") for a in KNOWN_PROVIDERS}
    assert _describe(ZERO, backup_eligible=True, attachment=PLATFORM).name == "Synced passkey"
    assert _describe(ZERO, attachment=ROAMING, transports=("usb",)).name == "Security key"


# --- Kinds ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attachment", "trusted", "backup_eligible", "is_security_key"),
    [
        (ROAMING, True, False, True),
        (ROAMING, False, False, False),
        (ROAMING, True, True, False),
        (PLATFORM, True, False, False),
        (None, True, False, False),
    ],
)
def test_security_key_is_roaming_trusted_and_not_synced(
    attachment: str | None, trusted: bool, backup_eligible: bool, is_security_key: bool
) -> None:
    described = _describe(attachment=attachment, trusted=trusted, backup_eligible=backup_eligible)

    assert described.is_security_key is is_security_key


@pytest.mark.parametrize("backup_eligible", [True, False])
def test_synced_is_backup_eligibility(backup_eligible: bool) -> None:
    assert _describe(backup_eligible=backup_eligible).is_synced is backup_eligible


@pytest.mark.parametrize(
    ("reported", "transports", "attachment"),
    [
        ("platform", ("usb",), PLATFORM),
        ("cross-platform", ("internal",), ROAMING),
        (None, ("usb",), ROAMING),
        (None, ("nfc",), ROAMING),
        (None, ("ble",), ROAMING),
        (None, ("smart-card",), ROAMING),
        (None, ("hybrid",), ROAMING),
        (None, ("internal",), PLATFORM),
        (None, (), ""),
        ("sideways", (), ""),
    ],
)
def test_attachment_is_the_reported_one_or_implied_by_transports(
    reported: str | None, transports: tuple[str, ...], attachment: str
) -> None:
    assert attachment_of(reported, transports) == attachment


# --- Through registration -----------------------------------------------------------------------


def _soft_registration(
    rp: RelyingParty, aaguid: str, *, backup_eligible: bool, transports: tuple[str, ...]
) -> AuthenticatorDescription:
    options, state = begin_registration(
        rp,
        user_handle=b"\x02" * 32,
        user_name="ada",
        user_display_name="Ada",
        now=NOW,
        timeout_seconds=TIMEOUT_SECONDS,
    )
    authenticator = SoftAuthenticator(
        aaguid=uuid.UUID(aaguid).bytes,
        backup_eligible=backup_eligible,
        backup_state=backup_eligible,
    )
    data = authenticator.create(options, ORIGIN, transports=transports)
    verified = finish_registration(rp, state, parse_registration_response(data), now=NOW + 1)
    return verified.authenticator


def test_google_password_manager_passkey_is_named_and_synced(rp: RelyingParty) -> None:
    described = _soft_registration(
        rp, GOOGLE_PASSWORD_MANAGER, backup_eligible=True, transports=("internal", "hybrid")
    )

    assert described.name == "Google Password Manager"
    assert described.is_synced is True
    assert described.attachment == PLATFORM
    assert described.is_security_key is False


def test_unknown_device_bound_platform_passkey_is_this_devices_passkey(rp: RelyingParty) -> None:
    described = _soft_registration(rp, UNKNOWN, backup_eligible=False, transports=("internal",))

    assert described.name == "Built-in passkey"
    assert described.is_synced is False


def test_real_yubikey_5_over_usb_is_a_named_security_key() -> None:
    verified = REAL["YUBIKEY_5_NFC"].register(
        today(), transports=["usb", "nfc"], authenticatorAttachment="cross-platform"
    )

    assert verified.authenticator == AuthenticatorDescription(
        name="YubiKey 5 Series with NFC",
        is_synced=False,
        attachment=ROAMING,
        is_security_key=True,
    )


def test_real_iphone_12_passkey_is_a_device_bound_platform_passkey() -> None:
    verified = REAL["IPHONE_12"].register(
        today(), transports=["internal"], authenticatorAttachment="platform"
    )

    assert verified.authenticator.attachment == PLATFORM
    assert verified.authenticator.is_security_key is False
    assert verified.authenticator.name == "Built-in passkey"


def test_attested_u2f_vector_over_usb_is_a_security_key() -> None:
    # §16.16: fido-u2f, BE clear, chained to the test CA; no metadata names it.
    verified = register(
        vector("fido-u2f-es256/registration"),
        transports=["usb"],
        authenticatorAttachment="cross-platform",
    )

    assert verified.authenticator.is_security_key is True
    assert verified.authenticator.name == "Security key"


def test_unattested_roaming_vector_is_not_a_security_key() -> None:
    verified = register(
        vector("fido-u2f-es256/registration"),
        trust_anchors=(),
        transports=["usb"],
        authenticatorAttachment="cross-platform",
    )

    assert verified.attestation_trusted is False
    assert verified.authenticator.is_security_key is False


def test_attested_but_backup_eligible_roaming_vector_is_not_a_security_key() -> None:
    # §16.7: packed full attestation, chained to the test CA, BE set.
    verified = register(
        vector("packed-es256/registration"),
        transports=["usb"],
        authenticatorAttachment="cross-platform",
    )

    assert verified.attestation_trusted is True
    assert verified.authenticator.is_synced is True
    assert verified.authenticator.is_security_key is False
