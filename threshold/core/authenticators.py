"""What a passkey is, in the words people use: its authenticator's name and kind.

The name comes from FIDO metadata when the AAGUID is there; otherwise from the
well-known passkey providers below, which metadata lacks (confirmed against the
community "passkey-authenticator-aaguids" list; see tests/fixtures/README.md);
otherwise from the kind: "Security key", "Built-in passkey", ...
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from threshold.core.metadata import MetadataEntry
from threshold.core.vocabulary import Attachment, Transport

# AAGUID -> name, for passkey providers that FIDO metadata does not describe.
KNOWN_PROVIDERS: dict[str, str] = {
    "fbfc3007-154e-4ecc-8c0b-6e020557d7bd": "iCloud Keychain",
    "dd4ec289-e01d-41c9-bb89-70fa845d4bf2": "iCloud Keychain (Managed)",
    "ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4": "Google Password Manager",
    "adce0002-35bc-c60a-648b-0b25f1f05503": "Chrome on Mac",
    "b5397666-4885-aa6b-cebf-e52262a439a2": "Chromium Browser",
    "771b48fd-d3d4-4f74-9232-fc157ab0507a": "Edge on Mac",
    "08987058-cadc-4b81-b6e1-30de50dcbe96": "Windows Hello",
    "9ddd1817-af5a-4672-a2b9-3e3dd95000a9": "Windows Hello",
    "6028b017-b1d4-4c02-b4b3-afcdafc96bb2": "Windows Hello",
    "d3452668-01fd-4c12-926c-83a4204853aa": "Microsoft Password Manager",
    "de1e552d-db1d-4423-a619-566b625cdc84": "Microsoft Authenticator",
    "90a3ccdf-635c-4729-a248-9b709135078f": "Microsoft Authenticator",
    "53414d53-554e-4700-0000-000000000000": "Samsung Pass",
    "bada5566-a7aa-401f-bd96-45619a55120d": "1Password",
    "d548826e-79b4-db40-a3d8-11116f7e8349": "Bitwarden",
    "531126d6-e717-415c-9320-3d9aa6981239": "Dashlane",
    "fdb141b2-5d84-443e-8a35-4698c205a502": "KeePassXC",
    "50726f74-6f6e-5061-7373-50726f746f6e": "Proton Pass",
    "b84e4048-15dc-4dd0-8640-f4f60813c8af": "NordPass",
    "f3809540-7f14-49c1-a8b3-8f813b225541": "Enpass",
    "0ea242b4-43c4-4a1b-8b17-dd6d0b6baec6": "Keeper",
    "b78a0a55-6ef8-d246-a042-ba0f6d55050c": "LastPass",
    "de503f9c-21a4-4f76-b4b7-558eb55c6f89": "Devolutions",
}


@dataclass(frozen=True)
class AuthenticatorDescription:
    name: str
    is_synced: bool  # backup eligible: the passkey can live in a cloud keychain
    attachment: str  # "platform", "cross-platform" or "" when unknown
    is_security_key: bool  # roaming and hardware-attested


def attachment_of(reported: str | None, transports: Sequence[str]) -> str:
    """The attachment the client reported, or what the transports imply (§5.8.4)."""
    if reported is not None and reported in tuple(Attachment):
        return Attachment(reported)
    kinds = set(transports)
    # "internal" means the authenticator is built into this device; a platform
    # passkey that can also be used from a phone adds "hybrid".
    if Transport.INTERNAL in kinds:
        return Attachment.PLATFORM
    if kinds & (set(Transport) - {Transport.INTERNAL}):
        return Attachment.CROSS_PLATFORM
    return ""


def looks_like_security_key(
    attachment: str, backup_eligible: bool, transports: Sequence[str]
) -> bool:
    """Roaming, device-bound and not a phone: a security key as people see it, attested or not."""
    return (
        attachment == Attachment.CROSS_PLATFORM
        and Transport.HYBRID not in transports
        and not backup_eligible
    )


def describe(
    aaguid: bytes,
    *,
    metadata: MetadataEntry | None,
    backup_eligible: bool,
    authenticator_attachment: str | None,
    transports: Sequence[str],
    attestation_trusted: bool,
) -> AuthenticatorDescription:
    attachment = attachment_of(authenticator_attachment, transports)
    # Hardware-attested: the chain reached an anchor for an authenticator that
    # does not sync its keys. A synced passkey is never a security key.
    is_security_key = (
        attachment == Attachment.CROSS_PLATFORM and attestation_trusted and not backup_eligible
    )
    name = ""
    if metadata is not None:
        name = metadata.description
    elif aaguid != bytes(16):
        name = KNOWN_PROVIDERS.get(str(uuid.UUID(bytes=aaguid)), "")
    if not name:
        if is_security_key or looks_like_security_key(attachment, backup_eligible, transports):
            name = "Security key"
        elif attachment == Attachment.CROSS_PLATFORM:
            name = "Passkey on a phone or tablet"
        elif backup_eligible:
            name = "Synced passkey"
        elif attachment == Attachment.PLATFORM:
            name = "Built-in passkey"
        else:
            name = "Passkey"
    return AuthenticatorDescription(
        name=name,
        is_synced=backup_eligible,
        attachment=attachment,
        is_security_key=is_security_key,
    )
