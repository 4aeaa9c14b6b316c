"""What an app is told about the Threshold session it signs in from: sid, auth_time, amr, acr.

The ``sid`` is a random value kept in the session's data (``SID``), made at sign-in
(``sessions.actions.new_sid``; a session signed in before that gets one at its first
``/authorize``). It stays while the same person signs in again in the same
browser (``prompt=login``, a step-up: the data moves to the new key), and never reveals the
session key, which must not leave the server.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest

from threshold.accounts.methods import RecordedSignIn, still_signs_in
from threshold.accounts.models import User
from threshold.audit.actions import Origin
from threshold.core.encoding import b64url_encode
from threshold.core.policy import Policy
from threshold.policy.access import policy_for
from threshold.sessions.actions import end_if_timed_out, new_sid, timed_out_column
from threshold.sessions.models import Session
from threshold.sessions.stepup import VERIFIED_AT
from threshold.sessions.store import (
    SID,
    SIGN_IN_ACR,
    SIGN_IN_AMR,
    SIGN_IN_CREDENTIAL,
    SIGN_IN_METHOD,
    SIGNED_IN_AT,
    SignedInWith,
)


@dataclass(frozen=True)
class SessionFacts:
    sid: str
    auth_time: int
    amr: list[str]
    acr: str


def facts_of(request: HttpRequest) -> SessionFacts:
    """The signed-in session's facts, giving it a sid if it has none yet."""
    session = request.session
    sid = session.get(SID)
    if not isinstance(sid, str):  # a session signed in before sign-in made one
        sid = new_sid()
        session[SID] = sid
    signed_in_at = session.get(SIGNED_IN_AT)
    amr = session.get(SIGN_IN_AMR)
    acr = session.get(SIGN_IN_ACR)
    return SessionFacts(
        sid=sid,
        auth_time=int(signed_in_at) if isinstance(signed_in_at, int | float) else 0,
        amr=[str(value) for value in amr] if isinstance(amr, list) else [],
        acr=acr if isinstance(acr, str) else "",
    )


def sign_in_stands(request: HttpRequest, user: User) -> bool:
    """Whether the policy in force (with the person's groups' rules) still lets them sign in
    the way this browser's session did (``stands``), at ``/authorize``. A session signed in
    before a passkey was deny-listed, or the password turned off, signs in to no app until the
    person signs in again (Okta's app sign-on policy is evaluated the same way, at each app's
    sign-in)."""
    return stands(request.session, user, lambda: policy_for(request))


def stands(session: Mapping[str, Any], user: User, policy: Callable[[], Policy]) -> bool:
    """Whether ``policy()`` (with the person's groups' rules) still lets ``user`` sign in the
    way the session whose data is ``session`` did: the passkey or device it recorded still
    theirs and allowed, the password fallback still allowed and set up."""
    method = session.get(SIGN_IN_METHOD)
    if method is None:
        return True  # nothing recorded: a session Threshold did not sign in (a test's login)
    try:
        kind = SignedInWith(method).kind
    except ValueError:
        return False
    credential = session.get(SIGN_IN_CREDENTIAL, "")
    recorded = RecordedSignIn(
        credential=credential if isinstance(credential, str) else "",
        user_verified=isinstance(session.get(VERIFIED_AT), int | float),
    )
    return still_signs_in(user, policy, kind, recorded)


def live_session(user: User, sid: str, origin: Origin, *, app: str) -> dict[str, Any] | None:
    """The data of ``user``'s Threshold session ``sid`` while it is still signed in (it exists
    and is within its timeouts), None otherwise. One past them is ended here and now (its apps
    hear of it, its tokens without ``offline_access`` are revoked; its session.expired row has
    ``origin``, that of the request of the app ``app``, its client ID, that found it), not at
    the browser's next request or the next ``threshold cleanup``. A person has a few sessions;
    each one's data is read to find the sid, and whether it timed out, in one SELECT."""
    store = Session.get_session_store_class()()
    sessions = (
        Session.objects.filter(user=user)
        .annotate(timed_out=timed_out_column())
        .values_list("session_key", "session_data", "timed_out")
    )
    for key, data, timed_out in sessions:
        decoded: dict[str, Any] = store.decode(data)
        if decoded.get(SID) == sid:
            if timed_out:
                # Ended here, or by another request meanwhile (a timed-out session is never
                # refreshed: the middleware ends it): not signed in either way.
                end_if_timed_out(user, key, origin, app=app)
                return None
            return decoded
    return None


def subject_of(user: User) -> str:
    """The ``sub`` claim: stable and opaque, derived from the WebAuthn user handle, never the email.

    A hash rather than the handle itself, so the value apps store is not the one authenticators
    hold; no secret goes into it, so a new THRESHOLD_SECRET_KEY never changes anyone's ``sub``.
    """
    digest = hashlib.sha256(b"threshold sub\x00" + bytes(user.user_handle)).digest()
    return b64url_encode(digest)
