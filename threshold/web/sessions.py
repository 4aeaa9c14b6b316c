"""Django's database sessions, with fewer statements on the sign-in path, listed by person.

Sessions stay server-side (sign-out and timeouts end them for real); the store
only drops work Django's store does that the database already guarantees:

- A new key is not checked with a SELECT first: the primary key refuses a
  duplicate INSERT, and a refused one is retried with a fresh key.
- ``cycle_key`` (a new key at sign-in) deletes the old row, if any, with one
  DELETE and inserts the new one with the response, instead of SELECT, INSERT,
  SELECT, DELETE and UPDATE.

A passkey ceremony needs no session (the browser keeps its state in a signed
token, ``threshold.passkeys.pending``): an anonymous visitor has no session row
until something is stored for them (the fallback's password step).

Each row (``threshold.web.models.Session``) also has columns for the person, IP,
browser, how and when they signed in and when they were last active. They are
derived from the session data in the same INSERT or UPDATE that writes it, so
they cost no statement of their own; ``list_active_sessions`` and
``do_sign_out_other_sessions`` read and end a person's sessions through them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends import db
from django.contrib.sessions.backends.base import VALID_KEY_CHARS, CreateError
from django.db import transaction
from django.utils.crypto import get_random_string

from threshold import clock
from threshold.accounts.models import User
from threshold.audit.actions import Action, Origin, record
from threshold.core.useragent import Client, describe
from threshold.web.models import Session

# What ``threshold.web.middleware.sign_in`` puts in a signed-in session. Times are
# unix times from ``threshold.clock``.
SIGNED_IN_AT = "threshold.signed_in_at"
LAST_SEEN = "threshold.last_seen"  # refreshed at most once a minute by SessionTimeoutMiddleware
SIGN_IN_IP = "threshold.sign_in_ip"  # REMOTE_ADDR, or None
SIGN_IN_USER_AGENT = "threshold.sign_in_user_agent"  # at most 512 characters
SIGN_IN_METHOD = "threshold.sign_in_method"  # "passkey", "password+app", "password+recovery_code"
# The last sign-in in this session whose passkey verified the user (PIN,
# biometrics): step-up checks compare it with the clock.
VERIFIED_AT = "threshold.verified_at"
# A sign-in with a password and a code: enough to add a passkey right after
# ("Set up a passkey"), never to remove a method.
FALLBACK_VERIFIED_AT = "threshold.fallback_verified_at"

# A cookie kept while this browser is signed in (SessionTimeoutMiddleware), not a
# session key: a request that brings it without a signed-in session is one whose
# session ended (timeouts, signed out elsewhere, a recovery, a lock), and /sign-in
# says so once. Signing out here removes it. Nobody who never signed in has it,
# and it costs no database write.
SIGNED_IN_COOKIE = "threshold_signed_in"

# How people read SIGN_IN_METHOD (through ``describe_sign_in_method``).
SIGN_IN_METHODS = {
    "passkey": "a passkey",
    "password+app": "a password and authenticator app",
    "password+recovery_code": "a password and recovery code",
}


def describe_sign_in_method(method: str) -> str:
    """How a session was signed in, as every page says it: "a passkey", ..., or "" if unknown."""
    return SIGN_IN_METHODS.get(method, "")


class SessionStore(db.SessionStore):
    _unsaved = False

    @classmethod
    def get_model_class(cls) -> type[Session]:  # type: ignore[override]
        return Session

    def create_model_instance(self, data: dict[str, Any]) -> Session:
        session = Session(
            session_key=self._get_or_create_session_key(),  # type: ignore[attr-defined]
            session_data=self.encode(data),
            expire_date=self.get_expiry_date(),
        )
        user_id = data.get(SESSION_KEY)
        if user_id is not None:
            session.user_id = User._meta.pk.to_python(user_id)  # type: ignore[union-attr]
            session.ip = data.get(SIGN_IN_IP)
            session.user_agent = data.get(SIGN_IN_USER_AGENT, "")
            session.sign_in_method = data.get(SIGN_IN_METHOD, "")
            session.signed_in_at = _at(data.get(SIGNED_IN_AT))
            session.last_activity = _at(data.get(LAST_SEEN))
        return session

    def _get_new_session_key(self) -> str:
        return get_random_string(32, VALID_KEY_CHARS)

    def cycle_key(self) -> None:
        data = self._get_session()  # type: ignore[attr-defined]
        old_key = self.session_key
        self._session_key = self._get_new_session_key()
        self._session_cache = data
        self._unsaved = True
        self.modified = True
        if old_key:
            self.delete(old_key)

    def delete(self, session_key: str | None = None) -> None:
        key = session_key or self.session_key
        if key is not None:
            self.model.objects.filter(session_key=key).delete()

    def save(self, must_create: bool = False) -> Any:
        if not self._unsaved:
            return super().save(must_create)
        self._unsaved = False
        try:
            return super().save(must_create=True)
        except CreateError:
            # Another session took this key (never seen in practice): a fresh one.
            self._session_key = None
            return super().save()


def _at(unix_time: Any) -> datetime | None:
    if isinstance(unix_time, int | float):
        return datetime.fromtimestamp(unix_time, UTC)
    return None


# --- A person's sessions -----------------------------------------------------------------------


@dataclass(frozen=True)
class ActiveSession:
    is_current: bool
    client: Client  # the browser and system, from the User-Agent at sign-in
    ip: str | None
    sign_in_method: str  # a SIGN_IN_METHODS key
    signed_in_at: datetime
    last_activity: datetime

    @property
    def signed_in_with(self) -> str:
        """ "a passkey", "a password and authenticator app", ..., or ""."""
        return describe_sign_in_method(self.sign_in_method)


def list_active_sessions(user: User, current_session_key: str | None) -> list[ActiveSession]:
    """The person's sessions that have not ended: this one first, then the most recently active.

    A session has ended when it is past its expiry date or past the idle or
    absolute timeout, as ``SessionTimeoutMiddleware`` measures them (its row
    stays until the person's next request or ``threshold cleanup``).
    """
    now = clock.now()
    rows = (
        Session.objects.filter(
            user=user,
            expire_date__gt=datetime.fromtimestamp(now, UTC),
            signed_in_at__gte=datetime.fromtimestamp(now - settings.THRESHOLD_SESSION_MAX_AGE, UTC),
            last_activity__gte=datetime.fromtimestamp(
                now - settings.THRESHOLD_SESSION_IDLE_TIMEOUT, UTC
            ),
        )
        .defer("session_data")
        .order_by("-last_activity", "-signed_in_at", "session_key")
    )
    sessions = [
        ActiveSession(
            is_current=row.session_key == current_session_key,
            client=describe(row.user_agent),
            ip=row.ip,
            sign_in_method=row.sign_in_method,
            signed_in_at=row.signed_in_at,
            # This request is activity: the row's time is refreshed at most once a
            # minute, and only with the response.
            last_activity=(
                datetime.fromtimestamp(now, UTC)
                if row.session_key == current_session_key
                else row.last_activity
            ),
        )
        for row in rows
        if row.signed_in_at is not None and row.last_activity is not None
    ]
    return sorted(sessions, key=lambda session: not session.is_current)


@transaction.atomic
def do_sign_out_other_sessions(user: User, current_session_key: str | None, origin: Origin) -> int:
    """Delete all of the person's sessions but this one; returns how many there were.

    Their other browsers find themselves signed out at their next request.
    Expired rows that ``threshold cleanup`` has not removed yet go too, and count.
    """
    count, _ = Session.objects.filter(user=user).exclude(session_key=current_session_key).delete()
    record(Action.SESSIONS_ENDED, origin, actor=user, subject=user, count=count)
    return count
