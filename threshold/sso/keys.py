"""The keys that sign ID tokens and logout tokens, and the JWKS that publishes them.

One document holds every key: ``{"keys": [{"kid", "alg", "pem", "created_at", "retired_at"}]}``.
It is ``var/oidc-keys.json`` (THRESHOLD_VAR_DIR), created on first use with one RS256 and one
ES256 key, or ``THRESHOLD_OIDC_KEYS`` (the same JSON) when several servers share a database and
must sign with the same keys. The active key of each algorithm is the newest one not retired.
``threshold keys rotate`` adds new keys and retires the old ones; a retired key stays in the
JWKS until every token it signed has expired (the longest token lifetime after it retired), so
apps can still verify them. The ``kid`` is the key's RFC 7638 thumbprint.

The file is read again when it changes (one ``stat`` per use), so a rotation from the command
line reaches a running server at once.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

from django.conf import settings
from jwcrypto import jwk, jwt

from threshold import clock
from threshold.core.files import create_once

ALGORITHMS = ("RS256", "ES256")
ENV_VARIABLE = "THRESHOLD_OIDC_KEYS"
RSA_BITS = 2048


class KeysError(Exception):
    """The keys cannot be read or changed, in words for the operator."""


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    key: jwk.JWK
    created_at: int
    retired_at: int | None

    def public_jwk(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.key.export_public())
        data.update({"kid": self.kid, "alg": self.alg, "use": "sig"})
        return data


def _path() -> Path:
    return Path(settings.THRESHOLD.var_dir) / "oidc-keys.json"


def _new_key(alg: str, now: int) -> dict[str, Any]:
    key = (
        jwk.JWK.generate(kty="RSA", size=RSA_BITS)
        if alg == "RS256"
        else jwk.JWK.generate(kty="EC", crv="P-256")
    )
    pem = key.export_to_pem(private_key=True, password=None).decode("ascii")
    return {"kid": key.thumbprint(), "alg": alg, "pem": pem, "created_at": now, "retired_at": None}


def _parse(document: dict[str, Any]) -> list[SigningKey]:
    keys = []
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise KeysError('the OIDC keys must be a JSON document {"keys": [...]}')
    for entry in entries:
        try:
            key = jwk.JWK.from_pem(entry["pem"].encode("ascii"))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise KeysError(f"an OIDC key cannot be read: {exc!r}") from None
        if entry.get("alg") not in ALGORITHMS:
            raise KeysError(f"unknown algorithm {entry.get('alg')!r} in the OIDC keys")
        keys.append(
            SigningKey(
                kid=key.thumbprint(),
                alg=entry["alg"],
                key=key,
                created_at=int(entry.get("created_at", 0)),
                retired_at=entry.get("retired_at"),
            )
        )
    for alg in ALGORITHMS:
        if not any(k.alg == alg and k.retired_at is None for k in keys):
            raise KeysError(f"the OIDC keys have no active {alg} key")
    return keys


def _write(path: Path, document: dict[str, Any]) -> None:
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(document, handle, indent=2)
    temporary.replace(path)


def _read_document() -> tuple[dict[str, Any], bool]:
    """The keys' document and whether it comes from the environment."""
    raw = os.environ.get(ENV_VARIABLE, "").strip()
    if raw:
        try:
            return json.loads(raw), True
        except ValueError:
            raise KeysError(f"{ENV_VARIABLE} is not a JSON document of keys") from None
    path = _path()
    if not path.exists():
        now = int(clock.now())
        document = {"keys": [_new_key(alg, now) for alg in ALGORITHMS]}
        # Two processes may both find no keys: one document wins, and both use it.
        create_once(path, json.dumps(document, indent=2).encode())
    try:
        return json.loads(path.read_text()), False
    except (OSError, ValueError) as exc:
        raise KeysError(f"{path} cannot be read as the OIDC keys: {exc}") from None


_lock = threading.Lock()
_cache: tuple[Any, list[SigningKey]] | None = None


def _stamp() -> Any:
    raw = os.environ.get(ENV_VARIABLE, "")
    if raw.strip():
        return ("env", raw)
    try:
        stat = os.stat(_key_file(str(settings.THRESHOLD.var_dir)))
    except FileNotFoundError:
        return None
    return ("file", stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=4)
def _key_file(var_dir: str) -> str:
    """``_path()`` as a string, built once: the stamp is read for every ID token."""
    return os.path.join(var_dir, "oidc-keys.json")


def all_keys() -> list[SigningKey]:
    global _cache  # noqa: PLW0603 - the per-process cache of the parsed keys
    stamp = _stamp()
    cached = _cache
    if cached is not None and stamp is not None and cached[0] == stamp:
        return cached[1]
    with _lock:
        document, _ = _read_document()
        keys = _parse(document)
        _cache = (_stamp(), keys)
        return keys


def active_key(alg: str) -> SigningKey:
    candidates = [k for k in all_keys() if k.alg == alg and k.retired_at is None]
    return max(candidates, key=lambda k: k.created_at)


def key_by_kid(kid: str) -> SigningKey | None:
    return next((k for k in all_keys() if k.kid == kid), None)


def longest_token_lifetime() -> int:
    """How long a token a key signed stays valid: a retired key stays published that long."""
    provider = cast(dict[str, Any], settings.OAUTH2_PROVIDER)
    return max(
        int(provider["ID_TOKEN_EXPIRE_SECONDS"]), int(provider["ACCESS_TOKEN_EXPIRE_SECONDS"])
    )


def jwks() -> dict[str, Any]:
    """The public keys apps verify with: the active ones and the retired ones still needed."""
    now = clock.now()
    keep = longest_token_lifetime()
    return {
        "keys": [
            key.public_jwk()
            for key in all_keys()
            if key.retired_at is None or now - key.retired_at <= keep
        ]
    }


@dataclass(frozen=True)
class Rotation:
    new: list[str]
    retired: list[str]
    dropped: list[str]
    document: dict[str, Any]
    from_environment: bool


def rotate() -> Rotation:
    """New active keys (RS256 and ES256); the old ones retire, and keys retired long enough drop.

    With THRESHOLD_OIDC_KEYS the document is returned to be put in the environment of
    every server; otherwise the file is rewritten.
    """
    with _lock:
        document, from_environment = _read_document()
        _parse(document)  # a broken document is refused, not rotated
        now = int(clock.now())
        keep = longest_token_lifetime()
        kept, retired, dropped = [], [], []
        for entry in document.get("keys", []):
            entry["kid"] = jwk.JWK.from_pem(entry["pem"].encode("ascii")).thumbprint()
            if entry.get("retired_at") is None:
                entry["retired_at"] = now
                retired.append(entry["kid"])
                kept.append(entry)
            elif now - int(entry["retired_at"]) <= keep:
                kept.append(entry)
            else:
                dropped.append(entry["kid"])
        fresh = [_new_key(alg, now) for alg in ALGORITHMS]
        new_document = {"keys": fresh + kept}
        _parse(new_document)
        if not from_environment:
            _write(_path(), new_document)
        return Rotation(
            new=[entry["kid"] for entry in fresh],
            retired=retired,
            dropped=dropped,
            document=new_document,
            from_environment=from_environment,
        )


def verified_claims(token: str) -> dict[str, Any] | None:
    """The claims of an ID token Threshold signed with a key it still keeps, or None.

    Expired tokens pass: an ``id_token_hint`` still says who it was for (OpenID Connect Core
    §3.1.2.1, RP-Initiated Logout §2), and so do those signed with a retired key that is no
    longer published (``jwks``) but not yet dropped by a later rotation: an app whose person is
    still signed in can sign them out after a rotation. The issuer must be this one.
    """
    from jwcrypto.common import JWException  # noqa: PLC0415

    try:
        unverified = jwt.JWT(jwt=token)
        header = json.loads(unverified.token.objects["protected"])
        key = key_by_kid(header.get("kid", "")) if isinstance(header, dict) else None
        if key is None:
            return None
        claims = json.loads(jwt.JWT(jwt=token, key=key.key, check_claims={}).claims)
    except (JWException, ValueError, TypeError, KeyError, AttributeError):
        return None
    if not isinstance(claims, dict) or claims.get("iss") != settings.THRESHOLD.public_url:
        return None
    return claims
