"""Signals the accounts' actions send for apps above them (threshold/sso/ listens).

``access_withdrawn``: a person's access was taken away inside the sending action's
transaction: locked (``reason="locked"``), deactivated (``"deactivated"``), recovered from a
lost passkey (``"recovered"``), every session ended from the admin portal (``"sessions_ended"``),
or their other sessions signed out (``"other_sessions_ended"``, with ``keep_session_key``,
the session that stays). Keyword arguments: ``user``, ``origin``, ``reason``,
``keep_session_key`` (or None). A receiver revokes what it issued on the person's behalf.
"""

from __future__ import annotations

from django.dispatch import Signal

access_withdrawn = Signal()
