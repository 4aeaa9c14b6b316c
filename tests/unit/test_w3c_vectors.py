"""The W3C WebAuthn Level 3 test vectors (§16) through the real core, and one-field variants.

Every registration vector goes through ``parse_registration_response`` and
``finish_registration`` with the specification's test CA as a trust anchor and
the clock pinned inside its validity; every authentication vector through
``finish_authentication`` with the vector's credential public key. Each negative
variant changes one thing and expects the reason code of the step that catches it.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import pytest
from cryptography import x509
from fido2.webauthn import AuthenticatorData

from tests.support.authenticator import BE, BS, UV
from tests.unit.vectors import (
    AUTHENTICATIONS,
    BEFORE_W3C_CERTIFICATES,
    REGISTRATIONS,
    TEST_CA,
    TEST_CA_KEY,
    VECTORS,
    W3C_ORIGIN,
    W3C_RP_ID,
    W3C_TOP_ORIGIN,
    attestation_key,
    authenticate,
    client_data_hash,
    credential_key,
    decode_attestation,
    der,
    encode_attestation,
    flip_last_byte,
    hex_bytes,
    is_cross_origin,
    make_certificate,
    new_key,
    rebuilt,
    register,
    registration_state,
    sign_es256,
    vector,
    with_flags,
)
from threshold.core import errors
from threshold.core.ceremony import SUPPORTED_ALGORITHMS, RelyingParty

# fido2's AttestationType names, as the fixture records them, in the core's words.
TYPE_NAMES = {
    "NONE": "none",
    "SELF": "self",
    "BASIC": "basic",
    "ATT_CA": "attca",
    "ANON_CA": "anonca",
}

# fido2 rejects these two as they are; each has its own tests below.
TPM = "tpm-es256/registration"
ANDROID_KEY_DRAFT = "android-key-es256-draft-empty-authlists/registration"
ACCEPTED = [name for name in REGISTRATIONS if name not in (TPM, ANDROID_KEY_DRAFT)]
# §16.4 (crossOrigin true, no topOrigin) is refused by every configuration today (see the
# report on ceremony._check_client_data): the one-field variants start from the others.
CROSS_ORIGIN_WITHOUT_TOP = "none-es256-cross-origin/registration"
BASELINE = [name for name in ACCEPTED if name != CROSS_ORIGIN_WITHOUT_TOP]
# Registrations with an attestation certificate chained to the specification's test CA.
CHAINED = [
    name
    for name in ACCEPTED
    if VECTORS[name]["expected"]["attestation_type"] in ("BASIC", "ATT_CA", "ANON_CA")
]
# Registrations whose statement carries a signature (apple's has none).
SIGNED = [
    name
    for name in ACCEPTED
    if "sig" in decode_attestation(hex_bytes(VECTORS[name], "attestation_object_hex"))["attStmt"]
]


def _code(exc_info: pytest.ExceptionInfo[errors.CeremonyError]) -> str:
    return exc_info.value.code


def test_the_fixture_holds_every_section_16_vector() -> None:
    # 16.2-16.16: 15 registrations with their authentications, plus the draft android-key.
    assert len(REGISTRATIONS) == 16
    assert len(AUTHENTICATIONS) == 15
    assert {VECTORS[name]["expected"]["fmt"] for name in REGISTRATIONS} == {
        "none",
        "packed",
        "tpm",
        "android-key",
        "apple",
        "fido-u2f",
    }


# --- Registration vectors: accepted as the specification says --------------------------------


@pytest.mark.parametrize("name", ACCEPTED)
def test_registration_vector_is_accepted_with_its_expected_attributes(name: str) -> None:
    v = vector(name)
    expected = v["expected"]

    verified = register(v)

    assert verified.attestation_format == expected["fmt"]
    assert verified.attestation_type == TYPE_NAMES[expected["attestation_type"]]
    no_aaguid = str(uuid.UUID(bytes=bytes(16)))
    # A U2F authenticator has no AAGUID: the one in a fido-u2f registration is not kept.
    aaguid = no_aaguid if expected["fmt"] == "fido-u2f" else expected["aaguid"]
    assert str(uuid.UUID(bytes=verified.aaguid)) == aaguid
    assert verified.alg == expected["alg"]
    assert verified.sign_count == expected["sign_count"] == 0
    assert verified.credential_id == hex_bytes(v, "credential_id_hex")
    assert verified.public_key == hex_bytes(v, "credential_public_key_cose_hex")
    flags = expected["flags"]
    assert (verified.user_verified, verified.backup_eligible, verified.backup_state) == (
        flags["UV"],
        flags["BE"],
        flags["BS"],
    )
    auth_data = AuthenticatorData(hex_bytes(v, "authenticator_data_hex"))
    assert {flag: bool(auth_data.flags & AuthenticatorData.FLAG[flag]) for flag in flags} == flags


@pytest.mark.parametrize("name", CHAINED)
def test_attested_vector_is_trusted_through_the_specification_test_ca(name: str) -> None:
    # packed (full), android-key, apple and fido-u2f: their built-in anchors (FIDO
    # metadata, Google's and Apple's roots) do not cover the test CA, so it is given
    # as an extra anchor, as an organisation configures its own.
    verified = register(vector(name))

    assert verified.attestation_trusted is True
    assert verified.trust_anchor == "configured trust anchor"
    assert verified.untrusted_reason == ""


@pytest.mark.parametrize("name", CHAINED)
def test_attested_vector_is_untrusted_without_the_test_ca(name: str) -> None:
    verified = register(vector(name), trust_anchors=())

    assert verified.attestation_trusted is False
    assert verified.trust_anchor == ""
    assert verified.untrusted_reason


@pytest.mark.parametrize("name", CHAINED)
def test_attested_vector_is_untrusted_before_its_certificates_were_valid(name: str) -> None:
    verified = register(vector(name), now=BEFORE_W3C_CERTIFICATES)

    assert verified.attestation_trusted is False
    assert "not yet valid" in verified.untrusted_reason


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("none-es256/registration", "no attestation"),
        ("packed-self-es256/registration", "self attestation"),
    ],
)
def test_unattested_vector_is_accepted_but_untrusted(name: str, reason: str) -> None:
    verified = register(vector(name))

    assert verified.attestation_trusted is False
    assert verified.untrusted_reason == reason


def test_long_credential_id_vector_keeps_its_1023_byte_id() -> None:
    verified = register(vector("none-es256-long-credential-id/registration"))

    assert len(verified.credential_id) == 1023


def test_cross_origin_vectors_are_refused_by_a_relying_party_not_configured_for_iframes() -> None:
    plain = RelyingParty(id=W3C_RP_ID, name="Example", origins=frozenset({W3C_ORIGIN}))
    for name in ("none-es256-cross-origin/registration", "none-es256-top-origin/registration"):
        with pytest.raises(errors.CrossOriginNotAllowed):
            register(vector(name), rp=plain)


def test_top_origin_vector_is_refused_when_its_top_origin_is_not_configured() -> None:
    rp = RelyingParty(
        id=W3C_RP_ID,
        name="Example",
        origins=frozenset({W3C_ORIGIN}),
        allow_cross_origin=True,
        top_origins=frozenset({"https://portal.example.net"}),
    )
    with pytest.raises(errors.TopOriginNotAllowed):
        register(vector("none-es256-top-origin/registration"), rp=rp)


# --- The two vectors fido2 refuses -------------------------------------------------------------


def _tpm_with_clock_safe(safe: int) -> bytes:
    """The TPM vector with certInfo.clockInfo.safe set to ``safe`` and certInfo re-signed.

    TPMS_ATTEST (TPM 2.0 Part 2 §10.12.12): magic(4) type(2) qualifiedSigner(TPM2B)
    extraData(TPM2B) clockInfo{clock(8) resetCount(4) restartCount(4) safe(1)} ...
    """
    v = vector(TPM)
    parts = decode_attestation(hex_bytes(v, "attestation_object_hex"))
    statement = dict(parts["attStmt"])
    cert_info = bytearray(statement["certInfo"])
    offset = 6
    for _ in range(2):  # qualifiedSigner, extraData
        offset += 2 + int.from_bytes(cert_info[offset : offset + 2], "big")
    safe_at = offset + 16
    assert cert_info[safe_at] == 0x33, "the vector's clockInfo.safe"
    cert_info[safe_at] = safe
    statement["certInfo"] = bytes(cert_info)
    statement["sig"] = sign_es256(attestation_key(v), bytes(cert_info))
    return encode_attestation("tpm", statement, parts["authData"])


def test_tpm_vector_is_rejected_because_its_clock_safe_byte_is_not_a_boolean() -> None:
    # The §16.13 vector's certInfo has clockInfo.safe = 0x33. safe is a TPMI_YES_NO,
    # which TPM 2.0 Part 2 allows to be only 0 or 1, and fido2 parses it strictly.
    # WebAuthn §8.3 lets a verifier ignore clockInfo, so this is fido2 being stricter
    # than the spec, not a bad signature: the next test re-signs it with safe = 1.
    with pytest.raises(errors.AttestationInvalid) as exc_info:
        register(vector(TPM))

    assert _code(exc_info) == "attestation_invalid"
    assert "0x33" in exc_info.value.detail


def test_tpm_vector_resigned_with_a_boolean_clock_safe_byte_is_accepted_as_attca() -> None:
    verified = register(vector(TPM), attestation_object=_tpm_with_clock_safe(0x01))

    assert verified.attestation_format == "tpm"
    assert verified.attestation_type == "attca"
    assert verified.attestation_trusted is True
    assert str(uuid.UUID(bytes=verified.aaguid)) == vector(TPM)["expected"]["aaguid"]


def test_tpm_vector_resigned_with_a_boolean_clock_safe_byte_but_a_bad_signature_is_rejected() -> (
    None
):
    parts = decode_attestation(_tpm_with_clock_safe(0x01))
    statement = dict(parts["attStmt"], sig=flip_last_byte(parts["attStmt"]["sig"]))

    with pytest.raises(errors.AttestationInvalid):
        register(
            vector(TPM), attestation_object=encode_attestation("tpm", statement, parts["authData"])
        )


def test_draft_android_key_vector_with_empty_authorization_lists_is_rejected() -> None:
    # The earlier draft's key description has no purpose and no origin: §8.4 requires
    # origin = KM_ORIGIN_GENERATED and purpose = KM_PURPOSE_SIGN.
    with pytest.raises(errors.AttestationInvalid) as exc_info:
        register(vector(ANDROID_KEY_DRAFT))

    assert _code(exc_info) == "attestation_invalid"


# --- Negative variants: the attestation statement ----------------------------------------------


def _tpm_or(name: str) -> bytes | None:
    """The attestation object to start from: the TPM vector is first made valid."""
    return _tpm_with_clock_safe(0x01) if name == TPM else None


SIGNED_WITH_TPM = [*SIGNED, TPM]
CHAINED_WITH_TPM = [*CHAINED, TPM]


@pytest.mark.parametrize("name", SIGNED_WITH_TPM)
def test_registration_with_a_flipped_attestation_signature_byte_is_rejected(name: str) -> None:
    v = vector(name)
    start = _tpm_or(name)
    parts = decode_attestation(start or hex_bytes(v, "attestation_object_hex"))
    statement = dict(parts["attStmt"], sig=flip_last_byte(parts["attStmt"]["sig"]))
    tampered = encode_attestation(parts["fmt"], statement, parts["authData"])

    with pytest.raises(errors.AttestationInvalid) as exc_info:
        register(v, attestation_object=tampered)

    assert _code(exc_info) == "attestation_invalid"


@pytest.mark.parametrize("name", CHAINED_WITH_TPM)
def test_registration_with_another_vectors_attestation_certificate_is_rejected(name: str) -> None:
    v = vector(name)
    parts = decode_attestation(_tpm_or(name) or hex_bytes(v, "attestation_object_hex"))
    donor = (
        "packed-es384/registration"
        if name == "packed-es256/registration"
        else ("packed-es256/registration")
    )
    foreign_leaf = decode_attestation(hex_bytes(vector(donor), "attestation_object_hex"))[
        "attStmt"
    ]["x5c"][0]
    assert foreign_leaf != parts["attStmt"]["x5c"][0]
    statement = dict(parts["attStmt"], x5c=[foreign_leaf, *parts["attStmt"]["x5c"][1:]])

    with pytest.raises(errors.AttestationInvalid) as exc_info:
        register(
            v, attestation_object=encode_attestation(parts["fmt"], statement, parts["authData"])
        )

    assert _code(exc_info) == "attestation_invalid"


@pytest.mark.parametrize("fmt", ["packed-v2", "tpm2", "safetynet", "PACKED", ""])
@pytest.mark.parametrize("name", ["packed-es256/registration", "none-es256/registration"])
def test_registration_with_an_unknown_attestation_format_fails_closed(name: str, fmt: str) -> None:
    with pytest.raises(errors.AttestationFormatUnsupported) as exc_info:
        register(vector(name), attestation_object=rebuilt(vector(name), fmt=fmt))

    assert _code(exc_info) == "attestation_format_unsupported"


def test_registration_with_fmt_none_carrying_a_statement_is_rejected() -> None:
    v = vector("packed-es256/registration")

    with pytest.raises(errors.AttestationInvalid):
        register(v, attestation_object=rebuilt(v, fmt="none"))


@pytest.mark.parametrize(
    "member", ["a text string", {"a": 1}, 2**63 - 1], ids=["text", "map", "huge-integer"]
)
def test_packed_x5c_with_a_member_that_is_not_a_certificate_never_crashes(member: Any) -> None:
    # fido2 reads only x5c[0]; the rest of the chain arrives as whatever CBOR held.
    # It must end as a typed refusal (or an untrusted chain), never a TypeError,
    # OverflowError or an allocation sized by an integer from the request.
    v = vector("packed-es256/registration")
    leaf = decode_attestation(hex_bytes(v, "attestation_object_hex"))["attStmt"]["x5c"][0]

    outcome: Any
    try:
        outcome = register(v, attestation_object=rebuilt(v, x5c=[leaf, member]))
    except errors.CeremonyError as error:
        outcome = error
    if isinstance(outcome, errors.CeremonyError):
        assert outcome.code == "attestation_invalid"
    else:
        assert outcome.attestation_trusted is False


def test_packed_registration_without_its_signature_is_rejected() -> None:
    v = vector("packed-es256/registration")
    statement = decode_attestation(hex_bytes(v, "attestation_object_hex"))["attStmt"]
    del statement["sig"]

    with pytest.raises(errors.AttestationInvalid):
        register(v, attestation_object=rebuilt(v, att_stmt=statement))


# --- apple: the certified key must be the credential key (§8.8 step 4) ----------------------------

APPLE = "apple-es256/registration"
APPLE_NONCE_OID = x509.ObjectIdentifier("1.2.840.113635.100.8.2")


def _apple_attestation(certified_public_key: Any) -> bytes:
    """An apple attestation of the §16.15 registration, issued by the test CA.

    Re-signing the vector's own certificate would need Apple's key; the test CA
    stands in. The leaf carries the nonce extension SEQUENCE { [1] OCTET STRING
    SHA-256(authData || clientDataHash) } and certifies ``certified_public_key``.
    """
    v = vector(APPLE)
    auth_data = decode_attestation(hex_bytes(v, "attestation_object_hex"))["authData"]
    nonce = hashlib.sha256(auth_data + client_data_hash(v)).digest()
    extension = x509.UnrecognizedExtension(APPLE_NONCE_OID, b"\x30\x24\xa1\x22\x04\x20" + nonce)
    leaf = make_certificate(
        "Apple test credential",
        new_key(),
        issuer=(TEST_CA, TEST_CA_KEY),
        ca=False,
        public_key=certified_public_key,
        extensions=[(extension, False)],
    )
    return encode_attestation("apple", {"x5c": [der(leaf)]}, auth_data)


def test_apple_attestation_certifying_the_credential_key_is_accepted_and_trusted() -> None:
    # The control for the next test: the same construction, the right key.
    verified = register(
        vector(APPLE),
        attestation_object=_apple_attestation(credential_key(vector(APPLE)).public_key()),
    )

    assert verified.attestation_type == "anonca"
    assert verified.attestation_trusted is True


def test_apple_attestation_certifying_another_key_is_rejected() -> None:
    with pytest.raises(errors.AttestationInvalid) as exc_info:
        register(vector(APPLE), attestation_object=_apple_attestation(new_key().public_key()))

    assert _code(exc_info) == "attestation_invalid"
    assert "certified key" in exc_info.value.detail


def test_apple_attestation_with_the_nonce_of_other_client_data_is_rejected() -> None:
    v = vector(APPLE)
    # One more member in clientDataJSON: its hash, and so the expected nonce, change.
    other_client_data = hex_bytes(v, "client_data_json_hex")[:-1] + b',"extra":"x"}'

    with pytest.raises(errors.AttestationInvalid):
        register(v, client_data=other_client_data)


# --- Negative variants: client data, authenticator data, algorithm -----------------------------


def _edit_auth_data(name: str, edit: Any) -> bytes:
    v = vector(name)
    parts = decode_attestation(_tpm_or(name) or hex_bytes(v, "attestation_object_hex"))
    return encode_attestation(parts["fmt"], parts["attStmt"], edit(parts["authData"]))


@pytest.mark.parametrize("name", BASELINE)
def test_vector_answered_to_another_challenge_is_rejected(name: str) -> None:
    v = vector(name)
    other = flip_last_byte(hex_bytes(v, "challenge_hex"))

    with pytest.raises(errors.ChallengeMismatch) as exc_info:
        register(v, state=registration_state(v, challenge=other))

    assert _code(exc_info) == "challenge_mismatch"


@pytest.mark.parametrize("name", BASELINE)
def test_vector_from_an_origin_not_configured_is_rejected(name: str) -> None:
    v = vector(name)
    rp = RelyingParty(
        id=W3C_RP_ID,
        name="Example",
        origins=frozenset({"https://login.example.org"}),
        allow_cross_origin=True,
        top_origins=frozenset({W3C_TOP_ORIGIN}),
    )

    with pytest.raises(errors.OriginNotAllowed) as exc_info:
        register(v, rp=rp)

    assert _code(exc_info) == "origin_not_allowed"


@pytest.mark.parametrize("name", BASELINE)
def test_vector_with_another_rp_id_hash_is_rejected(name: str) -> None:
    v = vector(name)
    other_hash = hashlib.sha256(b"example.com").digest()

    with pytest.raises(errors.RpIdHashMismatch) as exc_info:
        register(v, attestation_object=_edit_auth_data(name, lambda a: other_hash + a[32:]))

    assert _code(exc_info) == "rp_id_hash_mismatch"


@pytest.mark.parametrize("name", BASELINE)
def test_vector_without_user_verification_is_rejected_when_it_is_required(name: str) -> None:
    v = vector(name)
    # Clearing UV is a no-op for the vectors that did not verify the user.
    attestation_object = _edit_auth_data(name, lambda a: with_flags(a, clear=UV))

    with pytest.raises(errors.UserNotVerified) as exc_info:
        register(
            v,
            attestation_object=attestation_object,
            state=registration_state(v, user_verification="required"),
        )

    assert _code(exc_info) == "user_not_verified"


@pytest.mark.parametrize("name", [n for n in BASELINE if VECTORS[n]["expected"]["flags"]["UV"]])
def test_vector_that_verified_the_user_is_accepted_when_it_is_required(name: str) -> None:
    v = vector(name)

    verified = register(v, state=registration_state(v, user_verification="required"))

    assert verified.user_verified is True


@pytest.mark.parametrize("name", BASELINE)
def test_vector_with_backup_state_but_not_backup_eligibility_is_rejected(name: str) -> None:
    v = vector(name)
    attestation_object = _edit_auth_data(name, lambda a: with_flags(a, set_=BS, clear=BE))

    with pytest.raises(errors.BackupStateInvalid) as exc_info:
        register(v, attestation_object=attestation_object)

    assert _code(exc_info) == "backup_state_without_eligibility"


@pytest.mark.parametrize("name", BASELINE)
def test_vector_whose_algorithm_was_not_offered_is_rejected(name: str) -> None:
    v = vector(name)
    offered = [alg for alg in SUPPORTED_ALGORITHMS if alg != v["expected"]["alg"]]

    with pytest.raises(errors.AlgorithmNotAllowed) as exc_info:
        register(v, state=registration_state(v, algorithms=offered))

    assert _code(exc_info) == "algorithm_not_allowed"


# --- Authentication vectors -----------------------------------------------------------------------


AUTHENTICATION_BASELINE = [
    name for name in AUTHENTICATIONS if name != "none-es256-cross-origin/authentication"
]


def _registration_of(name: str) -> dict[str, Any]:
    return vector(name.replace("/authentication", "/registration"))


@pytest.mark.parametrize("name", AUTHENTICATIONS)
def test_authentication_vector_is_accepted_with_the_registered_public_key(name: str) -> None:
    v = vector(name)
    # The registration vector's attested key is the one the assertion verifies with.
    assert hex_bytes(v, "credential_public_key_cose_hex") == hex_bytes(
        _registration_of(name), "credential_public_key_cose_hex"
    )

    verified = authenticate(v)

    assert verified.sign_count == 0
    assert verified.credential_id == hex_bytes(v, "credential_id_hex")
    assert verified.user_verified == v["expected"]["flags"]["UV"]
    assert verified.backup_state == v["expected"]["flags"]["BS"]


@pytest.mark.parametrize("name", AUTHENTICATION_BASELINE)
def test_authentication_vector_with_a_flipped_signature_byte_is_rejected(name: str) -> None:
    v = vector(name)

    with pytest.raises(errors.SignatureInvalid) as exc_info:
        authenticate(v, signature=flip_last_byte(hex_bytes(v, "signature_hex")))

    assert _code(exc_info) == "signature_invalid"


@pytest.mark.parametrize("name", AUTHENTICATION_BASELINE)
def test_authentication_vector_checked_with_another_credentials_key_is_rejected(name: str) -> None:
    v = vector(name)
    other = (
        "packed-es256/authentication"
        if name != "packed-es256/authentication"
        else ("none-es256/authentication")
    )

    with pytest.raises(errors.SignatureInvalid):
        authenticate(v, public_key=hex_bytes(vector(other), "credential_public_key_cose_hex"))


@pytest.mark.parametrize("name", AUTHENTICATION_BASELINE)
def test_authentication_vector_answered_to_another_challenge_is_rejected(name: str) -> None:
    v = vector(name)

    with pytest.raises(errors.ChallengeMismatch):
        authenticate(v, challenge=flip_last_byte(hex_bytes(v, "challenge_hex")))


@pytest.mark.parametrize("name", AUTHENTICATION_BASELINE)
def test_authentication_vector_whose_backup_eligibility_changed_is_rejected(name: str) -> None:
    v = vector(name)

    with pytest.raises(errors.BackupEligibilityChanged) as exc_info:
        authenticate(v, backup_eligible=not v["expected"]["flags"]["BE"])

    assert _code(exc_info) == "backup_eligibility_changed"


@pytest.mark.parametrize("name", AUTHENTICATION_BASELINE)
def test_authentication_vector_with_a_counter_behind_the_stored_one_is_rejected(name: str) -> None:
    # The vectors' counters are all 0; a stored non-zero counter means it went backwards.
    with pytest.raises(errors.SignCountRegressed) as exc_info:
        authenticate(vector(name), sign_count=1)

    assert _code(exc_info) == "sign_count_regressed"


@pytest.mark.parametrize(
    "name", [n for n in AUTHENTICATION_BASELINE if not VECTORS[n]["expected"]["flags"]["UV"]]
)
def test_authentication_vector_without_user_verification_is_rejected_when_required(
    name: str,
) -> None:
    with pytest.raises(errors.UserNotVerified):
        authenticate(vector(name), user_verification="required")


@pytest.mark.parametrize("name", [n for n in AUTHENTICATIONS if is_cross_origin(VECTORS[n])])
def test_cross_origin_authentication_vector_is_refused_without_iframe_configuration(
    name: str,
) -> None:
    plain = RelyingParty(id=W3C_RP_ID, name="Example", origins=frozenset({W3C_ORIGIN}))

    with pytest.raises(errors.CrossOriginNotAllowed):
        authenticate(vector(name), rp=plain)
