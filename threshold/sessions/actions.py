"""Starting and ending signed-in sessions."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import login, logout
from django.db import transaction
from django.http import HttpRequest

from threshold import clock
from threshold.accounts.models import User
from threshold.audit.actions import Action, Origin, record
from threshold.core.assurance import Assurance
from threshold.sessions.models import Session
from threshold.sessions.stepup import VERIFIED_AT
from threshold.sessions.store import (
    LAST_SEEN,
    SIGN_IN_ACR,
    SIGN_IN_AMR,
    SIGN_IN_IP,
    SIGN_IN_METHOD,
    SIGN_IN_USER_AGENT,
    SIGNED_IN_AT,
    SignedInWith,
)
from threshold.web.http import audit_origin


def sign_in(
    request: HttpRequest,
    user: Any,
    assurance: Assurance,
    *,
    method: SignedInWith = SignedInWith.PASSKEY,
    user_verified: bool = False,
) -> None:
    """Start a signed-in session for ``user`` under a new session key.

    ``assurance``: the ``amr``/``acr`` this sign-in earned, kept for applications.
    ``user_verified``: the authenticator verified the person (PIN, biometrics);
    the time goes in ``VERIFIED_AT`` for step-up checks.
    """
    previous_key = request.session.session_key
    login(request, user, backend="threshold.accounts.backends.PasskeyBackend")
    # login() keeps the key when the same person signs in again; a sign-in
    # always gets a fresh one (session fixation).
    if request.session.session_key == previous_key:
        request.session.cycle_key()
    now = clock.now()
    origin = audit_origin(request)
    session = request.session
    session[SIGNED_IN_AT] = now
    session[LAST_SEEN] = now
    session[SIGN_IN_IP] = origin.ip
    session[SIGN_IN_USER_AGENT] = origin.user_agent[:512]
    session[SIGN_IN_METHOD] = method
    session[SIGN_IN_AMR] = [str(value) for value in assurance.amr]
    session[SIGN_IN_ACR] = None if assurance.acr is None else str(assurance.acr)
    if user_verified:
        session[VERIFIED_AT] = now


def sign_out(request: HttpRequest) -> None:
    """End this browser's session; a signed-in person's sign-out is audited."""
    if request.user.is_authenticated:
        user = request.user
        record(Action.SIGN_OUT, audit_origin(request), actor=user, subject=user)
    logout(request)


@transaction.atomic
def do_sign_out_other_sessions(user: User, current_session_key: str | None, origin: Origin) -> int:
    """Delete all of the person's sessions but this one; returns how many there were.

    Their other browsers find themselves signed out at their next request.
    Expired rows that ``threshold cleanup`` has not removed yet go too, and count.
    """
    count, _ = Session.objects.filter(user=user).exclude(session_key=current_session_key).delete()
    record(Action.SESSIONS_ENDED, origin, actor=user, subject=user, count=count)
    return count


@transaction.atomic
def do_end_sessions(user: User, origin: Origin, *, actor: User) -> int:
    """An administrator ends every session of ``user`` (the admin portal); how many there were.

    Their browsers find themselves signed out at their next request.
    """
    count, _ = Session.objects.filter(user=user).delete()
    record(
        Action.SESSIONS_ENDED,
        origin,
        actor=actor,
        subject=user,
        count=count,
        before={"sessions": count},
        after={"sessions": 0},
    )
    return count
