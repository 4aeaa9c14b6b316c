"""Attestation: verify the statement, then decide whether it is trusted (§7.1 steps 21-24).

Statement signatures are checked by fido2's verifiers (fido-mds supplies
android-key, which fido2 lacks). What they leave out is done here:

- Trust. fido2 only checks that each certificate signs the next. Here the chain
  is *built* by OpenSSL (pyOpenSSL) to an anchor chosen by
  format and metadata — never "the last certificate is the root" — with
  validity checked at a clock the caller passes in.
- Metadata status. An authenticator whose FIDO metadata reports REVOKED,
  USER_VERIFICATION_BYPASS or a *_COMPROMISE status is refused.
- What the formats' verifiers skip of §8's verification procedures
  (``_FORMAT_CHECKS``): apple's credential key must be the one in the leaf
  certificate (§8.8 step 5); tpm's ``ver`` must be "2.0" and the AIK
  certificate's AAGUID extension, when present, must name authData's AAGUID
  (§8.3.1); fido-u2f has exactly one certificate and a P-256 credential key
  (§8.6 steps 2-3); android-key's key was generated in the keystore, for
  signing, and is not usable by every app (§8.4, read from the
  KeyDescription with asn1crypto, which fido-mds only scans for tag bytes).
- fido-u2f's AAGUID. The U2F signature covers neither authData's AAGUID nor its
  flags, which the client writes (§8.6): a chain to the U2F key's metadata
  proves the key's model, never the AAGUID authData names.

An attestation that cannot be traced to an anchor is not an error: synced
passkeys send none. It is recorded as untrusted, and policy decides.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asn1crypto import parser
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
    # A trust path was given and checked against the anchors for it, and failed (or a
    # SafetyNet response was stale): an attestation that fails, not one that is absent.
    path_failed: bool = False


_ABSENT = object()


def verify_statement(
    attestation_object: AttestationObject, client_data_hash: bytes
) -> tuple[AttestationType, list[bytes]]:
    """Verify the attestation statement's signature; return its type and trust path."""
    fmt = attestation_object.fmt
    loader = FORMATS.get(fmt)
    if loader is None:
        raise errors.AttestationFormatUnsupported(f"fmt {fmt!r}")
    x5c = attestation_object.att_stmt.get("x5c", _ABSENT)
    if x5c is not _ABSENT and not (
        isinstance(x5c, list) and x5c and all(isinstance(der, bytes) for der in x5c)
    ):
        # §8's syntax is x5c: [ attestnCert: bytes, * (caCert: bytes) ]: present, it is a
        # non-empty array of certificates. fido2 reads an empty or mistyped one as absent
        # (packed: self attestation).
        raise errors.AttestationInvalid(f"{fmt}: x5c is not an array of certificates")
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
    check = _FORMAT_CHECKS.get(fmt)
    if check is not None:
        check(trust_path, attestation_object)
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


# id-fido-gen-ce-aaguid (§8.2.1, §8.3.1): the AAGUID an attestation certificate vouches for.
_AAGUID_EXTENSION = x509.ObjectIdentifier("1.3.6.1.4.1.45724.1.1.4")
_TPM_VERSION = "2.0"


def _check_tpm(trust_path: list[bytes], attestation_object: AttestationObject) -> None:
    """§8.3: ``ver`` is "2.0"; §8.3.1: an aikCert AAGUID extension matches authData's AAGUID
    (a TPM certifies any key for any authData: the extension is what binds the AAGUID)."""
    if attestation_object.att_stmt.get("ver") != _TPM_VERSION:
        raise errors.AttestationInvalid('tpm: ver is not "2.0"')
    credential = attestation_object.auth_data.credential_data
    try:
        leaf = x509.load_der_x509_certificate(trust_path[0])
        extension = leaf.extensions.get_extension_for_oid(_AAGUID_EXTENSION)
    except x509.ExtensionNotFound:
        return
    except (ValueError, IndexError) as exc:
        raise errors.AttestationInvalid(f"tpm: aikCert: {exc!r}") from exc
    try:
        assert isinstance(extension.value, x509.UnrecognizedExtension)  # noqa: S101 - unknown OID
        certified = _universal(extension.value.value, _OCTET_STRING)
    except (ValueError, TypeError) as exc:
        raise errors.AttestationInvalid("tpm: aikCert's AAGUID extension is unreadable") from exc
    if extension.critical or credential is None or certified != bytes(credential.aaguid):
        raise errors.AttestationInvalid("tpm: aikCert's AAGUID is not authData's AAGUID")


# A U2F public key (FIDO U2F Raw Message Formats §4.3): an uncompressed P-256 point.
_P256, _COORDINATE = 1, 32


def _check_fido_u2f(trust_path: list[bytes], attestation_object: AttestationObject) -> None:
    """§8.6 step 2: exactly one certificate; step 3: the credential key is P-256."""
    if len(attestation_object.att_stmt.get("x5c") or ()) != 1:
        raise errors.AttestationInvalid("fido-u2f: x5c must hold exactly one certificate")
    credential = attestation_object.auth_data.credential_data
    key = credential.public_key if credential is not None else {}
    if not (
        key.get(_KTY) == _KTY_EC2
        and key.get(_CRV) == _P256
        and all(isinstance(key.get(c), bytes) and len(key[c]) == _COORDINATE for c in (_X, _Y))
    ):
        raise errors.AttestationInvalid("fido-u2f: the credential key is not a P-256 key")


# Android's KeyDescription (§8.4; source.android.com, "Key and ID attestation"): its
# fields by position, the AuthorizationList tags, and their values.
_KEY_DESCRIPTION = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.1.17")
_SOFTWARE_ENFORCED, _TEE_ENFORCED = 6, 7
_PURPOSE, _ALL_APPLICATIONS, _ORIGIN = 1, 600, 702
_KM_PURPOSE_SIGN, _KM_ORIGIN_GENERATED = 2, 0
# DER's classes and the universal tags read here (X.690 §8.1.2).
_UNIVERSAL, _CONTEXT = 0, 2
_INTEGER, _OCTET_STRING, _SEQUENCE, _SET = 2, 4, 16, 17


def _elements(der: bytes) -> list[tuple[int, int, bytes]]:
    """(class, tag, contents) of each DER element in ``der``, in order."""
    elements = []
    while der:
        class_, _method, tag, header, contents, trailer = parser.parse(der)
        elements.append((class_, tag, contents))
        der = der[len(header) + len(contents) + len(trailer) :]
    return elements


def _universal(der: bytes, tag: int) -> bytes:
    """The contents of ``der``, one element of the universal class and this tag."""
    [(class_, found, contents)] = _elements(der)
    if (class_, found) != (_UNIVERSAL, tag):
        raise ValueError(f"expected universal tag {tag}, found class {class_} tag {found}")
    return contents


def _integer(der: bytes) -> int:
    return int.from_bytes(_universal(der, _INTEGER), "big", signed=True)


def _authorizations(key_description: bytes) -> dict[int, list[bytes]]:
    """Each AuthorizationList tag of both lists, with the DER of its values."""
    lists = _elements(_universal(key_description, _SEQUENCE))
    found: dict[int, list[bytes]] = {}
    for position in (_SOFTWARE_ENFORCED, _TEE_ENFORCED):
        class_, tag, contents = lists[position]
        if (class_, tag) != (_UNIVERSAL, _SEQUENCE):
            raise ValueError("an AuthorizationList is not a SEQUENCE")
        for class_, tag, inner in _elements(contents):
            if class_ == _CONTEXT:
                found.setdefault(tag, []).append(inner)
    return found


def _check_android_key(trust_path: list[bytes], attestation_object: AttestationObject) -> None:
    """§8.4: in the union of softwareEnforced and teeEnforced, no allApplications; origin
    KM_ORIGIN_GENERATED (a key imported into the keystore was known outside it); purpose
    KM_PURPOSE_SIGN. (The challenge is checked by fido-mds's verifier.)"""
    try:
        leaf = x509.load_der_x509_certificate(trust_path[0])
        extension = leaf.extensions.get_extension_for_oid(_KEY_DESCRIPTION).value
        assert isinstance(extension, x509.UnrecognizedExtension)  # noqa: S101 - unknown OID
        found = _authorizations(extension.value)
        origins = [_integer(der) for der in found.get(_ORIGIN, [])]
        purposes = [
            int.from_bytes(contents, "big", signed=True)
            for der in found.get(_PURPOSE, [])
            for class_, tag, contents in _elements(_universal(der, _SET))
            if (class_, tag) == (_UNIVERSAL, _INTEGER)
        ]
    except (ValueError, TypeError, IndexError, x509.ExtensionNotFound) as exc:
        raise errors.AttestationInvalid(f"android-key: unreadable KeyDescription: {exc}") from exc
    if _ALL_APPLICATIONS in found:
        raise errors.AttestationInvalid("android-key: the key is usable by all applications")
    if not origins or any(origin != _KM_ORIGIN_GENERATED for origin in origins):
        raise errors.AttestationInvalid("android-key: the key was not generated in the keystore")
    if _KM_PURPOSE_SIGN not in purposes:
        raise errors.AttestationInvalid("android-key: the key's purpose is not signing")


def _check_safetynet(trust_path: list[bytes], attestation_object: AttestationObject) -> None:
    """§8.5 step 2: "a valid SafetyNet response of version ver": ver names one."""
    version = attestation_object.att_stmt.get("ver")
    if not isinstance(version, str) or not version.strip():
        raise errors.AttestationInvalid("android-safetynet: ver must name a version")


_FORMAT_CHECKS: dict[str, Callable[[list[bytes], AttestationObject], None]] = {
    AttestationFormat.ANDROID_SAFETYNET: _check_safetynet,
    AttestationFormat.APPLE: _check_apple_key,
    AttestationFormat.TPM: _check_tpm,
    AttestationFormat.FIDO_U2F: _check_fido_u2f,
    AttestationFormat.ANDROID_KEY: _check_android_key,
}


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
    # Imported here: only a registration with an attestation needs pyOpenSSL in a worker.
    from OpenSSL import crypto  # noqa: PLC0415

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


def anchor_proves_aaguid(trust_anchor: str, fmt: str) -> bool:
    """Does a chain to this anchor (a passkey's ``trust_anchor``), in this statement format,
    prove the AAGUID?

    The metadata entry's own roots do, and so do the organisation's configured
    anchors; Apple's and Google's roots prove only "an Apple device" or "an
    Android keystore", whatever AAGUID the response claims. A fido-u2f statement
    never does: its signature does not cover the AAGUID (§8.6). Stored passkeys keep
    the anchor's name and format, so the policy can ask again at sign-in.
    """
    if fmt == AttestationFormat.FIDO_U2F:
        return False
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

    def untrusted(reason: str, *, path_failed: bool = False) -> AttestationVerdict:
        return AttestationVerdict(
            fmt, attestation_type, False, "", reason, entry, False, path_failed=path_failed
        )

    if attestation_type in (AttestationType.NONE, AttestationType.SELF) or not trust_path:
        return untrusted(
            "no attestation" if attestation_type == AttestationType.NONE else "self attestation"
        )
    if fmt == AttestationFormat.ANDROID_SAFETYNET:
        stale = _safetynet_staleness(attestation_object, at)
        if stale:
            return untrusted(stale, path_failed=True)
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
                anchor_proves_aaguid(anchor_name, fmt),
            )
        problems.append(f"{anchor_name}: {problem}")
    return untrusted("; ".join(problems), path_failed=True)


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
