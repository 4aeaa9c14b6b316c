"""A signed-in session's idle and absolute timeouts, the cookie that says it ended, what no
cache keeps, and the username the sign-in page hands to the password page."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote, unquote

from django.conf import settings
from django.contrib.auth import logout
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers, cc_delim_re

from threshold import clock
from threshold.accounts.actions import lock_user
from threshold.audit.actions import Action, record
from threshold.core import errors
from threshold.core.names import has_ascii_control, is_text
from threshold.sessions.actions import timeout_of
from threshold.sessions.store import LAST_SEEN, SIGNED_IN_AT
from threshold.web.http import audit_origin

# Refresh the idle clock once a sixtieth of the idle timeout, or a minute if that is shorter, has
# passed since it was written, so that reading pages does not write the session on every
# request: a session ends at most that much before its idle timeout after its last request (a
# minute of the default hour; 2 s of a shared computer's 2 minutes).
_LAST_SEEN_PARTS = 60
_LAST_SEEN_RESOLUTION = 60

# A cookie kept while this browser is signed in (SessionTimeoutMiddleware), not a
# session key: a request that brings it without a signed-in session is one whose
# session ended (timeouts, signed out elsewhere, a recovery, a lock), and /sign-in
# says so once. Signing out here removes it. Nobody who never signed in has it,
# and it costs no database write.
SIGNED_IN_COOKIE = f"{settings.COOKIE_PREFIX}threshold_signed_in"


class SessionTimeoutMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated:
            now = clock.now()
            signed_in_at = request.session.get(SIGNED_IN_AT, 0)
            last_seen = request.session.get(LAST_SEEN, 0)
            if not getattr(request.user, "can_sign_in", True):
                # Locking deletes the person's sessions; this ends one that a
                # sign-in verified just before the lock wrote afterwards. The
                # user row is loaded already: no extra query.
                user = request.user
                with transaction.atomic():
                    lock_user(user)  # first, as every ending of a session of theirs
                    record(
                        Action.SESSION_EXPIRED,
                        audit_origin(request),
                        actor=user,
                        subject=user,
                        reason=errors.AccountLocked.code,
                    )
                    logout(request)
            elif timeout := timeout_of(now, signed_in_at, last_seen):
                user = request.user
                session = request.session
                with transaction.atomic():
                    lock_user(user)  # first, as every ending of a session of theirs
                    if session.session_key and session.exists(session.session_key):
                        # (Else ended meanwhile, its row written: by ``threshold cleanup``, a
                        # refresh at /token or this browser's other request.)
                        record(
                            Action.SESSION_EXPIRED,
                            audit_origin(request),
                            actor=user,
                            subject=user,
                            timeout=timeout,
                        )
                    logout(request)
            elif now - last_seen > min(
                _LAST_SEEN_RESOLUTION, settings.THRESHOLD_SESSION_IDLE_TIMEOUT / _LAST_SEEN_PARTS
            ):
                request.session[LAST_SEEN] = now
        signed_in = request.user.is_authenticated  # still, once the timeouts above were applied
        response = self.get_response(request)
        if signed_in and not response.has_header("Cache-Control"):
            # A page a signed-in browser was answered (their name in the account menu, a
            # CSRF token) is kept by no cache, as the pages that say so themselves
            # (``never_cache``): help pages, "Sign out", /verify/, the error pages. (Not the
            # answer that signs a browser in: the lean path answers it the same.)
            add_never_cache_headers(response)
        if not request.user.is_authenticated:
            return response
        if is_public(response):
            # A document anyone may keep (/jwks, the discovery document, /.well-known/): it
            # carries no cookie of this browser's, which a shared cache would keep and hand to
            # everyone. Its view reads and writes nothing of the session, so the idle clock's
            # refresh above is all there is to leave unsaved (SessionMiddleware saves, and
            # sends the cookie, only a modified session): the next page refreshes it.
            request.session.modified = False
            return response
        remember_signed_in(request, response)
        return response


def is_public(response: HttpResponse) -> bool:
    """Whether the answer says any cache may keep it (``Cache-Control: public``)."""
    directives = cc_delim_re.split(response.get("Cache-Control") or "")
    return any(directive.split("=", 1)[0].strip().lower() == "public" for directive in directives)


def remember_signed_in(request: HttpRequest, response: HttpResponse) -> None:
    """Keep ``SIGNED_IN_COOKIE`` as long as the session cookie.

    Set at sign-in and again whenever the session is saved (at most once a minute): a
    browser that still has its session cookie has this one. Both end with the browser.
    """
    if request.COOKIES.get(SIGNED_IN_COOKIE) and not request.session.modified:
        return
    set_signed_in_cookie(response)


def session_cookie_max_age() -> int | None:
    """A new session cookie's Max-Age, as SessionMiddleware gives it: None (no Max-Age, no
    Expires: it ends with the browser) under SESSION_EXPIRE_AT_BROWSER_CLOSE, Threshold's
    setting; the session's age otherwise."""
    return None if settings.SESSION_EXPIRE_AT_BROWSER_CLOSE else int(settings.SESSION_COOKIE_AGE)


def set_signed_in_cookie(response: HttpResponse) -> None:
    """``SIGNED_IN_COOKIE``, for as long as a new session's cookie (until the browser closes)."""
    response.set_cookie(
        SIGNED_IN_COOKIE,
        "1",
        max_age=session_cookie_max_age(),
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )


def forget_signed_in(response: HttpResponse) -> None:
    """This browser signed out on purpose: its next sign-in page has nothing to explain."""
    response.delete_cookie(SIGNED_IN_COOKIE, samesite="Lax")


# The username typed on the sign-in page, which "Sign in with a password instead" fills in on
# /sign-in/password (WCAG 3.3.7, Redundant Entry) without putting it in a URL, where access
# logs and the history would keep it: webauthn.js writes it as either link is followed (so it
# is not HttpOnly), and so does the sign-in page's answer to its form sent without JavaScript;
# the password page's GET reads it. For as long as a sign-in page stays usable (10 minutes).
TYPED_USERNAME_COOKIE = f"{settings.COOKIE_PREFIX}threshold_username"
TYPED_USERNAME_MAX_AGE = 600  # webauthn.js's Max-Age too
_TYPED_USERNAME_MAX_LENGTH = 150  # the sign-in page's field's maxlength


def remember_typed_username(response: HttpResponse, username: str) -> None:
    """``TYPED_USERNAME_COOKIE``, as webauthn.js writes it (percent-encoded UTF-8)."""
    response.set_cookie(
        TYPED_USERNAME_COOKIE,
        quote(username[:_TYPED_USERNAME_MAX_LENGTH], safe=""),
        max_age=TYPED_USERNAME_MAX_AGE,
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=False,  # webauthn.js replaces it; it holds only what was typed on the page
        samesite="Strict",
    )


def typed_username(request: HttpRequest) -> str:
    """The username typed on the sign-in page (``TYPED_USERNAME_COOKIE``), or "" when there is
    none or it is not one a person could have typed there."""
    try:
        value = unquote(request.COOKIES.get(TYPED_USERNAME_COOKIE, ""), errors="strict")
    except UnicodeDecodeError:
        return ""
    value = value.strip()
    if len(value) > _TYPED_USERNAME_MAX_LENGTH or has_ascii_control(value) or not is_text(value):
        return ""
    return value


def forget_typed_username(response: HttpResponse) -> None:
    """The password was right: the username has done its work."""
    response.delete_cookie(TYPED_USERNAME_COOKIE, samesite="Strict")
