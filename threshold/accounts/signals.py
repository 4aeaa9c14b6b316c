"""Signals the accounts' actions send for apps above them (threshold/sso/ listens).

``access_withdrawn``: a person's access was taken away inside the sending action's
transaction: locked (``reason="locked"``), deactivated (``"deactivated"``), recovered from a
lost passkey (``"recovered"``), every session ended from the admin portal (``"sessions_ended"``),
or their other sessions signed out (``"other_sessions_ended"``, with ``keep_session_key``,
the session that stays). Keyword arguments: ``user``, ``origin``, ``reason``,
``keep_session_key`` (or None), ``actor`` (whose action it was: the person, a staff member, or
None for the command line). A receiver revokes what it issued on the person's behalf.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.dispatch import Signal

access_withdrawn = Signal()

# Set while an action that sends ``access_withdrawn`` ends the person's sessions: what those
# sessions gave out is then revoked by the signal's receivers, with the action's reason, not
# by each session's end.
WITHDRAWING: ContextVar[bool] = ContextVar("threshold_access_withdrawing", default=False)


@contextmanager
def withdrawing() -> Iterator[None]:
    """The block ends sessions of a person whose access ``access_withdrawn`` then withdraws."""
    token = WITHDRAWING.set(True)
    try:
        yield
    finally:
        WITHDRAWING.reset(token)
