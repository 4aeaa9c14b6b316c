"""The device API's signed requests: a compact JWS (RFC 7515) signed by the device's P-256 key.

Every request Threshold Verify sends is ``BASE64URL(header).BASE64URL(payload).signature``
with ES256 (RFC 7518 §3.4) and nothing else:

- header: ``alg`` "ES256", ``typ`` ``TYPE``, and either ``kid`` (the device's ID, once the
  server knows the device) or ``jwk`` (the new device's public key, when it redeems a
  setup code: RFC 7515 §4.1.3);
- payload: ``jti`` (unique per request, 16 to 64 characters), ``iat`` and ``exp`` (unix
  seconds), ``htu`` (the request's path, so a request signed for one endpoint does nothing
  at another) and ``body`` (the request's own fields, a JSON object).

``read`` parses without verifying; the caller finds the device's key by ``kid`` (or takes
the ``jwk``) and ``verify`` checks the signature and then the times: ``iat`` within
``MAX_SKEW`` of the server's clock, ``exp`` not past, and a lifetime of at most
``MAX_LIFETIME``. The ``jti`` is the caller's to use up (once, stored until ``exp``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from jwcrypto import jwk, jws
from jwcrypto.common import JWException

from threshold.core import errors

ALGORITHM = "ES256"
TYPE = "threshold-device-request+jwt"
# Two minutes either way between the device's clock and the server's, and at most two
# minutes of validity (issue 12: "replays and clock skew beyond 2 minutes get a clear error").
MAX_SKEW = 120
MAX_LIFETIME = 120
# A request is small: a few fields, never a file.
MAX_LENGTH = 16 * 1024
_JTI = re.compile(r"[A-Za-z0-9_-]{16,64}")


@dataclass(frozen=True)
class DeviceRequest:
    """A parsed request: verified once ``verify`` returned it."""

    token: jws.JWS
    kid: str | None
    public_jwk: dict[str, str] | None  # the header's ``jwk``, for a device not yet known
    claims: dict[str, Any]

    @property
    def jti(self) -> str:
        return str(self.claims["jti"])

    @property
    def expires_at(self) -> float:
        return float(self.claims["exp"])

    @property
    def body(self) -> dict[str, Any]:
        body = self.claims.get("body", {})
        return body if isinstance(body, dict) else {}


def public_key(value: object) -> tuple[dict[str, str], str]:
    """A device's public key as Threshold stores it (kty, crv, x, y) and its RFC 7638
    thumbprint, or DeviceRequestMalformed: P-256 only, never a private key."""
    if not isinstance(value, dict) or set(value) - {"kty", "crv", "x", "y", "kid", "use", "alg"}:
        raise errors.DeviceRequestMalformed("the key is not a public P-256 JWK")
    if value.get("kty") != "EC" or value.get("crv") != "P-256":
        raise errors.DeviceRequestMalformed("the key is not P-256")
    stored = {name: value.get(name) for name in ("kty", "crv", "x", "y")}
    if not all(isinstance(part, str) for part in stored.values()):
        raise errors.DeviceRequestMalformed("the key is not a public P-256 JWK")
    try:
        key = jwk.JWK(**stored)
    except (JWException, ValueError, TypeError) as error:
        raise errors.DeviceRequestMalformed(f"the key does not parse: {error}") from None
    return {name: str(part) for name, part in stored.items()}, str(key.thumbprint())


def read(compact: str) -> DeviceRequest:
    """The request's header and (unverified) claims, or DeviceRequestMalformed."""
    if len(compact) > MAX_LENGTH or compact.count(".") != 2:  # noqa: PLR2004 - three parts
        raise errors.DeviceRequestMalformed("not a compact JWS")
    token = jws.JWS()
    try:
        token.deserialize(compact)
        header = token.jose_header
    except (JWException, ValueError, TypeError) as error:
        raise errors.DeviceRequestMalformed(f"not a compact JWS: {error}") from None
    if not isinstance(header, dict) or header.get("alg") != ALGORITHM:
        raise errors.DeviceRequestMalformed("the algorithm must be ES256")
    if header.get("typ") != TYPE:
        raise errors.DeviceRequestMalformed(f"the type must be {TYPE}")
    kid, public_jwk = header.get("kid"), header.get("jwk")
    if (kid is None) == (public_jwk is None):
        raise errors.DeviceRequestMalformed("the header needs kid or jwk, not both")
    if kid is not None and not (isinstance(kid, str) and 0 < len(kid) <= 64):  # noqa: PLR2004
        raise errors.DeviceRequestMalformed("kid must be a device ID")
    claims = _unverified_claims(token)
    return DeviceRequest(token, kid, public_key(public_jwk)[0] if public_jwk else None, claims)


def _unverified_claims(token: jws.JWS) -> dict[str, Any]:
    # jwcrypto gives the payload only once verified: read the object's own copy of it, to
    # refuse a malformed request before any key is looked up. verify() reads it again.
    try:
        payload = token.objects["payload"]
        claims = json.loads(payload)
    except (KeyError, ValueError, TypeError, RecursionError) as error:
        raise errors.DeviceRequestMalformed(f"the payload is not JSON: {error}") from None
    if not isinstance(claims, dict):
        raise errors.DeviceRequestMalformed("the payload is not a JSON object")
    jti = claims.get("jti")
    if not (isinstance(jti, str) and _JTI.fullmatch(jti)):
        raise errors.DeviceRequestMalformed("jti must be 16 to 64 URL-safe characters")
    for name in ("iat", "exp"):
        value = claims.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise errors.DeviceRequestMalformed(f"{name} must be a number")
        try:
            # verify() compares them as floats: 1e400 as an integer does not convert.
            finite = math.isfinite(value)
        except OverflowError:
            finite = False
        if not finite:
            raise errors.DeviceRequestMalformed(f"{name} must be a finite number")
    if not isinstance(claims.get("htu"), str):
        raise errors.DeviceRequestMalformed("htu must be the request's path")
    if not isinstance(claims.get("body", {}), dict):
        raise errors.DeviceRequestMalformed("body must be a JSON object")
    return claims


def verify(request: DeviceRequest, public_jwk: dict[str, str], *, path: str, now: float) -> None:
    """Check the signature with ``public_jwk``, then the path and the times; raises the
    matching DeviceError. The signature first: nothing about an unsigned request is trusted."""
    try:
        key = jwk.JWK(**public_jwk)
        request.token.verify(key, alg=ALGORITHM)
    except (JWException, ValueError, TypeError):
        raise errors.DeviceSignatureInvalid() from None
    claims = request.claims
    if claims["htu"] != path:
        raise errors.DeviceRequestMalformed(f"signed for {claims['htu']!r}, sent to {path!r}")
    iat, exp = float(claims["iat"]), float(claims["exp"])
    if abs(now - iat) > MAX_SKEW:
        raise errors.DeviceClockSkew(f"iat is {now - iat:+.0f} s from the server's clock")
    if exp <= now:
        raise errors.DeviceClockSkew(f"expired {now - exp:.0f} s ago")
    if not 0 < exp - iat <= MAX_LIFETIME:
        raise errors.DeviceClockSkew(f"a lifetime of {exp - iat:.0f} s")
