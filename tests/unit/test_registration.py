"""Registration, WebAuthn Level 3 §7.1: begin_registration, parse_registration_response,
finish_registration.

Every negative test takes a valid response from the software authenticator,
changes one thing, and expects the typed error for the step that catches it.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from fido2 import cbor
from fido2.cose import CoseKey

from tests.support.authenticator import (
    AT,
    BS,
    TEST_AAGUID,
    UP,
    UV,
    SoftAuthenticator,
    authenticator_data,
    sign,
)
from tests.unit.conftest import NOW, ORIGIN, RP_ID, TIMEOUT_SECONDS, TOP_ORIGIN
from tests.unit.edits import client_data, mutate, response, top
from threshold.core import errors
from threshold.core.ceremony import (
    DEFAULT_ALGORITHMS,
    MAX_CREDENTIAL_ID_BYTES,
    CredentialDescriptor,
    RegistrationState,
    RelyingParty,
    VerifiedRegistration,
    begin_registration,
    finish_registration,
    parse_registration_response,
)
from threshold.core.encoding import b64url_decode, b64url_encode

USER_HANDLE = bytes(range(1, 33))
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
ALGORITHMS = pytest.mark.parametrize("alg", [-7, -8, -257], ids=["ES256", "EdDSA", "RS256"])


# --- Helpers ------------------------------------------------------------------------------


@dataclass
class Registration:
    """A begun registration ceremony and the authenticator that will answer it."""

    rp: RelyingParty
    options: dict[str, Any]
    state: RegistrationState
    authenticator: SoftAuthenticator = field(default_factory=SoftAuthenticator)

    def respond(self, origin: str = ORIGIN, **overrides: Any) -> dict[str, Any]:
        """RegistrationResponseJSON, as ``credential.toJSON()`` returns it."""
        return self.authenticator.create(self.options, origin, **overrides)

    def client_data(self, **fields: Any) -> bytes:
        """This ceremony's clientDataJSON with ``fields`` changed; a value of None removes one."""
        data: dict[str, Any] = {
            "type": "webauthn.create",
            "challenge": self.options["challenge"],
            "origin": ORIGIN,
            "crossOrigin": False,
        }
        data.update(fields)
        return json.dumps({k: v for k, v in data.items() if v is not None}).encode()

    def finish(
        self, data: object, *, rp: RelyingParty | None = None, now: float = NOW
    ) -> VerifiedRegistration:
        return finish_registration(
            rp or self.rp, self.state, parse_registration_response(data), now=now
        )

    @property
    def private_key(self) -> Any:
        """The private key of the credential the authenticator created last."""
        return self.authenticator.credentials[-1].private_key


@pytest.fixture
def begin(rp: RelyingParty) -> Callable[..., Registration]:
    def begin(authenticator: SoftAuthenticator | None = None, **options: Any) -> Registration:
        creation_options, state = begin_registration(
            rp,
            user_handle=options.pop("user_handle", USER_HANDLE),
            user_name="ada@example.com",
            user_display_name="Ada Lovelace",
            now=NOW,
            timeout_seconds=TIMEOUT_SECONDS,
            **options,
        )
        return Registration(rp, creation_options, state, authenticator or SoftAuthenticator())

    return begin


@pytest.fixture
def registration(begin: Callable[..., Registration]) -> Registration:
    """A registration begun with the defaults: every algorithm, UV required."""
    return begin()


def cbor_map(raw: bytes) -> dict[Any, Any]:
    decoded = cbor.decode(raw)
    if not isinstance(decoded, dict):
        raise ValueError("not a CBOR map")
    return decoded


def attestation_object(data: dict[str, Any]) -> dict[str, Any]:
    return cbor_map(b64url_decode(data["response"]["attestationObject"]))


def with_attestation(data: dict[str, Any], **members: Any) -> dict[str, Any]:
    """A copy of ``data`` with attestation object ``members`` (fmt, attStmt, authData) replaced."""
    edited = copy.deepcopy(data)
    obj = attestation_object(data)
    obj.update(members)
    edited["response"]["attestationObject"] = b64url_encode(cbor.encode(obj))
    return edited


def with_public_key(data: dict[str, Any], cose_key: dict[int, Any]) -> dict[str, Any]:
    """A copy of ``data`` whose attested credential carries ``cose_key`` instead of its own."""
    auth_data = attestation_object(data)["authData"]
    # rpIdHash (32) | flags (1) | signCount (4) | aaguid (16) | L (2) | credentialId (L) | key
    length = int.from_bytes(auth_data[53:55], "big")
    return with_attestation(data, authData=auth_data[: 55 + length] + cbor.encode(cose_key))


def attested_key(data: dict[str, Any]) -> dict[int, Any]:
    """The COSE key in the attested credential data of ``data``."""
    auth_data = attestation_object(data)["authData"]
    length = int.from_bytes(auth_data[53:55], "big")
    return cbor_map(auth_data[55 + length :])


def resign_packed(
    data: dict[str, Any], private_key: Any, alg: int, **statement: Any
) -> dict[str, Any]:
    """A copy of ``data`` with a packed statement that ``private_key`` signed over its bytes."""
    auth_data = attestation_object(data)["authData"]
    client_data_hash = hashlib.sha256(b64url_decode(data["response"]["clientDataJSON"])).digest()
    signature = sign(alg, private_key, auth_data + client_data_hash)
    return with_attestation(data, fmt="packed", attStmt={"alg": alg, "sig": signature, **statement})


def attestation_certificate(private_key: Any) -> bytes:
    """A self-signed certificate meeting §8.2.1's packed attestation requirements (DER)."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "SE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Threshold Test Vendor"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Authenticator Attestation"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Threshold Test Authenticator"),
        ]
    )
    issued = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    algorithm = None if isinstance(private_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(1)
        .not_valid_before(issued)
        .not_valid_after(issued.replace(year=2044))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(private_key, algorithm)
    )
    return certificate.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def attestation_keys() -> dict[int, tuple[Any, bytes]]:
    """Attestation keys with their certificates, by COSE algorithm."""
    keys: dict[int, tuple[Any, bytes]] = {}
    for alg, key in (
        (-7, ec.generate_private_key(ec.SECP256R1())),
        (-8, ed25519.Ed25519PrivateKey.generate()),
    ):
        keys[alg] = (key, attestation_certificate(key))
    return keys


# --- Options and state ---------------------------------------------------------------------


def test_registration_options_carry_the_relying_party_and_user(registration: Registration) -> None:
    options = registration.options
    assert options["rp"] == {"id": RP_ID, "name": "Example"}
    assert options["user"] == {
        "id": b64url_encode(USER_HANDLE),
        "name": "ada@example.com",
        "displayName": "Ada Lovelace",
    }
    assert registration.state.user_handle == USER_HANDLE


def test_registration_challenge_is_random_and_at_least_16_bytes(
    begin: Callable[..., Registration],
) -> None:
    challenges = [begin().state.challenge for _ in range(20)]
    assert all(len(challenge) >= 16 for challenge in challenges)
    assert len(set(challenges)) == len(challenges)


def test_registration_options_challenge_is_the_state_challenge(registration: Registration) -> None:
    assert b64url_decode(registration.options["challenge"]) == registration.state.challenge


def test_registration_offers_the_default_algorithms_in_order(registration: Registration) -> None:
    assert registration.options["pubKeyCredParams"] == [
        {"type": "public-key", "alg": alg} for alg in DEFAULT_ALGORITHMS
    ]
    assert registration.state.algorithms == DEFAULT_ALGORITHMS


def test_registration_offers_only_the_given_algorithms(begin: Callable[..., Registration]) -> None:
    registration = begin(algorithms=[-8, -7])
    assert registration.options["pubKeyCredParams"] == [
        {"type": "public-key", "alg": -8},
        {"type": "public-key", "alg": -7},
    ]
    assert registration.state.algorithms == (-8, -7)


def test_registration_timeout_is_in_milliseconds_and_sets_expiry(
    registration: Registration,
) -> None:
    assert registration.options["timeout"] == TIMEOUT_SECONDS * 1000
    assert registration.state.expires_at == NOW + TIMEOUT_SECONDS


def test_registration_excludes_the_given_credentials(begin: Callable[..., Registration]) -> None:
    registration = begin(
        exclude_credentials=[
            CredentialDescriptor(b"\x01" * 16, ("usb", "nfc")),
            CredentialDescriptor(b"\x02" * 16),
        ]
    )
    assert registration.options["excludeCredentials"] == [
        {"type": "public-key", "id": b64url_encode(b"\x01" * 16), "transports": ["usb", "nfc"]},
        {"type": "public-key", "id": b64url_encode(b"\x02" * 16)},
    ]


def test_registration_asks_for_a_discoverable_verified_credential_by_default(
    registration: Registration,
) -> None:
    assert registration.options["authenticatorSelection"] == {
        "residentKey": "required",
        "requireResidentKey": True,
        "userVerification": "required",
    }
    assert registration.options["attestation"] == "direct"
    assert registration.options["extensions"] == {"credProps": True}
    assert registration.state.user_verification == "required"


def test_registration_authenticator_selection_follows_the_arguments(
    begin: Callable[..., Registration],
) -> None:
    registration = begin(
        resident_key="preferred",
        user_verification="preferred",
        authenticator_attachment="platform",
    )
    assert registration.options["authenticatorSelection"] == {
        "residentKey": "preferred",
        "requireResidentKey": False,
        "userVerification": "preferred",
        "authenticatorAttachment": "platform",
    }
    assert registration.state.user_verification == "preferred"


@pytest.mark.parametrize("user_handle", [b"", b"\x00" * 65], ids=["empty", "65-bytes"])
def test_begin_registration_refuses_a_user_handle_outside_1_to_64_bytes(
    rp: RelyingParty, user_handle: bytes
) -> None:
    with pytest.raises(ValueError, match="a user handle is 1 to 64 bytes"):
        begin_registration(
            rp,
            user_handle=user_handle,
            user_name="ada",
            user_display_name="Ada",
            now=NOW,
            timeout_seconds=TIMEOUT_SECONDS,
        )


def test_begin_registration_refuses_an_unknown_user_verification(rp: RelyingParty) -> None:
    with pytest.raises(ValueError, match="userVerification must be one of"):
        begin_registration(
            rp,
            user_handle=USER_HANDLE,
            user_name="ada",
            user_display_name="Ada",
            now=NOW,
            timeout_seconds=TIMEOUT_SECONDS,
            user_verification="always",
        )


def test_registration_state_survives_a_json_round_trip(registration: Registration) -> None:
    stored = json.loads(json.dumps(registration.state.to_json()))
    assert RegistrationState.from_json(stored) == registration.state


def test_registration_state_from_json_finishes_the_ceremony(registration: Registration) -> None:
    registration.state = RegistrationState.from_json(
        json.loads(json.dumps(registration.state.to_json()))
    )
    assert registration.finish(registration.respond()).alg == -7


# --- Happy paths ---------------------------------------------------------------------------


@ALGORITHMS
@pytest.mark.parametrize(
    ("attestation", "fmt", "attestation_type"),
    [("none", "none", "none"), ("packed-self", "packed", "self")],
    ids=["none", "packed-self"],
)
def test_registration_verifies_and_returns_every_field(
    registration: Registration, alg: int, attestation: str, fmt: str, attestation_type: str
) -> None:
    data = registration.respond(alg=alg, attestation=attestation)

    verified = registration.finish(data)

    credential = registration.authenticator.credentials[-1]
    assert verified.credential_id == credential.credential_id == b64url_decode(data["rawId"])
    assert verified.alg == alg
    assert verified.aaguid == TEST_AAGUID
    assert verified.sign_count == 0
    assert verified.transports == ("internal", "hybrid")
    assert verified.backup_eligible is False
    assert verified.backup_state is False
    assert verified.user_verified is True
    assert verified.attestation_format == fmt
    assert verified.attestation_type == attestation_type
    assert verified.authenticator_attachment == "platform"
    assert verified.is_discoverable is True
    # The stored public key is the authenticator's: it verifies what the private key signs.
    public_key = CoseKey.parse(cbor_map(verified.public_key))
    assert alg == public_key.ALGORITHM
    public_key.verify(b"a later assertion", sign(alg, credential.private_key, b"a later assertion"))


@pytest.mark.parametrize("alg", [-7, -8], ids=["ES256", "EdDSA"])
def test_registration_verifies_packed_basic_attestation(
    registration: Registration, attestation_keys: dict[int, tuple[Any, bytes]], alg: int
) -> None:
    key, certificate = attestation_keys[alg]
    data = resign_packed(registration.respond(), key, alg, x5c=[certificate])

    verified = registration.finish(data)

    assert verified.attestation_format == "packed"
    assert verified.attestation_type == "basic"


def test_registration_reports_the_backup_flags_of_a_synced_passkey(
    begin: Callable[..., Registration],
) -> None:
    registration = begin(SoftAuthenticator(backup_eligible=True, backup_state=True))
    verified = registration.finish(registration.respond())
    assert verified.backup_eligible is True
    assert verified.backup_state is True


def test_registration_reports_a_backup_eligible_passkey_not_yet_backed_up(
    begin: Callable[..., Registration],
) -> None:
    registration = begin(SoftAuthenticator(backup_eligible=True, backup_state=False))
    verified = registration.finish(registration.respond())
    assert verified.backup_eligible is True
    assert verified.backup_state is False


@pytest.mark.parametrize(
    ("extension_results", "is_discoverable"),
    [
        ({"credProps": {"rk": True}}, True),
        ({"credProps": {"rk": False}}, False),
        ({"credProps": {}}, None),
        ({"credProps": {"rk": "yes"}}, None),
        ({}, None),
        ("not an object", None),
    ],
    ids=["rk-true", "rk-false", "rk-absent", "rk-not-bool", "no-credProps", "garbled"],
)
def test_registration_is_discoverable_comes_from_cred_props(
    registration: Registration, extension_results: object, is_discoverable: bool | None
) -> None:
    data = registration.respond()
    data["clientExtensionResults"] = extension_results
    assert registration.finish(data).is_discoverable is is_discoverable


def test_registration_keeps_known_transports_once_in_order(registration: Registration) -> None:
    data = registration.respond(transports=("usb", "carrier-pigeon", "nfc", "usb", "hybrid"))
    assert registration.finish(data).transports == ("usb", "nfc", "hybrid")


def test_registration_without_transports_has_none(registration: Registration) -> None:
    data = registration.respond()
    del data["response"]["transports"]
    assert registration.finish(data).transports == ()


@pytest.mark.parametrize(
    ("attachment", "expected"),
    [("cross-platform", "cross-platform"), ("somewhere", None), (None, None)],
)
def test_registration_authenticator_attachment_is_kept_only_when_valid(
    registration: Registration, attachment: str | None, expected: str | None
) -> None:
    data = registration.respond()
    data["authenticatorAttachment"] = attachment
    assert registration.finish(data).authenticator_attachment == expected


def test_registration_accepts_an_origin_on_a_configured_subdomain(
    begin: Callable[..., Registration],
) -> None:
    rp = RelyingParty(
        id=RP_ID, name="Example", origins=frozenset({ORIGIN, "https://login.example.com"})
    )
    registration = begin()
    data = registration.respond(origin="https://login.example.com")
    assert registration.finish(data, rp=rp).alg == -7


# --- Expiry and client data (§7.1 steps 5-11) ----------------------------------------------


def test_registration_rejects_a_response_after_the_ceremony_expired(
    registration: Registration,
) -> None:
    data = registration.respond()
    with pytest.raises(errors.ChallengeExpired):
        registration.finish(data, now=registration.state.expires_at + 1)


def test_registration_accepts_a_response_just_before_expiry(registration: Registration) -> None:
    data = registration.respond()
    assert registration.finish(data, now=registration.state.expires_at - 1).alg == -7


def test_registration_rejects_client_data_of_an_assertion(registration: Registration) -> None:
    data = registration.respond(client_data=registration.client_data(type="webauthn.get"))
    with pytest.raises(errors.ClientDataTypeMismatch):
        registration.finish(data)


def test_registration_rejects_another_challenge(registration: Registration) -> None:
    other = b64url_encode(bytes(32))
    data = registration.respond(client_data=registration.client_data(challenge=other))
    with pytest.raises(errors.ChallengeMismatch):
        registration.finish(data)


def test_registration_rejects_a_response_to_an_earlier_ceremony(
    begin: Callable[..., Registration],
) -> None:
    earlier, later = begin(), begin()
    data = earlier.respond()
    with pytest.raises(errors.ChallengeMismatch):
        later.finish(data)


@pytest.mark.parametrize(
    "garble",
    [
        lambda challenge: challenge + "=",
        lambda challenge: challenge[:10] + "...." + challenge[10:],
        lambda challenge: challenge[:10] + "    " + challenge[10:],
        # 32 bytes take 43 characters; the last one's 2 low bits are unused.
        lambda challenge: challenge[:-1] + B64URL[B64URL.index(challenge[-1]) ^ 1],
    ],
    ids=["padded", "stray-dots", "stray-spaces", "non-canonical-last-char"],
)
def test_registration_rejects_a_challenge_that_is_not_the_exact_encoding(
    registration: Registration, garble: Callable[[str], str]
) -> None:
    """§7.1 step 8: C.challenge must equal the base64url encoding of the challenge.

    Each garbled string still decodes to the challenge's bytes under a lenient
    decoder (one that skips stray characters and unused bits), but none is the
    encoding that was issued. Refusing it as malformed would do as well.
    """
    challenge = registration.options["challenge"]
    garbled = garble(challenge)
    assert garbled != challenge
    data = registration.respond(client_data=registration.client_data(challenge=garbled))
    with pytest.raises((errors.ChallengeMismatch, errors.MalformedResponse)):
        registration.finish(data)


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "https://example.com:8443",
        "https://example.com:443",
        "http://example.com",
        "https://example.com/",
        "https://example.com/register",
        "https://login.example.com",
        "https://example.com.evil.example",
        "https://EXAMPLE.com",
        " https://example.com",
        "null",
        "",
    ],
)
def test_registration_rejects_an_origin_not_allowed(
    registration: Registration, origin: str
) -> None:
    data = registration.respond(origin=origin)
    with pytest.raises(errors.OriginNotAllowed):
        registration.finish(data)


def test_registration_rejects_a_cross_origin_iframe_by_default(registration: Registration) -> None:
    data = registration.respond(client_extra={"crossOrigin": True, "topOrigin": TOP_ORIGIN})
    with pytest.raises(errors.CrossOriginNotAllowed):
        registration.finish(data)


def test_registration_accepts_a_cross_origin_iframe_when_configured(
    registration: Registration, embeddable_rp: RelyingParty
) -> None:
    data = registration.respond(client_extra={"crossOrigin": True, "topOrigin": TOP_ORIGIN})
    assert registration.finish(data, rp=embeddable_rp).alg == -7


def test_registration_accepts_cross_origin_without_top_origin_when_configured(
    registration: Registration, embeddable_rp: RelyingParty
) -> None:
    # §7.1 steps 10-11: topOrigin is checked only when present (W3C vector §16.4 has none).
    data = registration.respond(client_extra={"crossOrigin": True})
    assert registration.finish(data, rp=embeddable_rp).alg == -7


@pytest.mark.parametrize(
    "client_extra",
    [
        {"crossOrigin": True, "topOrigin": "https://evil.example"},
        {"crossOrigin": True, "topOrigin": "https://portal.example.org/"},
    ],
    ids=["unknown-top-origin", "top-origin-trailing-slash"],
)
def test_registration_rejects_a_top_origin_not_allowed(
    registration: Registration, embeddable_rp: RelyingParty, client_extra: dict[str, Any]
) -> None:
    data = registration.respond(client_extra=client_extra)
    with pytest.raises(errors.TopOriginNotAllowed):
        registration.finish(data, rp=embeddable_rp)


def test_registration_rejects_a_top_origin_without_cross_origin(
    registration: Registration,
) -> None:
    data = registration.respond(client_extra={"topOrigin": TOP_ORIGIN})
    with pytest.raises(errors.CrossOriginNotAllowed):
        registration.finish(data)


# --- Authenticator data (§7.1 steps 13-20, 25) -----------------------------------------------


@pytest.mark.parametrize("rp_id", ["other.example", "login.example.com", "com", "example.com."])
def test_registration_rejects_an_rp_id_hash_for_another_rp_id(
    registration: Registration, rp_id: str
) -> None:
    data = registration.respond(rp_id=rp_id)
    with pytest.raises(errors.RpIdHashMismatch):
        registration.finish(data)


def test_registration_rejects_a_credential_without_user_presence(
    registration: Registration,
) -> None:
    data = registration.respond(flags=UV)
    with pytest.raises(errors.UserNotPresent):
        registration.finish(data)


def test_registration_rejects_a_credential_without_user_verification_when_required(
    registration: Registration,
) -> None:
    data = registration.respond(flags=UP)
    with pytest.raises(errors.UserNotVerified):
        registration.finish(data)


@pytest.mark.parametrize("user_verification", ["preferred", "discouraged"])
def test_registration_accepts_a_credential_without_user_verification_unless_required(
    begin: Callable[..., Registration], user_verification: str
) -> None:
    registration = begin(user_verification=user_verification)
    verified = registration.finish(registration.respond(flags=UP))
    assert verified.user_verified is False


def test_registration_rejects_backup_state_without_backup_eligibility(
    registration: Registration,
) -> None:
    data = registration.respond(flags=UP | UV | BS)
    with pytest.raises(errors.BackupStateInvalid):
        registration.finish(data)


def test_registration_rejects_authenticator_data_without_attested_credential_data(
    registration: Registration,
) -> None:
    # AT clear and nothing after signCount: well-formed, but no credential to register.
    data = with_attestation(registration.respond(), authData=authenticator_data(RP_ID, UP | UV, 0))
    with pytest.raises(errors.AttestedCredentialDataMissing):
        registration.finish(data)


def test_registration_rejects_attested_credential_data_with_the_at_flag_clear(
    registration: Registration,
) -> None:
    # The credential is there but the flag says it is not: the bytes do not parse.
    data = registration.respond()
    auth_data = bytearray(attestation_object(data)["authData"])
    auth_data[32] &= ~AT
    with pytest.raises(errors.MalformedResponse):
        parse_registration_response(with_attestation(data, authData=bytes(auth_data)))


def test_registration_rejects_a_raw_id_other_than_the_attested_credential_id(
    registration: Registration,
) -> None:
    data = registration.respond()
    data["id"] = data["rawId"] = b64url_encode(b"\x07" * 16)
    with pytest.raises(errors.CredentialIdMismatch):
        registration.finish(data)


def test_registration_rejects_a_credential_id_longer_than_1023_bytes(
    registration: Registration,
) -> None:
    data = registration.respond(credential_id=b"\x01" * (MAX_CREDENTIAL_ID_BYTES + 1))
    with pytest.raises(errors.CredentialIdTooLong):
        registration.finish(data)


def test_registration_accepts_a_credential_id_of_1023_bytes(registration: Registration) -> None:
    credential_id = b"\x01" * MAX_CREDENTIAL_ID_BYTES
    data = registration.respond(credential_id=credential_id)
    assert registration.finish(data).credential_id == credential_id


def test_registration_rejects_an_algorithm_not_offered(begin: Callable[..., Registration]) -> None:
    registration = begin(algorithms=[-7])
    data = registration.respond(alg=-8)
    with pytest.raises(errors.AlgorithmNotAllowed):
        registration.finish(data)


def test_registration_rejects_an_offered_algorithm_that_cannot_be_verified(
    begin: Callable[..., Registration],
) -> None:
    registration = begin(algorithms=[-7, -260])
    key = {1: 2, 3: -260, -1: 1, -2: b"\x01" * 32, -3: b"\x02" * 32}
    data = with_public_key(registration.respond(), key)
    with pytest.raises(errors.AlgorithmNotAllowed):
        registration.finish(data)


def test_registration_rejects_a_public_key_without_an_algorithm(
    registration: Registration,
) -> None:
    data = registration.respond()
    key = attested_key(data)
    del key[3]
    with pytest.raises(errors.MalformedResponse):
        parse_registration_response(with_public_key(data, key))


def _es256_key_off_the_curve(data: dict[str, Any]) -> dict[int, Any]:
    key = attested_key(data)
    y = int.from_bytes(key[-3], "big")
    key[-3] = ((y + 1) % 2**256).to_bytes(32, "big")
    return key


@pytest.mark.parametrize(
    ("alg", "spoil"),
    [
        (-7, _es256_key_off_the_curve),
        (-7, lambda data: {**attested_key(data), -1: 2}),  # ES256 on P-384
        (-7, lambda data: {**attested_key(data), -2: b"\x01" * 31}),
        (-7, lambda data: {k: v for k, v in attested_key(data).items() if k != -3}),
        (-8, lambda data: {**attested_key(data), -2: b"\x01" * 31}),
        (-8, lambda data: {**attested_key(data), -1: 7}),  # Ed448 under EdDSA/Ed25519 code
        (-257, lambda data: {**attested_key(data), -1: b"\x01"}),
    ],
    ids=[
        "es256-point-off-curve",
        "es256-wrong-curve",
        "es256-short-x",
        "es256-no-y",
        "eddsa-short-key",
        "eddsa-wrong-curve",
        "rs256-one-byte-modulus",
    ],
)
def test_registration_rejects_a_public_key_that_cannot_be_loaded(
    registration: Registration, alg: int, spoil: Callable[[dict[str, Any]], dict[int, Any]]
) -> None:
    data = registration.respond(alg=alg)
    data = with_public_key(data, spoil(data))
    with pytest.raises(errors.PublicKeyInvalid):
        registration.finish(data)


# --- Attestation statement (§7.1 steps 21-24) -----------------------------------------------


@pytest.mark.parametrize("fmt", ["x-unknown", "NONE", "packed ", ""])
def test_registration_rejects_an_unknown_attestation_format(
    registration: Registration, fmt: str
) -> None:
    data = with_attestation(registration.respond(), fmt=fmt)
    with pytest.raises(errors.AttestationFormatUnsupported):
        registration.finish(data)


def test_registration_rejects_packed_self_attestation_with_a_bad_signature(
    registration: Registration,
) -> None:
    data = registration.respond(attestation="packed-self")
    statement = attestation_object(data)["attStmt"]
    statement["sig"] = statement["sig"][:-1] + bytes([statement["sig"][-1] ^ 1])
    with pytest.raises(errors.AttestationInvalid):
        registration.finish(with_attestation(data, attStmt=statement))


def test_registration_rejects_packed_self_attestation_over_other_client_data(
    registration: Registration,
) -> None:
    # The statement was signed over this clientDataJSON; the response carries another.
    data = registration.respond(attestation="packed-self")
    data["response"]["clientDataJSON"] = b64url_encode(registration.client_data(extra="x"))
    with pytest.raises(errors.AttestationInvalid):
        registration.finish(data)


def test_registration_rejects_packed_self_attestation_signed_by_another_key(
    registration: Registration, private_keys: dict[int, Any]
) -> None:
    data = resign_packed(registration.respond(), private_keys[-7], -7)
    with pytest.raises(errors.AttestationInvalid):
        registration.finish(data)


def test_registration_rejects_packed_self_attestation_naming_another_algorithm(
    registration: Registration,
) -> None:
    data = registration.respond(attestation="packed-self")
    statement = {**attestation_object(data)["attStmt"], "alg": -257}
    with pytest.raises(errors.AttestationInvalid):
        registration.finish(with_attestation(data, attStmt=statement))


def test_registration_rejects_packed_basic_attestation_with_a_bad_signature(
    registration: Registration, attestation_keys: dict[int, tuple[Any, bytes]]
) -> None:
    key, certificate = attestation_keys[-7]
    data = resign_packed(registration.respond(), key, -7, x5c=[certificate])
    statement = attestation_object(data)["attStmt"]
    statement["sig"] = statement["sig"][:-1] + bytes([statement["sig"][-1] ^ 1])
    with pytest.raises(errors.AttestationInvalid):
        registration.finish(with_attestation(data, attStmt=statement))


@pytest.mark.parametrize(
    ("statement_alg", "certificate_alg"),
    [(-8, -7), (-7, -8), (-260, -7)],
    ids=["eddsa-alg-ec-certificate", "es256-alg-ed25519-certificate", "unknown-alg"],
)
def test_registration_rejects_packed_attestation_whose_alg_does_not_fit_the_certificate(
    registration: Registration,
    attestation_keys: dict[int, tuple[Any, bytes]],
    statement_alg: int,
    certificate_alg: int,
) -> None:
    key, certificate = attestation_keys[certificate_alg]
    data = resign_packed(registration.respond(), key, certificate_alg, x5c=[certificate])
    data = with_attestation(
        data, attStmt={**attestation_object(data)["attStmt"], "alg": statement_alg}
    )
    with pytest.raises(errors.AttestationInvalid):
        registration.finish(data)


def test_registration_rejects_packed_ecdaa_attestation(registration: Registration) -> None:
    # ECDAA is gone from WebAuthn Level 3; a statement naming it cannot verify.
    data = registration.respond(attestation="packed-self")
    statement = {**attestation_object(data)["attStmt"], "ecdaaKeyId": b"\x01" * 32}
    with pytest.raises(errors.AttestationInvalid):
        registration.finish(with_attestation(data, attStmt=statement))


@pytest.mark.parametrize(
    "statement",
    [{"alg": -7}, {"sig": b""}, {"x5c": []}],
    ids=["alg", "sig", "empty-x5c"],
)
def test_registration_rejects_none_attestation_with_a_statement(
    registration: Registration, statement: dict[str, Any]
) -> None:
    data = with_attestation(registration.respond(), attStmt=statement)
    with pytest.raises(errors.AttestationInvalid):
        registration.finish(data)


@pytest.mark.parametrize(
    "fmt", ["packed", "tpm", "android-key", "android-safetynet", "apple", "fido-u2f"]
)
@pytest.mark.parametrize(
    "statement",
    [
        {},
        {"alg": -7, "sig": 1},
        {"alg": -7, "sig": b"\x00" * 64, "x5c": [b"not a certificate"]},
        {"alg": -7, "sig": b"", "x5c": "not a list"},
        {"ver": "1", "response": b"not.a.jws"},
        {
            "ver": "2.0",
            "alg": -257,
            "x5c": [b"\x30\x00"],
            "sig": b"",
            "certInfo": b"",
            "pubArea": b"",
        },
    ],
    ids=[
        "empty",
        "sig-not-bytes",
        "garbage-certificate",
        "x5c-not-list",
        "safetynet-junk",
        "tpm-junk",
    ],
)
def test_registration_rejects_a_garbage_statement_in_every_supported_format(
    registration: Registration, fmt: str, statement: dict[str, Any]
) -> None:
    data = with_attestation(registration.respond(), fmt=fmt, attStmt=statement)
    with pytest.raises(errors.AttestationInvalid):
        registration.finish(data)


# --- Malformed input ---------------------------------------------------------------------------


def _raw_client_data(raw: bytes) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return response(clientDataJSON=b64url_encode(raw))


def _attestation(**members: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Replace (or, with ..., delete) members of the attestation object."""

    def edit(data: dict[str, Any]) -> dict[str, Any]:
        obj = attestation_object(data)
        top(**members)(obj)
        data["response"]["attestationObject"] = b64url_encode(cbor.encode(obj))
        return data

    return edit


def _raw_attestation(raw: bytes) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return response(attestationObject=b64url_encode(raw))


def _attestation_bytes(
    change: Callable[[bytes], bytes],
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Replace the attestation object's bytes with ``change(bytes)``."""

    def edit(data: dict[str, Any]) -> dict[str, Any]:
        raw = b64url_decode(data["response"]["attestationObject"])
        return _raw_attestation(change(raw))(data)

    return edit


def _auth_data(change: Callable[[bytes], Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Replace authData with ``change(authData)``."""

    def edit(data: dict[str, Any]) -> dict[str, Any]:
        return _attestation(authData=change(attestation_object(data)["authData"]))(data)

    return edit


def _nested_cbor(depth: int, header: bytes, leaf: bytes) -> bytes:
    return header * depth + leaf


def _attestation_map_with_statement(data: dict[str, Any], raw_statement: bytes) -> bytes:
    """The attestation object of ``data`` re-encoded with an attStmt given as raw CBOR."""
    auth_data = attestation_object(data)["authData"]
    return (
        b"\xa3"
        + cbor.encode("fmt")
        + cbor.encode("none")
        + cbor.encode("attStmt")
        + raw_statement
        + cbor.encode("authData")
        + cbor.encode(auth_data)
    )


MALFORMED_REGISTRATIONS: list[tuple[str, Callable[[dict[str, Any]], object], type[Exception]]] = [
    # The credential object.
    ("not-an-object", lambda data: "public-key", errors.MalformedResponse),
    ("null", lambda data: None, errors.MalformedResponse),
    ("number", lambda data: 42, errors.MalformedResponse),
    ("list", lambda data: [data], errors.MalformedResponse),
    ("json-text", json.dumps, errors.MalformedResponse),
    ("missing-type", top(type=...), errors.MalformedResponse),
    ("missing-response", top(response=...), errors.MalformedResponse),
    ("type-password", top(type="password"), errors.CredentialTypeInvalid),
    ("type-null", top(type=None), errors.CredentialTypeInvalid),
    ("type-list", top(type=["public-key"]), errors.CredentialTypeInvalid),
    ("response-string", top(response="ok"), errors.MalformedResponse),
    ("response-list", top(response=[]), errors.MalformedResponse),
    ("response-null", top(response=None), errors.MalformedResponse),
    ("id-standard-base64", top(id="ab+/cd", rawId="ab+/cd"), errors.MalformedResponse),
    ("id-with-space", top(id="abc d", rawId="abc d"), errors.MalformedResponse),
    ("id-number", top(id=12345), errors.MalformedResponse),
    ("raw-id-not-base64url", top(rawId="%%%"), errors.MalformedResponse),
    ("id-and-raw-id-missing", top(id=..., rawId=...), errors.MalformedResponse),
    ("id-and-raw-id-empty", top(id="", rawId=""), errors.MalformedResponse),
    ("id-differs-from-raw-id", top(id=b64url_encode(b"\x00" * 16)), errors.CredentialIdMismatch),
    # clientDataJSON.
    ("client-data-missing", response(clientDataJSON=...), errors.MalformedResponse),
    (
        "client-data-not-base64url",
        response(clientDataJSON="{not base64}"),
        errors.MalformedResponse,
    ),
    ("client-data-number", response(clientDataJSON=7), errors.MalformedResponse),
    ("client-data-not-json", _raw_client_data(b"type=webauthn.create"), errors.MalformedResponse),
    ("client-data-not-utf8", _raw_client_data(b'{"type":"\xff"}'), errors.MalformedResponse),
    ("client-data-array", _raw_client_data(b'["webauthn.create"]'), errors.MalformedResponse),
    ("client-data-string", _raw_client_data(b'"webauthn.create"'), errors.MalformedResponse),
    ("client-data-null", _raw_client_data(b"null"), errors.MalformedResponse),
    ("client-data-empty", _raw_client_data(b""), errors.MalformedResponse),
    (
        "client-data-deeply-nested",
        _raw_client_data(b"[" * 100_000 + b"]" * 100_000),
        errors.MalformedResponse,
    ),
    ("type-missing", client_data(type=...), errors.MalformedResponse),
    ("type-number", client_data(type=1), errors.MalformedResponse),
    ("challenge-missing", client_data(challenge=...), errors.MalformedResponse),
    ("challenge-number", client_data(challenge=12), errors.MalformedResponse),
    ("challenge-huge-number", client_data(challenge=2**62), errors.MalformedResponse),
    ("challenge-list", client_data(challenge=[1, 2, 3]), errors.MalformedResponse),
    ("challenge-null", client_data(challenge=None), errors.MalformedResponse),
    ("challenge-not-ascii", client_data(challenge="défi"), errors.MalformedResponse),
    ("origin-missing", client_data(origin=...), errors.MalformedResponse),
    ("origin-list", client_data(origin=[ORIGIN]), errors.MalformedResponse),
    ("cross-origin-string", client_data(crossOrigin="yes"), errors.MalformedResponse),
    ("cross-origin-number", client_data(crossOrigin=1), errors.MalformedResponse),
    ("cross-origin-null", client_data(crossOrigin=None), errors.MalformedResponse),
    ("top-origin-number", client_data(topOrigin=1), errors.MalformedResponse),
    # attestationObject.
    ("attestation-missing", response(attestationObject=...), errors.MalformedResponse),
    (
        "attestation-not-base64url",
        response(attestationObject="o2Nm+/=="),
        errors.MalformedResponse,
    ),
    ("attestation-not-cbor", _raw_attestation(b"\xff\xff"), errors.MalformedResponse),
    ("attestation-empty", _raw_attestation(b""), errors.MalformedResponse),
    ("attestation-json", _raw_attestation(b'{"fmt":"none"}'), errors.MalformedResponse),
    (
        "attestation-cbor-list",
        _raw_attestation(cbor.encode(["none", {}, b""])),
        errors.MalformedResponse,
    ),
    ("attestation-cbor-int", _raw_attestation(cbor.encode(7)), errors.MalformedResponse),
    ("attestation-cbor-text", _raw_attestation(cbor.encode("none")), errors.MalformedResponse),
    (
        "attestation-cbor-tag",
        _raw_attestation(b"\xc1\x1a\x00\x00\x00\x00"),
        errors.MalformedResponse,
    ),
    (
        "attestation-trailing-bytes",
        _attestation_bytes(lambda a: a + b"\x00"),
        errors.MalformedResponse,
    ),
    # authData comes last: its byte string now declares 5 more bytes than follow.
    ("attestation-truncated", _attestation_bytes(lambda a: a[:-5]), errors.MalformedResponse),
    ("fmt-missing", _attestation(fmt=...), errors.MalformedResponse),
    ("fmt-number", _attestation(fmt=1), errors.MalformedResponse),
    ("fmt-bytes", _attestation(fmt=b"none"), errors.MalformedResponse),
    ("att-stmt-missing", _attestation(attStmt=...), errors.MalformedResponse),
    ("att-stmt-list", _attestation(attStmt=[]), errors.MalformedResponse),
    ("att-stmt-bytes", _attestation(attStmt=b""), errors.MalformedResponse),
    ("auth-data-missing", _attestation(authData=...), errors.MalformedResponse),
    ("auth-data-text", _attestation(authData="authData"), errors.MalformedResponse),
    ("auth-data-map", _attestation(authData={}), errors.MalformedResponse),
    ("auth-data-negative-int", _attestation(authData=-1), errors.MalformedResponse),
    ("auth-data-huge-int", _attestation(authData=2**62), errors.MalformedResponse),
    ("auth-data-array-of-ints", _auth_data(list), errors.MalformedResponse),
    ("auth-data-empty", _attestation(authData=b""), errors.MalformedResponse),
    ("auth-data-36-bytes", _auth_data(lambda a: a[:36]), errors.MalformedResponse),
    ("auth-data-cut-in-aaguid", _auth_data(lambda a: a[:45]), errors.MalformedResponse),
    ("auth-data-cut-in-credential-id", _auth_data(lambda a: a[:60]), errors.MalformedResponse),
    ("auth-data-cut-in-public-key", _auth_data(lambda a: a[:-3]), errors.MalformedResponse),
    ("auth-data-trailing-bytes", _auth_data(lambda a: a + b"\x00"), errors.MalformedResponse),
    (
        "auth-data-ed-flag-without-extensions",
        _auth_data(lambda a: a[:32] + bytes([a[32] | 0x80]) + a[33:]),
        errors.MalformedResponse,
    ),
    (
        "auth-data-credential-id-length-too-long",
        _auth_data(lambda a: a[:53] + b"\xff\xff" + a[55:]),
        errors.MalformedResponse,
    ),
    (
        "public-key-not-a-map",
        _auth_data(lambda a: a[: 55 + 16] + cbor.encode([1, 2])),
        errors.MalformedResponse,
    ),
    (
        "public-key-unhashable-key",
        _auth_data(lambda a: a[: 55 + 16] + b"\xa1\x80\x00"),
        errors.MalformedResponse,
    ),
    (
        "attestation-deeply-nested-arrays",
        _raw_attestation(_nested_cbor(100_000, b"\x81", b"\x00")),
        errors.MalformedResponse,
    ),
    (
        "attestation-deeply-nested-maps",
        _raw_attestation(_nested_cbor(100_000, b"\xa1\x00", b"\x00")),
        errors.MalformedResponse,
    ),
    (
        "att-stmt-deeply-nested",
        lambda data: _raw_attestation(
            _attestation_map_with_statement(data, _nested_cbor(100_000, b"\x81", b"\x00"))
        )(data),
        errors.MalformedResponse,
    ),
    # transports.
    ("transports-string", response(transports="usb"), errors.MalformedResponse),
    ("transports-object", response(transports={"usb": True}), errors.MalformedResponse),
    ("transports-list-of-lists", response(transports=[["usb"]]), errors.MalformedResponse),
    ("transports-list-of-objects", response(transports=[{"usb": True}]), errors.MalformedResponse),
]


@pytest.mark.parametrize(
    ("garble", "expected"),
    [pytest.param(garble, expected, id=name) for name, garble, expected in MALFORMED_REGISTRATIONS],
)
def test_parse_registration_response_rejects_malformed_input(
    registration: Registration,
    garble: Callable[[dict[str, Any]], object],
    expected: type[Exception],
) -> None:
    garbled = garble(registration.respond())
    with pytest.raises(expected):
        parse_registration_response(garbled)


def _fuzzed_registration(rng: random.Random, data: dict[str, Any]) -> dict[str, Any]:
    fuzzed = copy.deepcopy(data)
    response = fuzzed["response"]
    for _ in range(rng.randrange(1, 4)):
        target = rng.choice(["clientDataJSON", "attestationObject", "authData", "attStmt", "id"])
        if target in ("clientDataJSON", "attestationObject"):
            response[target] = b64url_encode(mutate(rng, b64url_decode(response[target])))
        elif target == "id":
            fuzzed["id"] = fuzzed["rawId"] = b64url_encode(mutate(rng, b64url_decode(fuzzed["id"])))
        else:
            try:
                obj = cbor_map(b64url_decode(response["attestationObject"]))
                if target == "authData":
                    obj["authData"] = mutate(rng, obj["authData"])
                else:
                    obj["attStmt"]["sig"] = mutate(rng, obj["attStmt"]["sig"])
            except Exception:  # noqa: BLE001 - an earlier edit broke it; edit the bytes instead
                response["attestationObject"] = b64url_encode(
                    mutate(rng, b64url_decode(response["attestationObject"]))
                )
                continue
            response["attestationObject"] = b64url_encode(cbor.encode(obj))
    return fuzzed


def test_fuzzed_registration_responses_raise_only_ceremony_errors(
    registration: Registration, memory_ceiling: None
) -> None:
    valid = registration.respond(alg=-7, attestation="packed-self")
    rng = random.Random(20250613)
    outcomes: dict[str, int] = {}
    escaped: list[str] = []
    for iteration in range(400):
        fuzzed = _fuzzed_registration(rng, valid)
        try:
            registration.finish(fuzzed)
            outcome = "accepted"
        except errors.CeremonyError as exc:
            outcome = exc.code
        except BaseException as exc:  # noqa: BLE001 - exactly what this test looks for
            outcome = f"escaped {type(exc).__name__}"
            escaped.append(
                f"#{iteration} {type(exc).__name__}: {exc!r:.200} in {json.dumps(fuzzed)}"
            )
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert not escaped, "\n".join(escaped[:5])
    # The loop reaches past the parser: several different checks fail.
    assert outcomes.get("malformed_response", 0) < 400
    assert len(outcomes) >= 4, outcomes


JSON_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**62,
    10**400,
    1.5,
    "",
    "x",
    "public-key",
    [],
    {},
    [[]],
    [{}],
    {"a": []},
    ["usb"],
    "\u0000",
]
CBOR_VALUES: list[Any] = [
    0,
    -1,
    2**62,
    2**64 - 1,
    True,
    b"",
    b"\x00" * 37,
    "",
    "none",
    [],
    {},
    [[]],
    {1: 2},
    [b"\x30\x00"],
]


def _reshaped_registration(rng: random.Random, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A copy of ``data`` with one member, anywhere in it, replaced by a value of another shape."""
    reshaped = copy.deepcopy(data)
    layer = rng.choice(["credential", "response", "clientData", "attestation", "attStmt"])
    if layer == "credential":
        name, value = rng.choice([*reshaped, "x"]), rng.choice(JSON_VALUES)
        reshaped[name] = value
    elif layer == "response":
        name, value = rng.choice([*reshaped["response"], "x"]), rng.choice(JSON_VALUES)
        reshaped["response"][name] = value
    elif layer == "clientData":
        name = rng.choice(["type", "challenge", "origin", "crossOrigin", "topOrigin"])
        value = rng.choice(JSON_VALUES)
        client_data(**{name: value})(reshaped)
    elif layer == "attestation":
        name, value = rng.choice(["fmt", "attStmt", "authData"]), rng.choice(CBOR_VALUES)
        _attestation(**{name: value})(reshaped)
    else:
        name, value = rng.choice(["alg", "sig", "x5c", "ecdaaKeyId"]), rng.choice(CBOR_VALUES)
        statement = {**attestation_object(reshaped)["attStmt"], name: value}
        _attestation(attStmt=statement)(reshaped)
    return f"{layer}.{name} = {value!r:.40}", reshaped


def test_reshaped_registration_responses_raise_only_ceremony_errors(
    registration: Registration, memory_ceiling: None
) -> None:
    """Members of the wrong JSON or CBOR type, anywhere: a typed error, never a crash."""
    valid = registration.respond(alg=-7, attestation="packed-self")
    rng = random.Random(20250614)
    escaped: set[str] = set()
    for _ in range(300):
        change, reshaped = _reshaped_registration(rng, valid)
        try:
            registration.finish(reshaped)
        except errors.CeremonyError:
            pass
        except BaseException as exc:  # noqa: BLE001 - exactly what this test looks for
            escaped.add(f"{type(exc).__name__} after {change}")
    assert not escaped, "\n".join(sorted(escaped))


# --- Hints (L3 §5.4 PublicKeyCredentialCreationOptions.hints) -------------------------------------


def test_options_carry_hints_only_when_given(begin):
    assert "hints" not in begin().options
    assert begin(hints=("security-key",)).options["hints"] == ["security-key"]
    assert begin(hints=("hybrid", "client-device")).options["hints"] == ["hybrid", "client-device"]


def test_unknown_hints_are_a_programming_error(begin):
    with pytest.raises(ValueError, match="hints"):
        begin(hints=("toaster",))
