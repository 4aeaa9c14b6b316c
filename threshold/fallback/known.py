"""Browsers that signed in as someone with the password and a code before: OWASP's "device
cookies" (Slow Down Online Guessing Attacks with Device Cookies).

The password step counts wrong passwords for a username from every network together
(``actions._keys``: a doubling wait once the policy's threshold is passed), so that a
guesser spread over many networks is slowed. Such a guesser could slow the person too; a
browser this cookie names the person in counts its wrong passwords against a counter of its
own instead (``browser_key``), with the same wait: the person's browser is not slowed by
strangers, and a copied cookie is slowed as a stranger is.

Each entry is a keyed digest of the username and of the person's password (so a new
password, a reset or a recovery ends it) and a random nonce (the entry's own counter), for up
to ``MOST`` people, signed and dated by the server's key, for ``MAX_AGE``; HttpOnly, ``Path=/``
(what a ``__Host-`` cookie must have over HTTPS, and the code step, which sets it, must see
it).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.http import HttpRequest, HttpResponse
from django.utils.crypto import constant_time_compare, salted_hmac

from threshold.accounts.models import User, normalize_username

COOKIE = f"{settings.COOKIE_PREFIX}threshold_known"
_SALT = "threshold.fallback.known"
MAX_AGE = timedelta(days=365)
# People one browser is known for (a shared computer: the last few).
MOST = 5


def _tag(user: User) -> str:
    text = f"{normalize_username(user.username)}\0{user.get_session_auth_hash()}"
    return salted_hmac(_SALT, text, algorithm="sha256").hexdigest()[:32]


def _entries(request: HttpRequest) -> list[tuple[str, str]]:
    raw = request.COOKIES.get(COOKIE)
    if not raw:
        return []
    try:
        entries = signing.loads(raw, salt=_SALT, max_age=MAX_AGE)
    except signing.BadSignature:  # altered, another server's key, or older than MAX_AGE
        return []
    if not isinstance(entries, list):
        return []
    return [
        (entry[0], entry[1])
        for entry in entries
        if isinstance(entry, list) and len(entry) == 2 and all(isinstance(e, str) for e in entry)  # noqa: PLR2004
    ][-MOST:]


def browser_key(request: HttpRequest, username: str) -> str | None:
    """This browser's own key for ``username``'s wrong passwords, when it signed in as that
    person with the fallback within ``MAX_AGE`` and their password has not changed since;
    else None. Reads the person only for a cookie this server signed."""
    entries = _entries(request)
    if not entries:
        return None
    user = User.objects.filter(username=normalize_username(username)).first()
    if user is None:
        return None
    tag = _tag(user)
    for entry_tag, nonce in entries:
        if constant_time_compare(entry_tag, tag):
            return "known:" + hashlib.sha256(nonce.encode()).hexdigest()
    return None


def remember(request: HttpRequest, response: HttpResponse, user: User) -> None:
    """This browser just signed in as ``user`` with the password and a code."""
    tag = _tag(user)
    kept = [[t, n] for t, n in _entries(request) if t != tag]
    entries = [*kept, [tag, secrets.token_urlsafe(16)]][-MOST:]
    response.set_cookie(
        COOKIE,
        signing.dumps(entries, salt=_SALT),
        max_age=int(MAX_AGE.total_seconds()),
        path="/",
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )
