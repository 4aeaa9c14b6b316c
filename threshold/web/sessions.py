"""Django's database sessions, with fewer statements on the sign-in path.

Sessions stay server-side (sign-out and timeouts end them for real); this only
drops work Django's store does that the database already guarantees:

- A new key is not checked with a SELECT first: the primary key refuses a
  duplicate INSERT, and a refused one is retried with a fresh key.
- ``reserve_key`` gives an anonymous session its key at once (a ceremony is
  bound to it) but writes the row once, when the response is sent, instead of
  INSERT now and UPDATE later.
- ``cycle_key`` (a new key at sign-in) deletes the old row with one DELETE and
  inserts the new one with the response, instead of SELECT, INSERT, SELECT,
  DELETE and UPDATE.
"""

from __future__ import annotations

from typing import Any

from django.contrib.sessions.backends import db
from django.contrib.sessions.backends.base import VALID_KEY_CHARS, CreateError
from django.utils.crypto import get_random_string


class SessionStore(db.SessionStore):
    _unsaved = False

    def _get_new_session_key(self) -> str:
        return get_random_string(32, VALID_KEY_CHARS)

    def reserve_key(self) -> str:
        """This session's key, giving a new session one now; the row is written on save."""
        if self.session_key is None:
            self._session_cache = self._get_session()  # type: ignore[attr-defined]
            self._session_key = self._get_new_session_key()
            self._unsaved = True
            self.modified = True
        assert self.session_key is not None  # noqa: S101
        return self.session_key

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
