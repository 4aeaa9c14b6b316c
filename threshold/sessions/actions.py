"""Starting and ending signed-in sessions."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, login, logout
from django.contrib.sessions.backends.base import UpdateError
from django.contrib.sessions.exceptions import SessionInterrupted
from django.db import transaction
from django.db.models import BooleanField, ExpressionWrapper, Q, QuerySet
from django.http import HttpRequest

from threshold import clock
from threshold.accounts.actions import lock_user, lock_users
from threshold.accounts.models import User
from threshold.accounts.signals import access_withdrawn, withdrawing
from threshold.audit.actions import Action, Origin, audit_event, record, record_all
from threshold.core import errors
from threshold.core.assurance import Assurance
from threshold.sessions.models import Session, held_by_app
from threshold.sessions.stepup import VERIFIED_AT
from threshold.sessions.store import (
    LAST_SEEN,
    SID,
    SIGN_IN_ACR,
    SIGN_IN_AMR,
    SIGN_IN_CREDENTIAL,
    SIGN_IN_IP,
    SIGN_IN_METHOD,
    SIGN_IN_USER_AGENT,
    SIGNED_IN_AT,
    SessionStore,
    SignedInWith,
)
from threshold.web.http import audit_origin

# The backend login() records in a session: PasskeyBackend only reloads people for sessions.
SESSION_BACKEND = "threshold.accounts.backends.PasskeyBackend"

T = TypeVar("T")


def with_the_session(request: HttpRequest, change: Callable[[], T], then: Callable[[T], Any]) -> T:
    """``change()``, then, if it succeeded, ``then(result)`` (a sign-in, a new session hash, a
    step-up: what the session keeps of it) and the session saved, in one transaction.

    Django's session middleware saves the session when the response goes out, in a
    transaction of its own. A database that failed there answered "try again" for a change
    that had already happened and used up what a retry needs (an enrollment or recovery
    link, a recovery code, an approved push), and ``cycle_key``'s DELETE of the replaced
    row, already committed, signed the person out without telling their apps. Saved here,
    both go or neither; the middleware's save then writes nothing (``SessionStore.save_now``)
    and only sends the cookie.

    A refusal (``ThresholdError``) that ``change`` raises once it has kept what it keeps (a
    used challenge, an audit row, a counted attempt) is raised after that commits, as it
    would be without this.
    """
    refusal: errors.ThresholdError
    with transaction.atomic():
        try:
            result = change()
        except errors.ThresholdError as error:
            refusal = error
        else:
            then(result)
            session = request.session
            try:
                if isinstance(session, SessionStore):
                    session.save_now()
                else:  # a test's own engine
                    session.save()
            except UpdateError:
                # Ended meanwhile (signed out in another tab, ended by the help desk): what
                # Django's session middleware answers (400), and the change is not made.
                raise SessionInterrupted(
                    "The session was ended before the request completed."
                ) from None
            return result
    raise refusal


def sign_in(
    request: HttpRequest,
    user: Any,
    assurance: Assurance,
    *,
    method: SignedInWith = SignedInWith.PASSKEY,
    user_verified: bool = False,
    credential: int | None = None,
) -> None:
    """Start a signed-in session for ``user`` under a new session key.

    ``assurance``: the ``amr``/``acr`` this sign-in earned, kept for applications.
    ``user_verified``: the authenticator verified the person (PIN, biometrics);
    the time goes in ``VERIFIED_AT`` for step-up checks.
    ``credential``: the id of the passkey or device that signed in (``SIGN_IN_CREDENTIAL``).
    """
    previous_key = request.session.session_key
    login(request, user, backend=SESSION_BACKEND)
    # login() keeps the key when the same person signs in again; a sign-in
    # always gets a fresh one (session fixation).
    if request.session.session_key == previous_key:
        request.session.cycle_key()
    details = sign_in_details(
        audit_origin(request),
        assurance,
        method=method,
        user_verified=user_verified,
        credential=credential,
    )
    # login() kept the data when the same person signs in again: an earlier sign-in's
    # credential is not this one's.
    request.session.pop(SIGN_IN_CREDENTIAL, None)
    for key, value in details.items():
        request.session[key] = value
    if not isinstance(request.session.get(SID), str):
        # Kept when the same person signs in again here (login() kept the data): the apps
        # signed in to from this session know it by its sid.
        request.session[SID] = new_sid()


def new_sid() -> str:
    """A new session's ``sid`` (``SID``): random, never derived from the session key."""
    return secrets.token_urlsafe(24)


def sign_in_details(
    origin: Origin,
    assurance: Assurance,
    *,
    method: SignedInWith = SignedInWith.PASSKEY,
    user_verified: bool = False,
    credential: int | None = None,
) -> dict[str, Any]:
    """What a sign-in puts in its session besides Django's own keys, in that order."""
    now = clock.now()
    details: dict[str, Any] = {
        SIGNED_IN_AT: now,
        LAST_SEEN: now,
        SIGN_IN_IP: origin.ip,
        SIGN_IN_USER_AGENT: origin.user_agent[:512],
        SIGN_IN_METHOD: method,
        SIGN_IN_AMR: [str(value) for value in assurance.amr],
        SIGN_IN_ACR: None if assurance.acr is None else str(assurance.acr),
    }
    if credential is not None:
        details[SIGN_IN_CREDENTIAL] = str(credential)
    if user_verified:
        details[VERIFIED_AT] = now
    return details


def new_signed_in_session(
    user: User,
    origin: Origin,
    assurance: Assurance,
    *,
    method: SignedInWith = SignedInWith.PASSKEY,
    user_verified: bool = False,
    credential: int | None = None,
    extra: dict[str, Any] | None = None,
) -> Session:
    """The row ``sign_in`` would have saved for an anonymous browser, not saved yet.

    For the lean sign-in path (``threshold.passkeys.lean``), which writes it in the
    ceremony's transaction: the same data, in the same order (``login()``'s keys,
    then ``sign_in_details``), encoded and given its columns by the same store. ``extra``:
    more of the session's data after those (a first-party app's session: its ``sid`` and
    ``SIGN_IN_APP``, ``threshold.sso.firstparty``).
    """
    data: dict[str, Any] = {
        SESSION_KEY: user._meta.pk.value_to_string(user),
        BACKEND_SESSION_KEY: SESSION_BACKEND,
        HASH_SESSION_KEY: user.get_session_auth_hash(),
        **sign_in_details(
            origin, assurance, method=method, user_verified=user_verified, credential=credential
        ),
        SID: new_sid(),
        **(extra or {}),
    }
    store = SessionStore()
    store.update(data)  # a store without a key loads nothing
    return store.create_model_instance(data)


def sign_out(request: HttpRequest, *, reason: str = "") -> None:
    """End this browser's session; a signed-in person's sign-out is audited (with ``reason``
    when Threshold, not the person, ends it).

    The person's row first, as every ending of their sessions takes it (``lock_user``):
    their sessions' and tokens' rows are then only ever taken by one change at a time."""
    with transaction.atomic():
        if isinstance(request.user, User):
            user = request.user
            lock_user(user)
            record(
                Action.SIGN_OUT,
                audit_origin(request),
                actor=user,
                subject=user,
                **({"reason": reason} if reason else {}),
            )
        logout(request)


@transaction.atomic
def do_sign_out_other_sessions(user: User, current_session_key: str | None, origin: Origin) -> int:
    """Delete all of the person's sessions but this one; returns how many there were.

    Their other browsers find themselves signed out at their next request.
    Expired rows that ``threshold cleanup`` has not removed yet go too, and count.
    The person's row first (``lock_user``), then the sessions, then (``access_withdrawn``)
    their tokens, as a lock, a recovery or a group removal takes them: taken in other
    orders, two revocations for one person could each wait for the other on PostgreSQL.
    """
    lock_user(user)
    with withdrawing():
        count, _ = (
            Session.objects.filter(user=user).exclude(session_key=current_session_key).delete()
        )
    record(Action.SESSIONS_ENDED, origin, actor=user, subject=user, count=count)
    access_withdrawn.send(
        User,
        user=user,
        origin=origin,
        reason="other_sessions_ended",
        keep_session_key=current_session_key,
        actor=user,
    )
    return count


class Timeout(StrEnum):
    """Which timeout ended a session (its session.expired row's ``timeout``; stored values).
    Past both, the absolute one."""

    IDLE = "idle"
    ABSOLUTE = "absolute"


# People whose timed-out sessions ``delete_timed_out_sessions`` ends in one transaction.
_PEOPLE_PER_TRANSACTION = 500


def delete_timed_out_sessions(origin: Origin | None = None) -> int:
    """End the signed-in sessions past their idle or absolute timeout; returns how many.

    ``SessionTimeoutMiddleware`` ends such a session when its browser comes back;
    ``threshold cleanup`` ends the others, so that whoever watches sessions end
    (back-channel logout to apps) hears of every timeout, not only of those. Each has its
    session.expired row, as one the middleware ends (``origin``: the command line's by
    default), written with it.
    A session a first-party app holds (``held_by_app``) has no idle timeout, only the
    absolute one: the app's refreshes at /token are its use, which the session never sees.
    A few hundred people at a time, their rows first and in the order of their IDs
    (``lock_users``), as every ending of someone's sessions takes them.
    """
    origin = Origin.cli() if origin is None else origin
    timed_out = Session.objects.exclude(user=None).filter(_timed_out())
    people = sorted(set(timed_out.values_list("user_id", flat=True)))
    count = 0
    for start in range(0, len(people), _PEOPLE_PER_TRANSACTION):
        batch = people[start : start + _PEOPLE_PER_TRANSACTION]
        with transaction.atomic():
            lock_users(batch)
            count += _end_timed_out(Session.objects.filter(user_id__in=batch), origin)
    return count


def _timed_out(now: datetime | None = None) -> Q:
    """The signed-in sessions past their idle or absolute timeout, now (the middleware's rule,
    on the columns): a session a first-party app holds has only the absolute one."""
    now = clock.now_datetime() if now is None else now
    idle = timedelta(seconds=settings.THRESHOLD_SESSION_IDLE_TIMEOUT)
    return (Q(last_activity__lt=now - idle) & ~held_by_app()) | Q(signed_in_at__lt=_longest(now))


def timed_out_column() -> ExpressionWrapper[Q]:
    """Whether a session is past a timeout now, as a column of a query of sessions: to find
    out in the SELECT that reads it, before ``end_if_timed_out`` takes the person's row."""
    return ExpressionWrapper(_timed_out(), output_field=BooleanField())


def _longest(now: datetime) -> datetime:
    """Sessions signed in before this are past their absolute timeout at ``now``."""
    return now - timedelta(seconds=settings.THRESHOLD_SESSION_MAX_AGE)


def timeout_of(now: float, signed_in_at: float, last_seen: float) -> Timeout | None:
    """Which timeout a session signed in at ``signed_in_at`` and last seen at ``last_seen``
    (seconds, as its data holds them) is past at ``now``, if any (the middleware's rule)."""
    if now - signed_in_at > settings.THRESHOLD_SESSION_MAX_AGE:
        return Timeout.ABSOLUTE
    if now - last_seen > settings.THRESHOLD_SESSION_IDLE_TIMEOUT:
        return Timeout.IDLE
    return None


def _end_timed_out(sessions: QuerySet[Session], origin: Origin, **detail: Any) -> int:
    """End those of ``sessions`` past a timeout, each with its session.expired row (which
    timeout: ``Timeout``), the rows in one INSERT; how many. In a transaction that holds
    their people's rows (``lock_user``)."""
    now = clock.now_datetime()
    timed_out = sessions.exclude(user=None).filter(_timed_out(now))
    # Held until the transaction ends (SQLite's write lock holds them already): what is read
    # here is what the DELETE below, with the same ``now``, ends.
    ended = list(timed_out.select_for_update(of=("self",)).select_related("user").order_by("pk"))
    if not ended:
        return 0
    longest = _longest(now)
    # Each row before its session's end, as the middleware writes it: then what the end sets
    # off (its apps' tokens revoked, their back-channel logouts).
    record_all(
        audit_event(
            Action.SESSION_EXPIRED,
            origin,
            subject=session.user,
            timeout=Timeout.ABSOLUTE
            if session.signed_in_at is not None and session.signed_in_at < longest
            else Timeout.IDLE,
            **detail,
        )
        for session in ended
    )
    deleted, _ = timed_out.delete()
    return deleted


def end_if_timed_out(user: User, session_key: str, origin: Origin, **detail: Any) -> bool:
    """End ``user``'s session ``session_key`` if it is past a timeout, as ``threshold
    cleanup`` would (whoever watches sessions end hears of it: an app's back-channel logout,
    its tokens without ``offline_access`` revoked; its session.expired row says which
    timeout, with ``detail``); whether it had timed out. For what must not wait for the
    browser's next request or the next cleanup: a refresh at /token (``origin``: the app's)."""
    with transaction.atomic():
        lock_user(user)  # first, as every ending of a session of theirs
        return (
            _end_timed_out(Session.objects.filter(user=user, pk=session_key), origin, **detail) > 0
        )


@transaction.atomic
def do_end_sessions(user: User, origin: Origin, *, actor: User) -> int:
    """An administrator ends every session of ``user`` (the admin portal); how many there were.

    Their browsers find themselves signed out at their next request. The person's row
    first, as ``do_sign_out_other_sessions`` takes it.
    """
    lock_user(user)
    with withdrawing():
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
    access_withdrawn.send(
        User, user=user, origin=origin, reason="sessions_ended", keep_session_key=None, actor=actor
    )
    return count
