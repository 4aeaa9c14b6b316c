"""Django's database sessions, with fewer statements on the sign-in path, listed by person.

``SESSION_ENGINE``. Sessions stay server-side (sign-out and timeouts end them for
real); the store only drops work Django's store does that the database already
guarantees:

- A new key is not checked with a SELECT first: the primary key refuses a
  duplicate INSERT, and a refused one is retried with a fresh key.
- ``cycle_key`` (a new key at sign-in) deletes the old row, if any, with one
  DELETE and inserts the new one with the response, instead of SELECT, INSERT,
  SELECT, DELETE and UPDATE.

A passkey ceremony needs no session (the browser keeps its state in a signed
token, ``threshold.passkeys.pending``): an anonymous visitor has no session row
until something is stored for them (the fallback's password step).

Each row (``threshold.sessions.models.Session``) also has columns for the person,
IP, browser, how and when they signed in and when they were last active. They are
derived from the session data in the same INSERT or UPDATE that writes it, so
they cost no statement of their own; ``threshold.sessions.access.list_active_sessions``
and ``threshold.sessions.actions.do_sign_out_other_sessions`` read and end a
person's sessions through them.
"""

from __future__ import annotations

from contextvars import ContextVar
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeGuard

from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends import db
from django.contrib.sessions.backends.base import VALID_KEY_CHARS, CreateError, UpdateError
from django.db import InterfaceError, OperationalError

from threshold.accounts.methods import MethodKind
from threshold.accounts.models import User
from threshold.core.randomness import random_string
from threshold.sessions.models import Session


class SignedInWith(StrEnum):
    """How a session was signed in: in its data and its ``Session.sign_in_method`` column."""

    PASSKEY = "passkey"
    PASSWORD_AND_APP = "password+app"  # noqa: S105 - a way of signing in, not a password
    PASSWORD_AND_RECOVERY_CODE = "password+recovery_code"  # noqa: S105
    DEVICE_APP = "device_app"  # a push approved in Threshold Verify

    @property
    def kind(self) -> MethodKind:
        """The kind of sign-in method it was (``threshold.accounts.methods``)."""
        if self is SignedInWith.PASSKEY:
            return MethodKind.PASSKEY
        if self is SignedInWith.DEVICE_APP:
            return MethodKind.DEVICE_APP
        return MethodKind.PASSWORD_AND_APP  # with the app's code or a recovery code


# What ``threshold.sessions.actions.sign_in`` puts in a signed-in session. Times are
# unix times from ``threshold.clock``.
SIGNED_IN_AT = "threshold.signed_in_at"
LAST_SEEN = "threshold.last_seen"  # refreshed at most once a minute by SessionTimeoutMiddleware
SIGN_IN_IP = "threshold.sign_in_ip"  # the client's address (web.proxy), or None
SIGN_IN_USER_AGENT = "threshold.sign_in_user_agent"  # at most 512 characters
SIGN_IN_METHOD = "threshold.sign_in_method"  # a SignedInWith value
SIGN_IN_AMR = "threshold.amr"  # list of threshold.core.assurance.Amr values
SIGN_IN_ACR = "threshold.acr"  # a threshold.core.assurance.Acr value, or None
# Which passkey or Threshold Verify device signed the session in (its row's id, as text), for a
# sign-in with one: /authorize asks whether the policy in force still lets it sign in
# (``threshold.accounts.methods.still_signs_in``). Absent for a password's sign-in, and for a
# session signed in before Threshold recorded it.
SIGN_IN_CREDENTIAL = "threshold.sign_in_credential"
# The name of the first-party app that holds the session (threshold/sso/firstparty.py): a
# session signed in to inside an app, with no browser. Absent for a browser's.
SIGN_IN_APP = "threshold.sign_in_app"
# The session's ``sid`` (OpenID Connect's session ID, threshold/sso/sessions.py): a random value
# made at sign-in, so that two apps signed in to at once from a new session get one sid, not
# one each (the later save's). Kept while the same person signs in again in the same browser.
SID = "threshold.sso.sid"
# That app's client_id (``Session.app_client_id``): its name may change, this does not.
SIGN_IN_APP_CLIENT = "threshold.sign_in_app_client"


_KEY_LENGTH = 32  # Django's
# True while ``cycle_key`` deletes the row it replaces: the session goes on under its new key,
# so whoever watches sessions end (threshold/sso/, back-channel logout) lets that one pass.
KEY_CYCLING: ContextVar[bool] = ContextVar("threshold_session_key_cycling", default=False)


_KEY_CHARS = frozenset(VALID_KEY_CHARS)


def is_session_key(value: object) -> TypeGuard[str]:
    """Could ``value`` be a session key this store made (32 of Django's key characters)? A
    cookie is any text: one with a NUL, say, must not reach a query (PostgreSQL refuses it).
    Django's own check is only a length of at least 8."""
    return isinstance(value, str) and len(value) == _KEY_LENGTH and _KEY_CHARS.issuperset(value)


class SessionStore(db.SessionStore):
    _unsaved = False
    # What this store last wrote, as (key, serialized data): set by a save made inside the
    # change it belongs to (``sessions.actions.with_the_session``), so that the middleware's
    # save when the response goes out writes nothing more when nothing changed since.
    _saved_as: tuple[str | None, bytes] | None = None

    def _validate_session_key(self, key: str | None) -> bool:
        return is_session_key(key)

    @classmethod
    def get_model_class(cls) -> type[Session]:
        return Session

    def create_model_instance(self, data: dict[str, Any]) -> Session:
        session = Session(
            # django-stubs omits SessionBase's private helpers (_get_or_create_session_key,
            # _get_session) that Django's own database store calls.
            session_key=self._get_or_create_session_key(),  # type: ignore[attr-defined]
            session_data=self.encode(data),
            expire_date=self.get_expiry_date(),
        )
        user_id = data.get(SESSION_KEY)
        if user_id is not None:
            session.user_id = User._meta.pk.to_python(user_id)
            session.ip = data.get(SIGN_IN_IP)
            session.user_agent = data.get(SIGN_IN_USER_AGENT, "")
            session.sign_in_method = data.get(SIGN_IN_METHOD, "")
            session.signed_in_at = _at(data.get(SIGNED_IN_AT))
            session.last_activity = _at(data.get(LAST_SEEN))
            session.app_name = str(data.get(SIGN_IN_APP) or "")[:100]
            session.app_client_id = str(data.get(SIGN_IN_APP_CLIENT) or "")[:100]
        return session

    def _get_new_session_key(self) -> str:
        # What get_random_string(32, VALID_KEY_CHARS) returns, uniformly at random, from one
        # draw of the CSPRNG instead of 32 (a tenth of a sign-in's session work).
        return random_string(_KEY_LENGTH, VALID_KEY_CHARS)

    def cycle_key(self) -> None:
        data = self._get_session()  # type: ignore[attr-defined]  # a stub gap, as above
        old_key = self.session_key
        self._session_key = self._get_new_session_key()
        self._session_cache = data
        self._unsaved = True
        self.modified = True
        if old_key:
            cycling = KEY_CYCLING.set(True)
            try:
                self.delete(old_key)
            finally:
                KEY_CYCLING.reset(cycling)

    def delete(self, session_key: str | None = None) -> None:
        key = session_key or self.session_key
        if key is not None:
            self.model.objects.filter(session_key=key).delete()

    def save(self, must_create: bool = False) -> Any:
        if self._saved_as is not None and not must_create:
            if self._saved_as == (self.session_key, self._serialized()):
                return None
            self._saved_as = None
        if not self._unsaved:
            try:
                return super().save(must_create)
            except UpdateError as error:
                # Django turns any database error in the UPDATE into UpdateError, which its
                # middleware answers as a session that ended meanwhile (400, "restart"). A
                # database that failed or was busy is an outage, answered 503 "try again"
                # (``web.views.server_error``): the session itself is fine.
                if isinstance(error.__context__, OperationalError | InterfaceError):
                    raise error.__context__ from None
                raise
        self._unsaved = False
        try:
            return super().save(must_create=True)
        except CreateError:
            # Another session took this key (never seen in practice): a fresh one.
            self._session_key = None
            return super().save()

    def save_now(self) -> None:
        """Save, and remember what was saved (``_saved_as``): the middleware's later save of
        the same key and data writes nothing."""
        self._saved_as = None
        self.save()
        self._saved_as = (self.session_key, self._serialized())

    def _serialized(self) -> bytes:
        return self.serializer().dumps(self._get_session())  # type: ignore[attr-defined,no-any-return]


def _at(unix_time: Any) -> datetime | None:
    if isinstance(unix_time, int | float):
        return datetime.fromtimestamp(unix_time, UTC)
    return None
