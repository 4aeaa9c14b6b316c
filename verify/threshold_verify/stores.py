"""Where the device key lives: a TPM 2.0 when the machine has one, else the OS keyring.

Each store makes a P-256 key, gives its public JWK and signs with ES256 (the 64-byte
``r || s`` of RFC 7518 §3.4). ``protection`` is what the store is, reported to the
server honestly: "tpm" for a key created inside the TPM (it never leaves it), "software"
for a key in the keyring. The server records what it could verify.

No store for the macOS Secure Enclave or Windows Hello: without tests that run on them,
they are left out (issue 12).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any, Protocol

import keyring
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from threshold_verify.encoding import b64url

KEYRING_SERVICE = "threshold-verify"
# The TSS libraries log every failed probe (a missing NV index) to stderr: quiet, unless asked.
os.environ.setdefault("TSS2_LOG", "all+NONE")
# Where TPM manufacturers keep the endorsement key's certificate (TCG EK Credential Profile
# §2.2.1.4): RSA 2048, then ECC P-256, each with its EK template.
EK_CERTIFICATES = ((0x01C00002, "EK-RSA2048"), (0x01C0000A, "EK-ECC256"))
# Where the TPM is: THRESHOLD_VERIFY_TCTI, then tpm2-tools' variable, then the kernel's
# resource manager. swtpm (tests): "swtpm:host=127.0.0.1,port=2321".
DEFAULT_TCTI = "device:/dev/tpmrm0"


class StoreUnavailable(Exception):
    """This machine has no such store (no TPM, no keyring backend)."""


class KeyStore(Protocol):
    name: str
    protection: str

    def create(self) -> str:
        """A new key; returns its reference (kept in the app's state)."""

    def public_jwk(self, ref: str) -> dict[str, str]: ...

    def sign(self, ref: str, data: bytes) -> bytes:
        """ES256 over ``data``: 64 bytes, r then s."""

    def delete(self, ref: str) -> None: ...


def _jwk(x: int, y: int) -> dict[str, str]:
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url(x.to_bytes(32, "big")),
        "y": b64url(y.to_bytes(32, "big")),
    }


# --- Software: the OS keyring -------------------------------------------------------------------


@dataclass
class SoftwareStore:
    """A P-256 key in the keyring, as PKCS#8 PEM. Reported as "software"."""

    name: str = "software"
    protection: str = "software"

    def create(self) -> str:
        ref = f"key-{secrets.token_hex(8)}"
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            keyring.set_password(KEYRING_SERVICE, ref, pem.decode())
        except keyring.errors.KeyringError as error:
            raise StoreUnavailable(f"no keyring to keep the key in: {error}") from None
        return ref

    def _key(self, ref: str) -> ec.EllipticCurvePrivateKey:
        pem = keyring.get_password(KEYRING_SERVICE, ref)
        if pem is None:
            raise StoreUnavailable(f"the key {ref} is not in the keyring any more")
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)  # noqa: S101 - we stored it
        return key

    def public_jwk(self, ref: str) -> dict[str, str]:
        numbers = self._key(ref).public_key().public_numbers()
        return _jwk(numbers.x, numbers.y)

    def sign(self, ref: str, data: bytes) -> bytes:
        der = self._key(ref).sign(data, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def delete(self, ref: str) -> None:
        with contextlib.suppress(keyring.errors.PasswordDeleteError):  # gone already
            keyring.delete_password(KEYRING_SERVICE, ref)


# --- TPM 2.0 ------------------------------------------------------------------------------------


def tcti() -> str:
    return (
        os.environ.get("THRESHOLD_VERIFY_TCTI")
        or os.environ.get("TPM2TOOLS_TCTI")
        or (DEFAULT_TCTI)
    )


@dataclass
class TpmStore:
    """A P-256 signing key created in the TPM under the owner hierarchy's storage key.

    The key's private part leaves the TPM only wrapped by that storage key (``TPM2B_PRIVATE``),
    which the app keeps, with the public part, in its state; the storage key is derived again
    from the TPM's seed each time (the same template gives the same key). The key is
    ``fixedTPM`` and ``fixedParent``: it cannot be duplicated out of this TPM.
    """

    name: str = "tpm"
    protection: str = "tpm"
    blobs: dict[str, str] | None = None  # ref -> "public_hex:private_hex", kept in the state

    def _esapi(self) -> Any:
        try:
            from tpm2_pytss import ESAPI  # noqa: PLC0415 - optional: only where a TPM is used
        except ImportError as error:
            raise StoreUnavailable(f"tpm2-pytss is not installed: {error}") from None
        # A TPM serves one client at a time: a busy one refuses for a moment.
        for attempt in range(3):
            try:
                return ESAPI(tcti())
            except Exception as error:  # noqa: BLE001 - any TSS failure means "no TPM here"
                if attempt == 2:  # noqa: PLR2004 - the last of three
                    raise StoreUnavailable(f"no TPM at {tcti()}: {error}") from None
                time.sleep(0.2)
        raise StoreUnavailable("unreachable")

    def _primary(self, esapi: Any) -> Any:
        from tpm2_pytss import TPM2B_PUBLIC  # noqa: PLC0415
        from tpm2_pytss.constants import ESYS_TR, TPMA_OBJECT  # noqa: PLC0415

        template = TPM2B_PUBLIC.parse(
            "ecc256:aes128cfb", objectAttributes=TPMA_OBJECT.DEFAULT_TPM2_TOOLS_CREATEPRIMARY_ATTRS
        )
        handle, *_ = esapi.create_primary(None, template, primary_handle=ESYS_TR.OWNER)
        return handle

    def create(self) -> str:
        from tpm2_pytss import TPM2B_PUBLIC  # noqa: PLC0415
        from tpm2_pytss.constants import TPMA_OBJECT  # noqa: PLC0415

        esapi = self._esapi()
        try:
            primary = self._primary(esapi)
            attributes = (
                TPMA_OBJECT.FIXEDTPM
                | TPMA_OBJECT.FIXEDPARENT
                | TPMA_OBJECT.SENSITIVEDATAORIGIN
                | TPMA_OBJECT.USERWITHAUTH
                | TPMA_OBJECT.SIGN_ENCRYPT
            )
            template = TPM2B_PUBLIC.parse("ecc256:ecdsa-sha256", objectAttributes=attributes)
            private, public, *_ = esapi.create(primary, None, template)
            esapi.flush_context(primary)
        finally:
            esapi.close()
        ref = f"tpm-{secrets.token_hex(8)}"
        if self.blobs is None:
            self.blobs = {}
        self.blobs[ref] = f"{bytes(public.marshal()).hex()}:{bytes(private.marshal()).hex()}"
        return ref

    def _loaded(self, esapi: Any, ref: str) -> tuple[Any, Any, Any]:
        from tpm2_pytss import TPM2B_PRIVATE, TPM2B_PUBLIC  # noqa: PLC0415

        stored = (self.blobs or {}).get(ref)
        if stored is None:
            raise StoreUnavailable(f"the key {ref} is unknown")
        public_hex, private_hex = stored.split(":")
        public, _ = TPM2B_PUBLIC.unmarshal(bytes.fromhex(public_hex))
        private, _ = TPM2B_PRIVATE.unmarshal(bytes.fromhex(private_hex))
        primary = self._primary(esapi)
        handle = esapi.load(primary, private, public)
        return primary, handle, public

    def public_jwk(self, ref: str) -> dict[str, str]:
        from tpm2_pytss import TPM2B_PUBLIC  # noqa: PLC0415

        stored = (self.blobs or {}).get(ref)
        if stored is None:
            raise StoreUnavailable(f"the key {ref} is unknown")
        public, _ = TPM2B_PUBLIC.unmarshal(bytes.fromhex(stored.split(":")[0]))
        point = public.publicArea.unique.ecc
        return _jwk(int.from_bytes(bytes(point.x), "big"), int.from_bytes(bytes(point.y), "big"))

    def sign(self, ref: str, data: bytes) -> bytes:
        from tpm2_pytss import TPM2B_DIGEST, TPMT_SIG_SCHEME, TPMT_TK_HASHCHECK  # noqa: PLC0415
        from tpm2_pytss.constants import TPM2_ALG, TPM2_RH, TPM2_ST  # noqa: PLC0415

        esapi = self._esapi()
        try:
            primary, handle, _ = self._loaded(esapi, ref)
            scheme = TPMT_SIG_SCHEME(scheme=TPM2_ALG.ECDSA)
            scheme.details.ecdsa.hashAlg = TPM2_ALG.SHA256
            # The digest is computed here (the TPM signs a digest); the ticket says no
            # restricted key is involved.
            ticket = TPMT_TK_HASHCHECK(tag=TPM2_ST.HASHCHECK, hierarchy=TPM2_RH.NULL)
            digest = TPM2B_DIGEST(hashlib.sha256(data).digest())
            signature = esapi.sign(handle, digest, scheme, ticket)
            esapi.flush_context(handle)
            esapi.flush_context(primary)
        finally:
            esapi.close()
        r = bytes(signature.signature.ecdsa.signatureR)
        s = bytes(signature.signature.ecdsa.signatureS)
        return r.rjust(32, b"\0") + s.rjust(32, b"\0")

    def delete(self, ref: str) -> None:
        # The wrapped key is only usable with this TPM and these blobs: forgetting them
        # deletes it.
        if self.blobs is not None:
            self.blobs.pop(ref, None)
            self.blobs.pop(f"{ref}-ak", None)

    # --- Proving the key is in this TPM (the server's threshold/core/tpm.py) ----------------

    def evidence(self, ref: str) -> dict[str, str]:
        """The EK's certificate and public area, a new attestation key's (AK) public area and
        the device key's, base64url: what the server checks before it makes a credential."""
        from tpm2_pytss import TPM2B_PUBLIC  # noqa: PLC0415
        from tpm2_pytss.constants import TPMA_OBJECT  # noqa: PLC0415

        esapi = self._esapi()
        try:
            certificate, ek_public = self._ek(esapi)
            primary = self._primary(esapi)
            attributes = (
                TPMA_OBJECT.FIXEDTPM
                | TPMA_OBJECT.FIXEDPARENT
                | TPMA_OBJECT.SENSITIVEDATAORIGIN
                | TPMA_OBJECT.USERWITHAUTH
                | TPMA_OBJECT.RESTRICTED
                | TPMA_OBJECT.SIGN_ENCRYPT
            )
            template = TPM2B_PUBLIC.parse("ecc256:ecdsa-sha256:null", objectAttributes=attributes)
            private, ak_public, *_ = esapi.create(primary, None, template)
            esapi.flush_context(primary)
        finally:
            esapi.close()
        assert self.blobs is not None  # noqa: S101 - create() made the key
        self.blobs[f"{ref}-ak"] = (
            f"{bytes(ak_public.marshal()).hex()}:{bytes(private.marshal()).hex()}"
        )
        key_public = bytes.fromhex(self.blobs[ref].split(":")[0])
        return {
            "ek_certificate": b64url(certificate),
            "ek_public": b64url(ek_public),
            "ak_public": b64url(bytes(ak_public.marshal())),
            "key_public": b64url(key_public),
        }

    def _ek(self, esapi: Any) -> tuple[bytes, bytes]:
        """The EK certificate from NV and the EK's public area, made again from its template."""
        from tpm2_pytss.constants import ESYS_TR  # noqa: PLC0415
        from tpm2_pytss.utils import NVReadEK, create_ek_template  # noqa: PLC0415

        read = NVReadEK(esapi)
        for index, kind in EK_CERTIFICATES:
            try:
                certificate = read(index)
            except Exception:  # noqa: BLE001, S112 - no certificate at this index: the next
                continue
            _, template = create_ek_template(kind, read)
            handle, public, *_ = esapi.create_primary(
                None, template, primary_handle=ESYS_TR.ENDORSEMENT
            )
            esapi.flush_context(handle)
            return certificate, bytes(public.marshal())
        raise StoreUnavailable("the TPM holds no endorsement key certificate")

    def activate_and_certify(
        self, ref: str, credential_blob: bytes, encrypted_secret: bytes
    ) -> dict[str, str]:
        """TPM2_ActivateCredential with the EK and the AK, then TPM2_Certify of the device key
        by the AK over the secret's SHA-256: the server's proof, base64url."""
        from tpm2_pytss import (  # noqa: PLC0415
            TPM2B_DATA,
            TPM2B_ENCRYPTED_SECRET,
            TPM2B_ID_OBJECT,
            TPM2B_PRIVATE,
            TPM2B_PUBLIC,
            TPMT_SIG_SCHEME,
            TPMT_SYM_DEF,
        )
        from tpm2_pytss.constants import ESYS_TR, TPM2_ALG, TPM2_SE  # noqa: PLC0415
        from tpm2_pytss.utils import NVReadEK, create_ek_template  # noqa: PLC0415

        stored = (self.blobs or {}).get(f"{ref}-ak")
        if stored is None:
            raise StoreUnavailable(f"no attestation key for {ref}")
        public_hex, private_hex = stored.split(":")
        ak_public, _ = TPM2B_PUBLIC.unmarshal(bytes.fromhex(public_hex))
        ak_private, _ = TPM2B_PRIVATE.unmarshal(bytes.fromhex(private_hex))
        blob, _ = TPM2B_ID_OBJECT.unmarshal(credential_blob)
        encrypted, _ = TPM2B_ENCRYPTED_SECRET.unmarshal(encrypted_secret)
        esapi = self._esapi()
        try:
            # A TPM has room for three loaded objects: the AK and the key, then the EK.
            primary, key, _ = self._loaded(esapi, ref)
            ak = esapi.load(primary, ak_private, ak_public)
            esapi.flush_context(primary)
            read = NVReadEK(esapi)
            kind = next(kind for index, kind in EK_CERTIFICATES if _has_index(read, index))
            _, template = create_ek_template(kind, read)
            ek, *_ = esapi.create_primary(None, template, primary_handle=ESYS_TR.ENDORSEMENT)
            # The EK's policy: PolicySecret with the endorsement hierarchy (its empty auth).
            session = esapi.start_auth_session(
                ESYS_TR.NONE,
                ESYS_TR.NONE,
                TPM2_SE.POLICY,
                TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL),
                TPM2_ALG.SHA256,
            )
            esapi.policy_secret(ESYS_TR.ENDORSEMENT, session, b"", b"", b"", 0)
            secret = bytes(
                esapi.activate_credential(
                    ak, ek, blob, encrypted, session1=ESYS_TR.PASSWORD, session2=session
                )
            )
            esapi.flush_context(session)
            esapi.flush_context(ek)
            attest, signature = esapi.certify(
                key,
                ak,
                TPM2B_DATA(hashlib.sha256(secret).digest()),
                TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL),
                session1=ESYS_TR.PASSWORD,
                session2=ESYS_TR.PASSWORD,
            )
            esapi.flush_context(key)
            esapi.flush_context(ak)
        finally:
            esapi.close()
        r = bytes(signature.signature.ecdsa.signatureR).rjust(32, b"\0")
        s = bytes(signature.signature.ecdsa.signatureS).rjust(32, b"\0")
        return {
            "secret": b64url(secret),
            "certify_info": b64url(bytes(attest)),
            "certify_signature": b64url(r + s),
        }


def _has_index(read: Any, index: int) -> bool:
    try:
        read(index)
    except Exception:  # noqa: BLE001 - an index the TPM does not have
        return False
    return True


def tpm_available() -> bool:
    try:
        TpmStore()._esapi().close()  # noqa: SLF001 - the store's own probe
    except StoreUnavailable:
        return False
    return True
