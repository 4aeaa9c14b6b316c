"""A software WebAuthn authenticator and client, for tests and benchmarks.

It signs with real keys (``cryptography``) and produces exactly what a browser's
``credential.toJSON()`` returns, so the server's verification runs unmocked.
Every part of a response can be overridden to build negative variants.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from fido2 import cbor
from fido2.cose import ES256, RS256, CoseKey, EdDSA

from threshold.core.encoding import b64url_decode, b64url_encode

UP, UV, BE, BS, AT, ED = 0x01, 0x04, 0x08, 0x10, 0x40, 0x80

TEST_AAGUID = bytes.fromhex("01020304050607080102030405060708")


def _new_key(alg: int) -> Any:
    if alg == -7:
        return ec.generate_private_key(ec.SECP256R1())
    if alg == -8:
        return ed25519.Ed25519PrivateKey.generate()
    if alg == -257:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unsupported alg {alg}")


def _cose_for(alg: int, private_key: Any) -> CoseKey:
    cls = {-7: ES256, -8: EdDSA, -257: RS256}[alg]
    return cls.from_cryptography_key(private_key.public_key())


def sign(alg: int, private_key: Any, message: bytes) -> bytes:
    if alg == -7:
        return private_key.sign(message, ec.ECDSA(hashes.SHA256()))
    if alg == -8:
        return private_key.sign(message)
    if alg == -257:
        return private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    raise ValueError(f"unsupported alg {alg}")


def client_data_json(type_: str, challenge: str, origin: str, **extra: Any) -> bytes:
    data = {"type": type_, "challenge": challenge, "origin": origin, "crossOrigin": False}
    data.update(extra)
    return json.dumps(data, separators=(",", ":")).encode()


def authenticator_data(
    rp_id: str, flags: int, sign_count: int, attested: bytes = b"", rp_id_hash: bytes | None = None
) -> bytes:
    digest = rp_id_hash if rp_id_hash is not None else hashlib.sha256(rp_id.encode()).digest()
    return digest + struct.pack(">BI", flags, sign_count) + attested


@dataclass
class Credential:
    credential_id: bytes
    alg: int
    private_key: Any
    rp_id: str
    user_handle: bytes
    sign_count: int = 0


@dataclass
class SoftAuthenticator:
    """One authenticator: holds discoverable credentials and signs like a real one."""

    aaguid: bytes = TEST_AAGUID
    backup_eligible: bool = False
    backup_state: bool = False
    user_verified: bool = True
    # How much the signature counter grows per assertion; 0 for synced passkeys.
    counter_step: int = 1
    credentials: list[Credential] = field(default_factory=list)

    def _flags(self, user_verified: bool | None) -> int:
        flags = UP
        if self.user_verified if user_verified is None else user_verified:
            flags |= UV
        if self.backup_eligible:
            flags |= BE
        if self.backup_state:
            flags |= BS
        return flags

    def create(
        self,
        options: dict[str, Any],
        origin: str,
        *,
        alg: int | None = None,
        attestation: str = "none",
        flags: int | None = None,
        credential_id: bytes | None = None,
        rp_id: str | None = None,
        client_data: bytes | None = None,
        client_extra: dict[str, Any] | None = None,
        transports: tuple[str, ...] = ("internal", "hybrid"),
        attachment: str = "platform",
    ) -> dict[str, Any]:
        """Answer PublicKeyCredentialCreationOptionsJSON with RegistrationResponseJSON."""
        if alg is None:
            alg = next(p["alg"] for p in options["pubKeyCredParams"] if p["alg"] in (-7, -8, -257))
        rp_id = rp_id or options["rp"]["id"]
        private_key = _new_key(alg)
        cred_id = credential_id if credential_id is not None else os.urandom(16)
        cose = _cose_for(alg, private_key)
        attested = self.aaguid + struct.pack(">H", len(cred_id)) + cred_id + cbor.encode(cose)
        auth_data = authenticator_data(
            rp_id, (self._flags(None) if flags is None else flags) | AT, 0, attested
        )
        cdj = client_data or client_data_json(
            "webauthn.create", options["challenge"], origin, **(client_extra or {})
        )
        client_hash = hashlib.sha256(cdj).digest()
        if attestation == "none":
            fmt, stmt = "none", {}
        elif attestation == "packed-self":
            fmt, stmt = (
                "packed",
                {"alg": alg, "sig": sign(alg, private_key, auth_data + client_hash)},
            )
        else:
            raise ValueError(attestation)
        attestation_object = cbor.encode({"fmt": fmt, "attStmt": stmt, "authData": auth_data})
        self.credentials.append(
            Credential(cred_id, alg, private_key, rp_id, b64url_decode(options["user"]["id"]))
        )
        return {
            "id": b64url_encode(cred_id),
            "rawId": b64url_encode(cred_id),
            "type": "public-key",
            "authenticatorAttachment": attachment,
            "clientExtensionResults": {"credProps": {"rk": True}},
            "response": {
                "clientDataJSON": b64url_encode(cdj),
                "attestationObject": b64url_encode(attestation_object),
                "transports": list(transports),
            },
        }

    def get(
        self,
        options: dict[str, Any],
        origin: str,
        *,
        credential: Credential | None = None,
        flags: int | None = None,
        user_verified: bool | None = None,
        sign_count: int | None = None,
        rp_id: str | None = None,
        client_data: bytes | None = None,
        client_extra: dict[str, Any] | None = None,
        user_handle: bytes | bool | None = True,
        tamper_signature: bool = False,
    ) -> dict[str, Any]:
        """Answer PublicKeyCredentialRequestOptionsJSON with AuthenticationResponseJSON.

        ``user_handle``: True sends the credential's own, None/False sends none,
        bytes sends those.
        """
        if credential is None:
            allowed = {b64url_decode(c["id"]) for c in options.get("allowCredentials", [])}
            candidates = [
                c
                for c in self.credentials
                if c.rp_id == options["rpId"] and (not allowed or c.credential_id in allowed)
            ]
            if not candidates:
                raise LookupError("NotAllowedError: no credential for this request")
            credential = candidates[-1]
        if sign_count is None:
            credential.sign_count += self.counter_step
            sign_count = credential.sign_count
        auth_data = authenticator_data(
            rp_id or options["rpId"],
            self._flags(user_verified) if flags is None else flags,
            sign_count,
        )
        cdj = client_data or client_data_json(
            "webauthn.get", options["challenge"], origin, **(client_extra or {})
        )
        signature = sign(
            credential.alg, credential.private_key, auth_data + hashlib.sha256(cdj).digest()
        )
        if tamper_signature:
            signature = signature[:-1] + bytes([signature[-1] ^ 1])
        if user_handle is True:
            handle: str | None = b64url_encode(credential.user_handle)
        elif isinstance(user_handle, bytes):
            handle = b64url_encode(user_handle)
        else:
            handle = None
        return {
            "id": b64url_encode(credential.credential_id),
            "rawId": b64url_encode(credential.credential_id),
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64url_encode(cdj),
                "authenticatorData": b64url_encode(auth_data),
                "signature": b64url_encode(signature),
                "userHandle": handle,
            },
        }
