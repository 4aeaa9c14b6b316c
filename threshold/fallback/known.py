"""Browsers that signed in as someone with the password and a code before: OWASP's "device
cookies" (Slow Down Online Guessing Attacks with Device Cookies).

The password step counts wrong passwords for a username from every network together
(``actions._keys``: a doubling wait once the policy's threshold is passed), so that a
guesser spread over many networks is slowed. Such a guesser could slow the person too; a
browser this cookie names the username in is not: its attempts for that username neither
count against nor wait for that counter (the per-network ones still apply).

The cookie holds keyed digests of up to ``MOST`` usernames (never the usernames), signed and
dated by the server's key, for ``MAX_AGE``; HttpOnly, sent only to the password step.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.crypto import salted_hmac

from threshold.accounts.models import normalize_username

COOKIE = f"{settings.COOKIE_PREFIX}threshold_known"
_SALT = "threshold.fallback.known"
MAX_AGE = timedelta(days=365)
# Usernames one browser is known for (a shared computer: the last few people).
MOST = 5


def _tag(username: str) -> str:
    return salted_hmac(_SALT, normalize_username(username), algorithm="sha256").hexdigest()[:32]


def _tags(request: HttpRequest) -> list[str]:
    raw = request.COOKIES.get(COOKIE)
    if not raw:
        return []
    try:
        tags = signing.loads(raw, salt=_SALT, max_age=MAX_AGE)
    except signing.BadSignature:  # altered, another server's key, or older than MAX_AGE
        return []
    if not isinstance(tags, list):
        return []
    return [tag for tag in tags if isinstance(tag, str)][-MOST:]


def known_for(request: HttpRequest, username: str) -> bool:
    """Whether this browser signed in as ``username`` with the fallback within ``MAX_AGE``."""
    return _tag(username) in _tags(request)


def remember(request: HttpRequest, response: HttpResponse, username: str) -> None:
    """This browser just signed in as ``username`` with the password and a code."""
    tag = _tag(username)
    tags = [*(t for t in _tags(request) if t != tag), tag][-MOST:]
    response.set_cookie(
        COOKIE,
        signing.dumps(tags, salt=_SALT),
        max_age=int(MAX_AGE.total_seconds()),
        path=reverse("fallback:password"),
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )
