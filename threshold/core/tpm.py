"""Is a device's key held in a TPM 2.0? Credential activation, then TPM2_Certify.

A device that says its key is in a TPM proves it in two steps (TPM 2.0 Part 1 §24,
"Credential Protection"; TCG "TPM 2.0 Keys for Device Identity and Attestation" §6):

1. ``begin``: it sends its endorsement key's certificate (from the TPM's NV, signed by
   the TPM's manufacturer), the EK's public area, an attestation key's (AK) public area
   and its device key's public area. Threshold checks the certificate chains to an
   operator-configured root, that the EK public area is the certified key, and the
   attributes of the AK (restricted signing, fixedTPM) and of the device key (fixedTPM,
   fixedParent, generated in the TPM, the JWK's point). It then encrypts a fresh secret
   to the EK, bound to the AK's name (TPM2_MakeCredential, done in software by
   tpm2-pytss): only the TPM holding that EK releases it, and only while an object with
   exactly that name is loaded in it (TPM2_ActivateCredential).
2. ``finish``: the device returns the secret, and a TPM2_Certify of its key by the AK
   whose qualifying data is the secret's SHA-256. The certify structure starts with
   TPM_GENERATED_VALUE, which a restricted key signs only for structures the TPM made
   itself; its object name is the device key's. So the key is in the same TPM as the
   certified EK, and cannot leave it.

Plain Python (fido2 parses the TPM structures, OpenSSL builds the certificate path);
tpm2-pytss is imported only here, for TPM2_MakeCredential, and only when it is installed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from fido2.attestation.tpm import ATTRIBUTES, TpmAttestationFormat

from threshold.core.attestation import chain_verifies
from threshold.core.encoding import b64url_decode

_EK = ATTRIBUTES.FIXED_TPM | ATTRIBUTES.FIXED_PARENT | ATTRIBUTES.RESTRICTED | ATTRIBUTES.DECRYPT
_AK = (
    ATTRIBUTES.FIXED_TPM
    | ATTRIBUTES.FIXED_PARENT
    | ATTRIBUTES.SENSITIVE_DATA_ORIGIN
    | ATTRIBUTES.RESTRICTED
    | ATTRIBUTES.SIGN_ENCRYPT
)
_DEVICE_KEY = (
    ATTRIBUTES.FIXED_TPM
    | ATTRIBUTES.FIXED_PARENT
    | ATTRIBUTES.SENSITIVE_DATA_ORIGIN
    | ATTRIBUTES.SIGN_ENCRYPT
)


_TPM_ALG_RSA = 0x0001
_TPM_ALG_ECC = 0x0023
_P256 = 0x0003  # TPM_ECC_NIST_P256


class TpmEvidenceInvalid(ValueError):
    """The device's TPM evidence does not prove its key is in a TPM; the message says why."""


@dataclass(frozen=True)
class TpmEvidence:
    """What a device sends with its set-up: DER certificate, and marshalled TPM2B_PUBLICs."""

    ek_certificate: bytes
    ek_public: bytes
    ak_public: bytes
    key_public: bytes


@dataclass(frozen=True)
class CredentialChallenge:
    """TPM2_MakeCredential's output for the device, and what the server keeps to finish."""

    credential_blob: bytes  # TPM2B_ID_OBJECT
    encrypted_secret: bytes  # TPM2B_ENCRYPTED_SECRET
    secret_sha256: bytes  # the expected qualifying data, and the proof of activation
    ak_public: bytes  # TPMT_PUBLIC, to verify the certify signature with
    key_name: bytes  # the device key's TPM name


@dataclass(frozen=True)
class _Public:
    """A TPM2B_PUBLIC as the checks need it (parsed by tpm2-pytss: fido2's parser knows only
    the unrestricted, scheme-less keys WebAuthn uses)."""

    type: int
    attributes: int
    name: bytes  # nameAlg || H(TPMT_PUBLIC): what TPM2_Certify and MakeCredential name
    area: Any  # tpm2-pytss's TPMT_PUBLIC

    def p256_point(self) -> tuple[bytes, bytes] | None:
        if self.type != _TPM_ALG_ECC or int(self.area.parameters.eccDetail.curveID) != _P256:
            return None
        point = self.area.unique.ecc
        return bytes(point.x).rjust(32, b"\0"), bytes(point.y).rjust(32, b"\0")


def _tss() -> Any:
    try:
        import tpm2_pytss  # noqa: PLC0415 - optional, and loads libtss2
    except ImportError as error:
        raise TpmEvidenceInvalid(f"tpm2-pytss is not installed on the server: {error}") from None
    return tpm2_pytss


def _public(tpm2b: bytes, what: str) -> _Public:
    try:
        public, rest = _tss().TPM2B_PUBLIC.unmarshal(tpm2b)
        area = public.publicArea
        name = bytes(public.get_name())
    except TpmEvidenceInvalid:
        raise
    except Exception as error:  # noqa: BLE001 - the TSS's own errors for a malformed structure
        raise TpmEvidenceInvalid(f"{what}: not a TPM2B_PUBLIC ({error})") from None
    if rest != len(tpm2b):
        raise TpmEvidenceInvalid(f"{what}: bytes after the TPM2B_PUBLIC")
    return _Public(int(area.type), int(area.objectAttributes), name, area)


def _has(public: _Public, required: int, what: str) -> None:
    missing = required & ~public.attributes
    if missing:
        names = [flag.name for flag in ATTRIBUTES if flag & missing and flag.name]
        raise TpmEvidenceInvalid(f"{what} lacks {', '.join(str(n) for n in names)}")


def begin(
    evidence: TpmEvidence,
    device_jwk: dict[str, str],
    anchors: Sequence[x509.Certificate],
    at: datetime,
) -> CredentialChallenge:
    """Check the evidence of step 1 and make the credential; TpmEvidenceInvalid if it fails."""
    if not anchors:
        raise TpmEvidenceInvalid("no TPM manufacturer roots are configured")
    reason = chain_verifies([evidence.ek_certificate], anchors, at)
    if reason:
        raise TpmEvidenceInvalid(f"the EK certificate: {reason}")
    certified = x509.load_der_x509_certificate(evidence.ek_certificate).public_key()
    _check_ek(evidence.ek_public, certified)
    ak = _public(evidence.ak_public, "AK")
    _has(ak, _AK, "the AK")
    if ak.p256_point() is None:
        raise TpmEvidenceInvalid("the AK must be a P-256 key")
    key = _public(evidence.key_public, "device key")
    _has(key, _DEVICE_KEY, "the device key")
    if key.attributes & ATTRIBUTES.RESTRICTED:
        raise TpmEvidenceInvalid("the device key must not be restricted")
    jwk_point = (b64url_decode(device_jwk["x"]), b64url_decode(device_jwk["y"]))
    if key.p256_point() != jwk_point:
        raise TpmEvidenceInvalid("the device key's public area is not the JWK's P-256 key")
    secret = secrets.token_bytes(32)
    blob, encrypted = _make_credential(evidence.ek_public, secret, ak.name)
    return CredentialChallenge(
        credential_blob=blob,
        encrypted_secret=encrypted,
        secret_sha256=hashlib.sha256(secret).digest(),
        ak_public=evidence.ak_public,
        key_name=key.name,
    )


def _check_ek(ek_public: bytes, certified: object) -> None:
    """The EK's public area is a restricted decryption key in the TPM, and the certified key.

    Read with tpm2-pytss: fido2's parser reads only the TPMS_RSA_PARMS of keys without a
    symmetric algorithm, and an EK has one (AES-128-CFB)."""
    ek = _public(ek_public, "EK")
    _has(ek, _EK, "the EK")
    public = ek.area
    if isinstance(certified, rsa.RSAPublicKey):
        numbers = certified.public_numbers()
        exponent = int(public.parameters.rsaDetail.exponent) or 65537
        same = (
            int(public.type) == _TPM_ALG_RSA
            and int.from_bytes(bytes(public.unique.rsa), "big") == numbers.n
            and exponent == numbers.e
        )
    elif isinstance(certified, ec.EllipticCurvePublicKey):
        numbers_ec = certified.public_numbers()
        same = (
            int(public.type) == _TPM_ALG_ECC
            and int.from_bytes(bytes(public.unique.ecc.x), "big") == numbers_ec.x
            and int.from_bytes(bytes(public.unique.ecc.y), "big") == numbers_ec.y
        )
    else:
        same = False
    if not same:
        raise TpmEvidenceInvalid("the EK public area is not the certified key")


def _make_credential(ek_public: bytes, secret: bytes, ak_name: bytes) -> tuple[bytes, bytes]:
    tss = _tss()
    from tpm2_pytss.utils import make_credential  # noqa: PLC0415 - loaded by _tss

    public, _ = tss.TPM2B_PUBLIC.unmarshal(ek_public)
    blob, encrypted = make_credential(public, secret, ak_name)
    return bytes(blob.marshal()), bytes(encrypted.marshal())


def finish(
    challenge_sha256: bytes,
    ak_public: bytes,
    key_name: bytes,
    *,
    secret: bytes,
    certify_info: bytes,
    certify_signature: bytes,
) -> None:
    """Check step 2: the activated secret and the AK's TPM2_Certify of the device key."""
    if not hmac.compare_digest(hashlib.sha256(secret).digest(), challenge_sha256):
        raise TpmEvidenceInvalid("the credential was not activated in the EK's TPM")
    try:
        attest = TpmAttestationFormat.parse(certify_info)
    except ValueError as error:
        raise TpmEvidenceInvalid(f"the certify structure: {error}") from None
    if not hmac.compare_digest(attest.data, challenge_sha256):
        raise TpmEvidenceInvalid("the certify's qualifying data is not this challenge's")
    if attest.attested.name != key_name:
        raise TpmEvidenceInvalid("the certified object is not the device key")
    point = _public(ak_public, "AK").p256_point()
    if point is None or len(certify_signature) != 64:  # noqa: PLR2004 - P-256's r || s
        raise TpmEvidenceInvalid("the AK's signature must be ECDSA P-256 (r || s)")
    ak = ec.EllipticCurvePublicNumbers(
        int.from_bytes(point[0], "big"), int.from_bytes(point[1], "big"), ec.SECP256R1()
    ).public_key()
    half = len(certify_signature) // 2
    der = encode_dss_signature(
        int.from_bytes(certify_signature[:half], "big"),
        int.from_bytes(certify_signature[half:], "big"),
    )
    try:
        ak.verify(der, certify_info, ec.ECDSA(hashes.SHA256()))
    except Exception:  # noqa: BLE001 - cryptography's InvalidSignature, or a bad curve point
        raise TpmEvidenceInvalid("the certify signature does not verify with the AK") from None
