"""base64url as WebAuthn's JSON serialisation uses it (RFC 4648 §5, unpadded)."""

from __future__ import annotations

import base64
import binascii
import re

_B64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(value: object) -> bytes:
    """Decode unpadded or padded base64url; raise ``ValueError`` on anything else.

    ``base64.urlsafe_b64decode`` silently drops characters outside the alphabet,
    so the alphabet is checked first: a garbled value must not decode to
    something else.
    """
    if not isinstance(value, str) or not _B64URL.fullmatch(value):
        raise ValueError("not base64url")
    stripped = value.rstrip("=")
    if len(stripped) % 4 == 1:
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    except binascii.Error as exc:
        raise ValueError("not base64url") from exc
