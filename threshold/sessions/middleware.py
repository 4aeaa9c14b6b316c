"""A signed-in session's idle and absolute timeouts, and the cookie that says it ended."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import logout
from django.db import transaction
from django.http import HttpRequest, HttpResponse

from threshold import clock
from threshold.accounts.actions import lock_user
from threshold.audit.actions import Action, record
from threshold.core import errors
from threshold.sessions.store import LAST_SEEN, SIGNED_IN_AT
from threshold.web.http import audit_origin

# Refresh the idle clock at most this often, so that reading pages does not
# write the session on every request.
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
            elif (
                now - signed_in_at > settings.THRESHOLD_SESSION_MAX_AGE
                or now - last_seen > settings.THRESHOLD_SESSION_IDLE_TIMEOUT
            ):
                user = request.user
                with transaction.atomic():
                    lock_user(user)  # first, as every ending of a session of theirs
                    record(Action.SESSION_EXPIRED, audit_origin(request), actor=user, subject=user)
                    logout(request)
            elif now - last_seen > _LAST_SEEN_RESOLUTION:
                request.session[LAST_SEEN] = now
        response = self.get_response(request)
        if request.user.is_authenticated:
            remember_signed_in(request, response)
        return response


def remember_signed_in(request: HttpRequest, response: HttpResponse) -> None:
    """Keep ``SIGNED_IN_COOKIE`` as long as the session cookie.

    Set at sign-in and renewed whenever the session is saved (so the session
    cookie's expiry is renewed too: at most once a minute): a browser that
    still has its session cookie has this one.
    """
    if request.COOKIES.get(SIGNED_IN_COOKIE) and not request.session.modified:
        return
    set_signed_in_cookie(response)


def set_signed_in_cookie(response: HttpResponse) -> None:
    """``SIGNED_IN_COOKIE``, for as long as a new session's cookie."""
    response.set_cookie(
        SIGNED_IN_COOKIE,
        "1",
        max_age=settings.SESSION_COOKIE_AGE,
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )


def forget_signed_in(response: HttpResponse) -> None:
    """This browser signed out on purpose: its next sign-in page has nothing to explain."""
    response.delete_cookie(SIGNED_IN_COOKIE, samesite="Lax")
