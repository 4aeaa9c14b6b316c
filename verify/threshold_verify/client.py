"""The device API's client: each request a compact JWS signed by the device key (ES256).

docs/device-api.md in Threshold's repository describes the protocol. The JWS is put
together here rather than by a JOSE library because the signature may come from a TPM,
which no such library can drive: the signing input is RFC 7515 §5.1's
``BASE64URL(header) || '.' || BASE64URL(payload)``, the signature ES256's ``r || s``.
"""

from __future__ import annotations

import ipaddress
import json
import platform
import secrets
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from threshold_verify import __version__, clock
from threshold_verify.encoding import b64url
from threshold_verify.stores import KeyStore

TYPE = "threshold-device-request+jwt"
API = "/api/device/v1/"
LIFETIME = 60  # seconds a signed request stays valid (the server allows at most 120)


class ServerError(Exception):
    """The server refused: its catalog entry (title, message, code) and the HTTP status."""

    def __init__(self, status: int, title: str, message: str, code: str) -> None:
        super().__init__(f"{title}: {message}" if message else title)
        self.status, self.title, self.code = status, title, code


def check_server_url(url: str) -> str:
    """``url`` without a trailing slash: HTTPS, or plain HTTP only to this machine itself."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.path not in ("",):
        raise ValueError(f"not a sign-in address: {url!r} (example: https://id.example.com)")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ValueError("a sign-in address must use https (plain http only on this machine)")
    return url


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Signer:
    store: KeyStore
    key_ref: str
    device_id: str | None = None  # None: send the public key (jwk) instead, to enroll

    def sign(self, path: str, body: dict[str, Any]) -> str:
        header: dict[str, Any] = {"alg": "ES256", "typ": TYPE}
        if self.device_id is None:
            header["jwk"] = self.store.public_jwk(self.key_ref)
        else:
            header["kid"] = self.device_id
        issued = int(clock.now())
        claims = {
            "jti": secrets.token_urlsafe(24),
            "iat": issued,
            "exp": issued + LIFETIME,
            "htu": path,
            "body": body,
        }
        signing_input = f"{_part(header)}.{_part(claims)}"
        signature = self.store.sign(self.key_ref, signing_input.encode("ascii"))
        return f"{signing_input}.{b64url(signature)}"


def _part(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


# What this app says it is, so that Threshold's emails about a change made from it name it
# ("From: Threshold Verify on Linux"), not Python's HTTP library.
USER_AGENT = f"ThresholdVerify/{__version__} ({platform.system() or 'unknown'})"


def call(server: str, endpoint: str, signer: Signer, body: dict[str, Any] | None = None) -> Any:
    """POST one signed request to ``server``'s device API; its JSON answer, or ServerError."""
    path = API + endpoint
    compact = signer.sign(path, body or {})
    request = urllib.request.Request(  # noqa: S310 - check_server_url allows http(s) only
        server + path,
        data=compact.encode("ascii"),
        method="POST",
        headers={
            "Content-Type": "application/jose",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise _server_error(error) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        raise ServerError(
            0,
            "Connection Issue",
            f"Threshold at {server} could not be reached ({error}).",
            "device_connection_issue",
        ) from None


def _server_error(error: urllib.error.HTTPError) -> ServerError:
    try:
        entry = json.loads(error.read())["error"]
        return ServerError(error.code, entry["title"], entry["message"], entry["code"])
    except (ValueError, KeyError, TypeError):
        return ServerError(error.code, f"HTTP {error.code}", "", "")
