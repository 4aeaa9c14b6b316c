"""Edits that turn a valid credential JSON into a malformed or tampered one."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

from threshold.core.encoding import b64url_decode, b64url_encode


def top(**members: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Replace (or, with ..., delete) members of the credential object."""

    def edit(data: dict[str, Any]) -> dict[str, Any]:
        for name, value in members.items():
            if value is ...:
                data.pop(name, None)
            else:
                data[name] = value
        return data

    return edit


def response(**members: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Replace (or, with ..., delete) members of credential.response."""

    def edit(data: dict[str, Any]) -> dict[str, Any]:
        top(**members)(data["response"])
        return data

    return edit


def client_data(**fields: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Replace (or, with ..., delete) clientDataJSON fields, keeping it otherwise valid."""

    def edit(data: dict[str, Any]) -> dict[str, Any]:
        client_data = json.loads(b64url_decode(data["response"]["clientDataJSON"]))
        top(**fields)(client_data)
        data["response"]["clientDataJSON"] = b64url_encode(json.dumps(client_data).encode())
        return data

    return edit


def mutate(rng: random.Random, blob: bytes) -> bytes:
    """One random edit: flip a bit, overwrite, delete, insert or truncate."""
    edited = bytearray(blob)
    if not edited:
        return rng.randbytes(rng.randrange(1, 4))
    at = rng.randrange(len(edited))
    operation = rng.randrange(5)
    if operation == 0:
        edited[at] ^= 1 << rng.randrange(8)
    elif operation == 1:
        edited[at] = rng.randrange(256)
    elif operation == 2:
        del edited[at : at + rng.randrange(1, 8)]
    elif operation == 3:
        edited[at:at] = rng.randbytes(rng.randrange(1, 8))
    else:
        del edited[at:]
    return bytes(edited)
