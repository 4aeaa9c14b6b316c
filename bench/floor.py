"""The floor: what a sign-in costs when a server does nothing but the cryptography.

A WSGI application that answers the same three requests as Threshold's sign-in page, with
the smallest amount of work that is still an honest passkey sign-in:

    GET  /sign-in           a tiny page (the load generator reads its cookie and flow token)
    POST /sign-in/options   a fresh random challenge, authenticated with an HMAC (no storage)
    POST /sign-in/result    check the challenge's HMAC, the type, origin, RP ID hash and flags,
                            then verify the ES256 signature over authenticatorData || SHA-256(
                            clientDataJSON) with the credential's public key

No database, no session, no replay protection: it is a lower bound, not a product.
``bench/signin.py --floor`` serves it with gunicorn under the same settings as ``threshold
serve`` (sync workers, the same worker count, keep-alive and access log) and alternates
measuring windows between the two, so that Threshold's CPU per sign-in can be reported as a
ratio to this floor, measured in the same minutes on the same core.

The public keys come from a JSON file named by ``THRESHOLD_FLOOR_KEYS``: an object mapping a
base64url credential ID to the base64url X9.62 uncompressed P-256 point.

    THRESHOLD_FLOOR_KEYS=keys.json THRESHOLD_FLOOR_ORIGIN=http://localhost:8001 \\
        .venv/bin/python bench/floor.py 127.0.0.1:8001 2
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import sys
from collections.abc import Callable, Iterable
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

StartResponse = Callable[[str, list[tuple[str, str]]], Any]

_KEY = secrets.token_bytes(32)
_UP, _UV = 0x01, 0x04
_AUTH_DATA_BYTES = 37


def _b64d(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _b64e(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode()


def _load_keys() -> dict[bytes, ec.EllipticCurvePublicKey]:
    path = os.environ.get("THRESHOLD_FLOOR_KEYS", "")
    if not path:
        return {}
    with open(path) as handle:
        raw: dict[str, str] = json.load(handle)
    return {
        _b64d(cred_id): ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _b64d(point))
        for cred_id, point in raw.items()
    }


KEYS = _load_keys()
ORIGIN = os.environ.get("THRESHOLD_FLOOR_ORIGIN", "http://localhost")
RP_ID = os.environ.get("THRESHOLD_FLOOR_RP_ID", "localhost")
RP_ID_HASH = hashlib.sha256(RP_ID.encode()).digest()
PAGE = b'<!doctype html><title>Sign in</title><main data-flow=""></main>'


def _json(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body, separators=(",", ":")).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


def _options() -> dict[str, Any]:
    nonce = secrets.token_bytes(16)
    tag = hmac.new(_KEY, nonce, hashlib.sha256).digest()[:16]
    return {
        "status": "ok",
        "publicKey": {
            "challenge": _b64e(nonce + tag),
            "rpId": RP_ID,
            "timeout": 300000,
            "userVerification": "required",
        },
    }


def _verify(body: bytes) -> bool:
    try:
        credential = json.loads(body)
        response = credential["response"]
        client_data_json = _b64d(response["clientDataJSON"])
        auth_data = _b64d(response["authenticatorData"])
        signature = _b64d(response["signature"])
        public_key = KEYS[_b64d(credential["rawId"])]
        client_data = json.loads(client_data_json)
        challenge = _b64d(client_data["challenge"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        return False
    nonce, tag = challenge[:16], challenge[16:]
    expected = hmac.new(_KEY, nonce, hashlib.sha256).digest()[:16]
    if not hmac.compare_digest(tag, expected):
        return False
    if client_data.get("type") != "webauthn.get" or client_data.get("origin") != ORIGIN:
        return False
    # rpIdHash (32 bytes), flags (1), signCount (4): this RP's, the user present and verified.
    if (
        len(auth_data) < _AUTH_DATA_BYTES
        or auth_data[:32] != RP_ID_HASH
        or auth_data[32] & (_UP | _UV) != (_UP | _UV)
    ):
        return False
    try:
        public_key.verify(
            signature,
            auth_data + hashlib.sha256(client_data_json).digest(),
            ec.ECDSA(hashes.SHA256()),
        )
    except InvalidSignature:
        return False
    return True


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
    if method == "GET" and path == "/sign-in":
        start_response(
            "200 OK",
            [
                ("Content-Type", "text/html; charset=utf-8"),
                ("Content-Length", str(len(PAGE))),
                ("Set-Cookie", "threshold_csrf=floor; Path=/; SameSite=Lax"),
            ],
        )
        return [PAGE]
    if method == "POST" and path in ("/sign-in/options", "/sign-in/result"):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(min(length, 65536))
        if path == "/sign-in/options":
            return _json(start_response, "200 OK", _options())
        if _verify(body):
            return _json(start_response, "200 OK", {"status": "ok"})
        return _json(start_response, "400 Bad Request", {"status": "failed"})
    return _json(start_response, "404 Not Found", {"status": "not found"})


def serve(bind: str, workers: int) -> None:
    """gunicorn with the settings ``threshold serve`` runs with (``GUNICORN_SETTINGS``)."""
    # gunicorn's workers import this module for `application` alone.
    from gunicorn.app.base import BaseApplication  # noqa: PLC0415

    from threshold.cli.commands.serve import GUNICORN_SETTINGS  # noqa: PLC0415

    class Floor(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            settings = {
                **GUNICORN_SETTINGS,
                "bind": bind,
                "workers": workers,
                "proc_name": "threshold-floor",
            }
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return application

    Floor().run()


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
