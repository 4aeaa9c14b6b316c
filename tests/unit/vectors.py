"""Attestation test data: the W3C WebAuthn L3 §16 vectors, real-device registrations, certificates.

- ``VECTORS``: tests/fixtures/w3c_webauthn_l3_vectors.json by name ("packed-es256/registration").
  They carry their private keys and the specification's test CA with its key, so a test can
  change one field and re-sign, or build a chain of its own under the same CA.
- ``REAL``: the genuine registrations the ``fido-mds`` package ships as test data (YubiKeys,
  a Surface's TPM, an iPhone 12, a Pixel 8a, a Nexus 5). Imported, never copied into this repo.
- ``make_certificate``: root, intermediate and leaf certificates with ``cryptography``.

Nothing is mocked: every helper ends in the core's own parse and finish functions.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from fido2 import cbor
from fido2.webauthn import AttestationObject
from fido_mds.tests import data as fido_mds_data

from threshold.core import ceremony
from threshold.core.ceremony import (
    SUPPORTED_ALGORITHMS,
    AuthenticationState,
    RegistrationState,
    RelyingParty,
    StoredCredential,
    VerifiedAuthentication,
    VerifiedRegistration,
)
from threshold.core.encoding import b64url_decode, b64url_encode
from threshold.core.metadata import MetadataStore

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

VECTORS: dict[str, dict[str, Any]] = {
    v["name"]: v for v in json.loads((FIXTURES / "w3c_webauthn_l3_vectors.json").read_text())
}
REGISTRATIONS = sorted(name for name, v in VECTORS.items() if v["kind"] == "registration")
AUTHENTICATIONS = sorted(name for name, v in VECTORS.items() if v["kind"] == "authentication")

W3C_RP_ID = "example.org"
W3C_ORIGIN = "https://example.org"
# The page that embeds the §16.5 vector's iframe.
W3C_TOP_ORIGIN = "https://example.com"

# The specification's test attestation CA (valid 2024-01-01 to 3024-01-01) and its key.
_ANCHORED = next(v for v in VECTORS.values() if v.get("trust_anchor_der_hex"))
TEST_CA = x509.load_der_x509_certificate(bytes.fromhex(_ANCHORED["trust_anchor_der_hex"]))
TEST_CA_KEY = ec.derive_private_key(
    int(_ANCHORED["trust_anchor_private_key_hex"], 16), ec.SECP256R1()
)

# The pinned clock for the vectors: inside the test CA's and every vector certificate's validity.
W3C_AT = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
W3C_NOW = W3C_AT.timestamp()
# Before any vector certificate was valid.
BEFORE_W3C_CERTIFICATES = datetime(2023, 6, 1, tzinfo=UTC).timestamp()

# A metadata store with nothing in it: trust then comes from format roots and given anchors only.
EMPTY_METADATA = MetadataStore([])


def vector(name: str) -> dict[str, Any]:
    return VECTORS[name]


def hex_bytes(v: Mapping[str, Any], field: str) -> bytes:
    return bytes.fromhex(v[field])


def is_cross_origin(v: Mapping[str, Any]) -> bool:
    return bool(v["expected"]["cross_origin"]) or v["expected"]["top_origin"] is not None


def rp_for(v: Mapping[str, Any]) -> RelyingParty:
    """example.org; configured for iframes only for the crossOrigin/topOrigin vectors."""
    if is_cross_origin(v):
        return RelyingParty(
            id=W3C_RP_ID,
            name="Example",
            origins=frozenset({W3C_ORIGIN}),
            allow_cross_origin=True,
            top_origins=frozenset({W3C_TOP_ORIGIN}),
        )
    return RelyingParty(id=W3C_RP_ID, name="Example", origins=frozenset({W3C_ORIGIN}))


# --- Attestation objects -----------------------------------------------------------------------


def decode_attestation(attestation_object: bytes) -> dict[str, Any]:
    decoded = cbor.decode(attestation_object)
    assert isinstance(decoded, dict)
    return decoded


def encode_attestation(fmt: str, att_stmt: Mapping[str, Any], auth_data: bytes) -> bytes:
    return cbor.encode({"fmt": fmt, "attStmt": dict(att_stmt), "authData": auth_data})


def rebuilt(
    v: Mapping[str, Any],
    *,
    fmt: str | None = None,
    att_stmt: Mapping[str, Any] | None = None,
    auth_data: bytes | None = None,
    **statement_changes: Any,
) -> bytes:
    """The vector's attestation object with one part replaced (or attStmt members changed)."""
    parts = decode_attestation(hex_bytes(v, "attestation_object_hex"))
    statement = dict(parts["attStmt"] if att_stmt is None else att_stmt)
    statement.update(statement_changes)
    return encode_attestation(
        parts["fmt"] if fmt is None else fmt,
        statement,
        parts["authData"] if auth_data is None else auth_data,
    )


def with_flags(auth_data: bytes, *, set_: int = 0, clear: int = 0) -> bytes:
    flags = (auth_data[32] | set_) & ~clear
    return auth_data[:32] + bytes([flags]) + auth_data[33:]


def flip_last_byte(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0x01])


def sign_es256(private_key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    return private_key.sign(message, ec.ECDSA(hashes.SHA256()))


def attestation_key(v: Mapping[str, Any]) -> ec.EllipticCurvePrivateKey:
    """The vector's attestation private key (every vector's attestation alg is ES256)."""
    return ec.derive_private_key(int(v["attestation_private_key_hex"], 16), ec.SECP256R1())


def credential_key(v: Mapping[str, Any]) -> ec.EllipticCurvePrivateKey:
    """The credential private key of an ES256 vector."""
    assert v["expected"]["alg"] == -7
    return ec.derive_private_key(int(v["credential_private_key_hex"], 16), ec.SECP256R1())


def client_data_hash(v: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(hex_bytes(v, "client_data_json_hex")).digest()


# --- Registration through the core --------------------------------------------------------------


def credential_json(credential_id: bytes, response: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": b64url_encode(credential_id),
        "rawId": b64url_encode(credential_id),
        "type": "public-key",
        "clientExtensionResults": {},
        "response": dict(response),
    }


def registration_json(
    v: Mapping[str, Any],
    *,
    attestation_object: bytes | None = None,
    client_data: bytes | None = None,
    transports: Sequence[str] | None = None,
    **members: Any,
) -> dict[str, Any]:
    """The vector as ``credential.toJSON()`` of a registration returns it.

    ``members`` are added at the top level (``authenticatorAttachment``, ...).
    """
    data = credential_json(
        hex_bytes(v, "credential_id_hex"),
        {
            "clientDataJSON": b64url_encode(
                client_data if client_data is not None else hex_bytes(v, "client_data_json_hex")
            ),
            "attestationObject": b64url_encode(
                attestation_object
                if attestation_object is not None
                else hex_bytes(v, "attestation_object_hex")
            ),
        },
    )
    if transports is not None:
        data["response"]["transports"] = list(transports)
    data.update(members)
    return data


def registration_state(
    v: Mapping[str, Any],
    *,
    user_verification: str = "preferred",
    algorithms: Sequence[int] = SUPPORTED_ALGORITHMS,
    challenge: bytes | None = None,
) -> RegistrationState:
    return RegistrationState(
        challenge=hex_bytes(v, "challenge_hex") if challenge is None else challenge,
        user_handle=b"user",
        user_verification=user_verification,
        algorithms=tuple(algorithms),
        expires_at=math.inf,
    )


def register(
    v: Mapping[str, Any],
    *,
    attestation_object: bytes | None = None,
    client_data: bytes | None = None,
    rp: RelyingParty | None = None,
    state: RegistrationState | None = None,
    now: float = W3C_NOW,
    trust_anchors: Sequence[x509.Certificate] = (TEST_CA,),
    metadata: MetadataStore = EMPTY_METADATA,
    transports: Sequence[str] | None = None,
    **members: Any,
) -> VerifiedRegistration:
    """Parse and finish the vector's registration with the real core."""
    response = ceremony.parse_registration_response(
        registration_json(
            v,
            attestation_object=attestation_object,
            client_data=client_data,
            transports=transports,
            **members,
        )
    )
    return ceremony.finish_registration(
        rp or rp_for(v),
        state or registration_state(v),
        response,
        now=now,
        metadata=metadata,
        trust_anchors=trust_anchors,
    )


# --- Authentication through the core -------------------------------------------------------------


def authentication_json(
    v: Mapping[str, Any],
    *,
    signature: bytes | None = None,
    authenticator_data: bytes | None = None,
) -> dict[str, Any]:
    return credential_json(
        hex_bytes(v, "credential_id_hex"),
        {
            "clientDataJSON": b64url_encode(hex_bytes(v, "client_data_json_hex")),
            "authenticatorData": b64url_encode(
                authenticator_data
                if authenticator_data is not None
                else hex_bytes(v, "authenticator_data_hex")
            ),
            "signature": b64url_encode(
                signature if signature is not None else hex_bytes(v, "signature_hex")
            ),
            "userHandle": None,
        },
    )


# The vectors carry no user handle: the ceremony is username-first, the account known.
OWNER = b"owner"


def authenticate(
    v: Mapping[str, Any],
    *,
    signature: bytes | None = None,
    public_key: bytes | None = None,
    sign_count: int = 0,
    backup_eligible: bool | None = None,
    challenge: bytes | None = None,
    user_verification: str = "preferred",
    rp: RelyingParty | None = None,
) -> VerifiedAuthentication:
    credential_id = hex_bytes(v, "credential_id_hex")
    response = ceremony.parse_authentication_response(authentication_json(v, signature=signature))
    state = AuthenticationState(
        challenge=hex_bytes(v, "challenge_hex") if challenge is None else challenge,
        user_verification=user_verification,
        expires_at=math.inf,
        allow_credentials=(credential_id,),
        user_handle=OWNER,
    )
    stored = StoredCredential(
        credential_id=credential_id,
        public_key=(
            hex_bytes(v, "credential_public_key_cose_hex") if public_key is None else public_key
        ),
        sign_count=sign_count,
        backup_eligible=(
            v["expected"]["flags"]["BE"] if backup_eligible is None else backup_eligible
        ),
        user_handle=OWNER,
    )
    return ceremony.finish_authentication(rp or rp_for(v), state, response, stored, now=W3C_NOW)


# --- Real devices (fido-mds's test data) ---------------------------------------------------------


def _lenient_b64url(text: str) -> bytes:
    compact = "".join(text.split())
    return base64.urlsafe_b64decode(compact + "=" * (-len(compact) % 4))


@dataclass(frozen=True)
class RealDevice:
    """A genuine registration; its challenge and origin come from its clientDataJSON."""

    name: str
    rp_id: str
    attestation_object: bytes
    client_data: bytes

    @property
    def client_data_fields(self) -> dict[str, Any]:
        fields = json.loads(self.client_data)
        assert isinstance(fields, dict)
        return fields

    @property
    def origin(self) -> str:
        return str(self.client_data_fields["origin"])

    @property
    def challenge(self) -> bytes:
        return b64url_decode(self.client_data_fields["challenge"])

    @property
    def credential_id(self) -> bytes:
        credential = AttestationObject(self.attestation_object).auth_data.credential_data
        assert credential is not None
        return bytes(credential.credential_id)

    def json(self, transports: Sequence[str] | None = None, **members: Any) -> dict[str, Any]:
        data = credential_json(
            self.credential_id,
            {
                "clientDataJSON": b64url_encode(self.client_data),
                "attestationObject": b64url_encode(self.attestation_object),
            },
        )
        if transports is not None:
            data["response"]["transports"] = list(transports)
        data.update(members)
        return data

    def register(
        self,
        at: datetime,
        *,
        metadata: MetadataStore | None = None,
        trust_anchors: Sequence[x509.Certificate] = (),
        transports: Sequence[str] | None = None,
        **members: Any,
    ) -> VerifiedRegistration:
        """Finish this registration at the instant ``at``, with the default FIDO metadata."""
        state = RegistrationState(
            challenge=self.challenge,
            user_handle=b"user",
            user_verification="preferred",
            algorithms=SUPPORTED_ALGORITHMS,
            expires_at=math.inf,
        )
        rp = RelyingParty(id=self.rp_id, name=self.name, origins=frozenset({self.origin}))
        return ceremony.finish_registration(
            rp,
            state,
            ceremony.parse_registration_response(self.json(transports, **members)),
            now=at.timestamp(),
            metadata=metadata,
            trust_anchors=trust_anchors,
        )


def _real(name: str, rp_id: str) -> RealDevice:
    attestation_object, client_data = getattr(fido_mds_data, name)
    return RealDevice(
        name, rp_id, _lenient_b64url(attestation_object), _lenient_b64url(client_data)
    )


# The RP IDs are the ones whose SHA-256 is each response's rpIdHash.
REAL = {
    "YUBIKEY_4": _real("YUBIKEY_4", "eduid.docker"),
    "YUBIKEY_5_NFC": _real("YUBIKEY_5_NFC", "eduid.docker"),
    "MICROSOFT_SURFACE_1796": _real("MICROSOFT_SURFACE_1796", "dev.eduid.se"),
    "IPHONE_12": _real("IPHONE_12", "dev.eduid.se"),
    "PIXEL_8A": _real("PIXEL_8A", "localhost"),
    "NEXUS_5": _real("NEXUS_5", "dev.eduid.se"),
    "NONE_ATTESTATION": _real("NONE_ATTESTATION", "dev.eduid.se"),
}


def today() -> datetime:
    return datetime.now(UTC)


# --- Certificates --------------------------------------------------------------------------------

YEAR = timedelta(days=365)
# Unless a test says otherwise, certificates are valid from before W3C_AT to long after today.
DEFAULT_NOT_BEFORE = datetime(2024, 1, 1, tzinfo=UTC)
DEFAULT_NOT_AFTER = datetime(2100, 1, 1, tzinfo=UTC)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def make_certificate(
    common_name: str,
    key: ec.EllipticCurvePrivateKey,
    *,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    ca: bool = True,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    subject: x509.Name | None = None,
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
    public_key: Any = None,
) -> x509.Certificate:
    """A certificate for ``key`` (or ``public_key``), self-signed unless ``issuer`` is given.

    CA certificates get basicConstraints CA=true and keyCertSign; others CA=false.
    Validity defaults to DEFAULT_NOT_BEFORE .. DEFAULT_NOT_AFTER.
    """
    name = subject or x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "AA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Threshold tests"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Authenticator Attestation"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    issuer_name, signing_key = (name, key) if issuer is None else (issuer[0].subject, issuer[1])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(public_key if public_key is not None else key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or DEFAULT_NOT_BEFORE)
        .not_valid_after(not_after or DEFAULT_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(signing_key, hashes.SHA256())


def der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(Encoding.DER)


def pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(Encoding.PEM)
