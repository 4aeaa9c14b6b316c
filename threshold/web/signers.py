"""Django's signers, built once per salt and kept.

A ``django.core.signing.Signer`` reads ``SECRET_KEY`` and ``SECRET_KEY_FALLBACKS`` when it is
built (about 4 µs here), and the sign-in builds three (its page's flow token, the ceremony
token, signed then opened): kept, they cost nothing per request. The settings only change in
tests (``override_settings``), which empties the cache.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.core import signing
from django.core.signals import setting_changed

_KEYS = frozenset({"SECRET_KEY", "SECRET_KEY_FALLBACKS"})


@lru_cache(maxsize=32)
def signer(salt: str) -> signing.Signer:
    """``signing.Signer(salt=salt)``, with the keys in the settings."""
    return signing.Signer(salt=salt)


def _forget(*, setting: str, **_: Any) -> None:
    if setting in _KEYS:
        signer.cache_clear()


setting_changed.connect(_forget, dispatch_uid="threshold.web.signers.forget")
