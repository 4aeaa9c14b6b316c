"""Attestation: verify the statement, then decide whether it is trusted (§7.1 steps 21-24).

Statement signatures are checked by fido2's verifiers (fido-mds supplies
android-key, which fido2 lacks). What they leave out is done here:

- Trust. fido2 only checks that each certificate signs the next. Here the chain
  is *built* by OpenSSL (pyOpenSSL) to an anchor chosen by
  format and metadata — never "the last certificate is the root" — with
  validity checked at a clock the caller passes in.
- Metadata status. An authenticator whose FIDO metadata reports REVOKED,
  USER_VERIFICATION_BYPASS or a *_COMPROMISE status is refused.
- apple: the credential public key must be the one in the leaf certificate
  (§8.8 step 5), which fido2 does not compare.

An attestation that cannot be traced to an anchor is not an error: synced
passkeys send none. It is recorded as untrusted, and policy decides.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

# From their own modules: fido2.attestation re-exports them without __all__, which mypy --strict
# (no implicit re-export) does not follow.
from fido2.attestation.android import AndroidSafetynetAttestation
from fido2.attestation.apple import AppleAttestation
from fido2.attestation.base import Attestation, NoneAttestation, UnsupportedType
from fido2.attestation.base import AttestationType as Fido2AttestationType
from fido2.attestation.packed import PackedAttestation
from fido2.attestation.tpm import TpmAttestation
from fido2.attestation.u2f import FidoU2FAttestation
from fido2.webauthn import AttestationObject
from OpenSSL import crypto

from threshold.core import errors
from threshold.core.encoding import b64url_decode
from threshold.core.metadata import MetadataEntry, MetadataStore, apple_roots, google_roots
from threshold.core.vocabulary import AttestationFormat, AttestationType


def _android_key() -> type[Attestation]:
    # Imported when first needed: fido_mds's package loads pydantic models of the whole
    # metadata format with it, about 10 MB in every worker that never sees this format.
    from fido_mds.models.attestation import AndroidKeyAttestation  # noqa: PLC0415

    verifier: type[Attestation] = AndroidKeyAttestation
    return verifier


def _loaded(verifier: type[Attestation]) -> Callable[[], type[Attestation]]:
    return lambda: verifier


# Every attestation format, with how to get its verifier.
FORMATS: dict[str, Callable[[], type[Attestation]]] = {
    **{
        cls.FORMAT: _loaded(cls)
        for cls in (
            NoneAttestation,
            PackedAttestation,
            TpmAttestation,
            AndroidSafetynetAttestation,
            AppleAttestation,
            FidoU2FAttestation,
        )
    },
    "android-key": _android_key,
}

_TYPE_NAMES = {
    Fido2AttestationType.BASIC: AttestationType.BASIC,
    Fido2AttestationType.SELF: AttestationType.SELF,
    Fido2AttestationType.ATT_CA: AttestationType.ATT_CA,
    Fido2AttestationType.ANON_CA: AttestationType.ANON_CA,
    Fido2AttestationType.NONE: AttestationType.NONE,
}


@dataclass(frozen=True)
class AttestationVerdict:
    fmt: str
    attestation_type: AttestationType
    trusted: bool
    # Which anchor the chain was built to, e.g. "FIDO MDS: YubiKey 5 Series with NFC".
    trust_anchor: str
    # Why the attestation is not trusted (empty when trusted), for support staff.
    untrusted_reason: str
    metadata: MetadataEntry | None
    # Whether the chain proves the AAGUID (it reached that authenticator's own
    # metadata roots, or an anchor the organisation configured).
    aaguid_attested: bool


def verify_statement(
    attestation_object: AttestationObject, client_data_hash: bytes
) -> tuple[AttestationType, list[bytes]]:
    """Verify the attestation statement's signature; return its type and trust path."""
    fmt = attestation_object.fmt
    loader = FORMATS.get(fmt)
    if loader is None:
        raise errors.AttestationFormatUnsupported(f"fmt {fmt!r}")
    try:
        result = loader()().verify(
            attestation_object.att_stmt, attestation_object.auth_data, client_data_hash
        )
    except UnsupportedType as exc:
        raise errors.AttestationFormatUnsupported(str(exc)) from exc
    except Exception as exc:  # fido2 also raises NotImplementedError, AssertionError
        raise errors.AttestationInvalid(f"{fmt}: {exc!r}") from exc
    if not all(isinstance(der, bytes) for der in result.trust_path):
        raise errors.AttestationInvalid(f"{fmt}: x5c holds something that is not a certificate")
    trust_path = list(result.trust_path)
    if fmt == AttestationFormat.APPLE:
        _check_apple_key(trust_path, attestation_object)
    return _TYPE_NAMES.get(result.attestation_type, AttestationType.NONE), trust_path


def _check_apple_key(trust_path: list[bytes], attestation_object: AttestationObject) -> None:
    credential = attestation_object.auth_data.credential_data
    try:
        leaf = x509.load_der_x509_certificate(trust_path[0])
        certified = leaf.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        assert credential is not None  # noqa: S101 - registration parsing requires it
        presented = _cose_public_bytes(credential.public_key)
    except Exception as exc:
        raise errors.AttestationInvalid(f"apple: {exc!r}") from exc
    if certified != presented:
        raise errors.AttestationInvalid("apple: the credential key is not the certified key")


# COSE key parameters (RFC 9052 §7.1, RFC 9053 §7.1.1): kty and its EC2 value, crv, x, y.
_KTY, _KTY_EC2, _CRV, _X, _Y = 1, 2, -1, -2, -3


def _cose_public_bytes(cose: Mapping[int, Any]) -> bytes:
    curves = {1: ec.SECP256R1(), 2: ec.SECP384R1(), 3: ec.SECP521R1()}
    if cose.get(_KTY) != _KTY_EC2 or cose.get(_CRV) not in curves:
        raise ValueError("apple attestation requires an EC2 credential key")
    numbers = ec.EllipticCurvePublicNumbers(
        int.from_bytes(cose[_X], "big"), int.from_bytes(cose[_Y], "big"), curves[cose[_CRV]]
    )
    return numbers.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _metadata_for(
    fmt: str, aaguid: bytes, trust_path: Sequence[bytes], store: MetadataStore
) -> MetadataEntry | None:
    if fmt == AttestationFormat.FIDO_U2F and trust_path:
        # U2F authenticators have no AAGUID: MDS keys them by the attestation
        # certificate's subject key identifier.
        try:
            leaf = x509.load_der_x509_certificate(trust_path[0])
            ski = x509.SubjectKeyIdentifier.from_public_key(leaf.public_key()).digest
        except ValueError:
            return None
        return store.for_key_identifier(ski)
    if aaguid == bytes(16):
        return None
    return store.for_aaguid(aaguid)


def chain_verifies(
    trust_path: Sequence[bytes], anchors: Sequence[x509.Certificate], at: datetime
) -> str:
    """Build a path from the leaf to one of ``anchors``, valid at ``at``; "" or why not.

    OpenSSL's path building (through pyOpenSSL), not ``cryptography``'s Web PKI
    verifier: attestation PKIs are not the Web PKI, and genuine authenticators
    fail its rules (Yubico's RSA signatures omit the NULL parameters; Windows
    Hello marks certificate policies critical). OpenSSL still requires every
    issuer to be a CA and every certificate to be valid at ``at``, and trusts
    only the anchors given: x5c certificates are untrusted intermediates, and a
    root included in x5c proves nothing. MDS anchors need not be self-signed,
    hence PARTIAL_CHAIN.
    """
    try:
        certificates = [x509.load_der_x509_certificate(der) for der in trust_path]
    except ValueError as exc:
        return f"unreadable certificate: {exc}"
    store = crypto.X509Store()
    for anchor in anchors:
        store.add_cert(crypto.X509.from_cryptography(anchor))
    store.set_flags(crypto.X509StoreFlags.PARTIAL_CHAIN)
    if at.tzinfo is None:
        raise ValueError("certificate validity needs an aware datetime")
    # pyOpenSSL reads the fields of the time tuple as UTC.
    store.set_time(at.astimezone(UTC))
    context = crypto.X509StoreContext(
        store,
        crypto.X509.from_cryptography(certificates[0]),
        chain=[crypto.X509.from_cryptography(c) for c in certificates[1:]],
    )
    try:
        context.verify_certificate()
    except crypto.X509StoreContextError as exc:
        return str(exc)
    return ""


# The names of the anchors that prove an AAGUID, as stored with each passkey.
_MDS_ANCHOR = "FIDO MDS: "
_CONFIGURED_ANCHOR = "configured trust anchor"


def anchor_proves_aaguid(trust_anchor: str) -> bool:
    """Does a chain to this anchor (a passkey's ``trust_anchor``) prove the AAGUID?

    The metadata entry's own roots do, and so do the organisation's configured
    anchors; Apple's and Google's roots prove only "an Apple device" or "an
    Android keystore", whatever AAGUID the response claims. Stored passkeys keep
    the anchor's name, so the policy can ask again at sign-in.
    """
    return trust_anchor.startswith(_MDS_ANCHOR) or trust_anchor == _CONFIGURED_ANCHOR


def evaluate(
    attestation_object: AttestationObject,
    client_data_hash: bytes,
    *,
    at: datetime,
    store: MetadataStore,
    extra_anchors: Sequence[x509.Certificate] = (),
) -> AttestationVerdict:
    """§7.1 steps 21-24: verify the statement, look up metadata, decide trust."""
    fmt = attestation_object.fmt
    attestation_type, trust_path = verify_statement(attestation_object, client_data_hash)
    credential = attestation_object.auth_data.credential_data
    aaguid = bytes(credential.aaguid) if credential is not None else bytes(16)
    entry = _metadata_for(fmt, aaguid, trust_path, store)
    if entry is not None and entry.refused_status:
        raise errors.AuthenticatorStatusRefused(
            f"{entry.description}: metadata status {entry.refused_status}"
        )

    def untrusted(reason: str) -> AttestationVerdict:
        return AttestationVerdict(fmt, attestation_type, False, "", reason, entry, False)

    if attestation_type in (AttestationType.NONE, AttestationType.SELF) or not trust_path:
        return untrusted(
            "no attestation" if attestation_type == AttestationType.NONE else "self attestation"
        )
    if fmt == AttestationFormat.ANDROID_SAFETYNET:
        stale = _safetynet_staleness(attestation_object, at)
        if stale:
            return untrusted(stale)
    # Candidates in order (anchor_proves_aaguid says which prove the AAGUID).
    candidates: list[tuple[str, Sequence[x509.Certificate]]] = []
    if entry is not None and entry.root_certificates:
        candidates.append((f"{_MDS_ANCHOR}{entry.description}", entry.root_certificates))
    if fmt == AttestationFormat.APPLE:
        candidates.append(("Apple WebAuthn Root CA", apple_roots()))
    if fmt == AttestationFormat.ANDROID_KEY:
        candidates.append(("Google hardware attestation root", google_roots()))
    if extra_anchors:
        candidates.append((_CONFIGURED_ANCHOR, extra_anchors))
    if not candidates:
        return untrusted("no trust anchor for this authenticator")
    problems = []
    for anchor_name, anchor_certificates in candidates:
        problem = chain_verifies(trust_path, anchor_certificates, at)
        if not problem:
            return AttestationVerdict(
                fmt,
                attestation_type,
                True,
                anchor_name,
                "",
                entry,
                anchor_proves_aaguid(anchor_name),
            )
        problems.append(f"{anchor_name}: {problem}")
    return untrusted("; ".join(problems))


# SafetyNet responses carry their own time (WebAuthn L2 §8.5); one made long
# before or after the ceremony is a replayed or pre-made attestation.
_SAFETYNET_WINDOW_SECONDS = 60


def _safetynet_staleness(attestation_object: AttestationObject, at: datetime) -> str:
    try:
        jws = bytes(attestation_object.att_stmt["response"]).decode()
        payload = json.loads(b64url_decode(jws.split(".")[1]))
        made = float(payload["timestampMs"]) / 1000
    except (KeyError, IndexError, ValueError, TypeError, UnicodeDecodeError):
        return "SafetyNet response has no readable timestampMs"
    if abs(made - at.timestamp()) > _SAFETYNET_WINDOW_SECONDS:
        when = datetime.fromtimestamp(made, UTC).isoformat(timespec="seconds")
        return f"SafetyNet response made at {when}, not within a minute of the ceremony"
    return ""
