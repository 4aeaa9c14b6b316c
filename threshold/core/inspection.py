"""The credential inspector: why a registration or sign-in was accepted or refused.

Support staff paste a ``credential.toJSON()`` and the ceremony's parameters;
this runs the server's own verification (``ceremony.finish_*``, nothing
re-implemented) and reports the verdict, the stable reason code, the catalog's
explanation, and what the response says about the authenticator.

What support staff paste has been through logs, consoles and other libraries, so
the inspector is lenient about how the bytes are written (standard base64 with
``+``, ``/``, padding or line breaks, as well as base64url): the bytes are what
is verified. The server's own endpoints accept base64url only.
"""

from __future__ import annotations

import contextlib
import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from fido2.webauthn import AuthenticatorData

from threshold.core import catalog, ceremony, errors
from threshold.core.encoding import b64url_encode
from threshold.core.metadata import default_store
from threshold.core.policy import Policy
from threshold.core.vocabulary import UserVerification

FLAG_NAMES = ("UP", "UV", "BE", "BS", "AT", "ED")

# The members that hold bytes, in the credential and in its response.
_BINARY_MEMBERS = ("id", "rawId")
_BINARY_RESPONSE_MEMBERS = (
    "clientDataJSON",
    "attestationObject",
    "authenticatorData",
    "signature",
    "userHandle",
)
# Either base64 alphabet, with or without padding, broken into lines or not.
_ANY_BASE64 = re.compile(r"[A-Za-z0-9+/_\-\s]*(=\s*){0,2}")


@dataclass(frozen=True)
class Ceremony:
    """What the server asked for: the parameters an inspection replays."""

    rp_id: str
    # Web origins on the RP ID, and Android apps' android:apk-key-hash: origins.
    origins: Sequence[str]
    challenge: bytes
    require_user_verification: bool = False
    allow_cross_origin: bool = False
    top_origins: Sequence[str] = ()
    # Offered at registration (§7.1 step 20); a stored key's must be one of them at sign-in.
    algorithms: Sequence[int] = ceremony.SUPPORTED_ALGORITHMS
    trust_anchors: Sequence[x509.Certificate] = ()
    require_trusted_attestation: bool = False
    at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    related_origins: Sequence[str] = ()

    def relying_party(self) -> ceremony.RelyingParty:
        return ceremony.RelyingParty(
            id=self.rp_id,
            name=self.rp_id,
            origins=frozenset(o for o in self.origins if not ceremony.is_android_origin(o)),
            allow_cross_origin=self.allow_cross_origin,
            top_origins=frozenset(self.top_origins),
            related_origins=frozenset(self.related_origins),
            app_origins=frozenset(o for o in self.origins if ceremony.is_android_origin(o)),
        )

    @property
    def now(self) -> float:
        return (self.at or datetime.now().astimezone()).timestamp()

    @property
    def user_verification(self) -> str:
        return (
            UserVerification.REQUIRED
            if self.require_user_verification
            else UserVerification.PREFERRED
        )


def _report() -> dict[str, Any]:
    return {
        "verdict": "reject",
        "reason": None,
        "message": None,
        "fmt": None,
        "attestation_type": None,
        "attestation_trusted": None,
        "aaguid": None,
        "authenticator_name": None,
        "credential_id": None,
        "public_key_cose": None,
        "alg": None,
        "sign_count": None,
        "flags": None,
    }


def _as_base64url(value: object) -> object:
    if isinstance(value, str) and _ANY_BASE64.fullmatch(value):
        return "".join(value.split()).rstrip("=").replace("+", "-").replace("/", "_")
    return value  # not base64 at all: the parser says why


def _base64url_members(data: object) -> object:
    """``data`` with its binary members rewritten as base64url, whatever base64 they were in."""
    if not isinstance(data, dict):
        return data
    rewritten = {
        name: _as_base64url(value) if name in _BINARY_MEMBERS else value
        for name, value in data.items()
    }
    response = data.get("response")
    if isinstance(response, dict):
        rewritten["response"] = {
            name: _as_base64url(value) if name in _BINARY_RESPONSE_MEMBERS else value
            for name, value in response.items()
        }
    return rewritten


def _flags(auth_data: AuthenticatorData) -> dict[str, bool]:
    return {name: bool(auth_data.flags & AuthenticatorData.FLAG[name]) for name in FLAG_NAMES}


def _reject(
    report: dict[str, Any], error: errors.ThresholdError, surface: catalog.Surface
) -> dict[str, Any]:
    report.update(verdict="reject", reason=error.code, message=catalog.explain(error, surface))
    return report


def inspect_registration(data: object, params: Ceremony) -> dict[str, Any]:
    report = _report()
    try:
        response = ceremony.parse_registration_response(_base64url_members(data))
    except errors.ThresholdError as error:
        return _reject(report, error, catalog.Surface.REGISTRATION)
    auth_data = response.attestation_object.auth_data
    credential = auth_data.credential_data
    report.update(
        fmt=response.attestation_object.fmt,
        sign_count=auth_data.counter,
        flags=_flags(auth_data),
        credential_id=b64url_encode(response.credential_id),
    )
    if credential is not None:
        report.update(
            aaguid=str(uuid.UUID(bytes=bytes(credential.aaguid))),
            alg=credential.public_key.get(3),
            public_key_cose=b64url_encode(ceremony.encode_public_key(credential.public_key)),
        )
    state = ceremony.RegistrationState(
        challenge=params.challenge,
        user_handle=b"inspector",
        user_verification=params.user_verification,
        algorithms=tuple(params.algorithms),
        expires_at=math.inf,
    )
    try:
        verified = ceremony.finish_registration(
            params.relying_party(),
            state,
            response,
            now=params.now,
            metadata=default_store(),
            trust_anchors=params.trust_anchors,
        )
        report.update(
            attestation_type=verified.attestation_type,
            attestation_trusted=verified.attestation_trusted,
            authenticator_name=verified.authenticator.name,
        )
        Policy(
            require_trusted_attestation=params.require_trusted_attestation,
            refuse_u2f_authenticators=False,
        ).check_registration(verified)
    except errors.ThresholdError as error:
        return _reject(report, error, catalog.Surface.REGISTRATION)
    report.update(verdict="accept", reason=None, message=None)
    if not verified.attestation_trusted:
        report["message"] = f"Accepted; attestation not trusted: {verified.untrusted_reason}."
    return report


def inspect_authentication(
    data: object,
    params: Ceremony,
    *,
    public_key: bytes,
    sign_count: int,
    backup_eligible: bool,
) -> dict[str, Any]:
    report = _report()
    try:
        response = ceremony.parse_authentication_response(_base64url_members(data))
    except errors.ThresholdError as error:
        return _reject(report, error, catalog.Surface.AUTHENTICATION)
    auth_data = response.authenticator_data
    report.update(
        sign_count=auth_data.counter,
        flags=_flags(auth_data),
        credential_id=b64url_encode(response.credential_id),
        public_key_cose=b64url_encode(public_key),
    )
    with contextlib.suppress(ValueError):
        report["alg"] = ceremony.public_key_algorithm(public_key)
    if report["alg"] is not None and report["alg"] not in params.algorithms:
        # The server allows only these (--alg): a key of another algorithm would
        # not have been registered, and is refused as §7.1 step 20 would have.
        refused = errors.AlgorithmNotAllowed(f"alg {report['alg']!r} is not allowed")
        return _reject(report, refused, catalog.Surface.AUTHENTICATION)
    # Who owns the credential is not known here: the response's own user handle
    # stands in, so the ownership step passes and every other step is checked.
    owner = response.user_handle or b"inspector"
    state = ceremony.AuthenticationState(
        challenge=params.challenge,
        user_verification=params.user_verification,
        expires_at=math.inf,
        user_handle=owner,
    )
    stored = ceremony.StoredCredential(
        credential_id=response.credential_id,
        public_key=public_key,
        sign_count=sign_count,
        backup_eligible=backup_eligible,
        user_handle=owner,
    )
    try:
        ceremony.finish_authentication(
            params.relying_party(), state, response, stored, now=params.now
        )
    except errors.ThresholdError as error:
        return _reject(report, error, catalog.Surface.AUTHENTICATION)
    report.update(verdict="accept", reason=None, message=None)
    return report
