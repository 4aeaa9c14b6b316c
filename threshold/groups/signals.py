"""Signals the groups' actions send for apps above them (threshold/sso/ listens).

``members_left``: people stopped being members of a group inside the sending action's
transaction, after the change: taken out of it (``reason="removed_from_group"``) or the
group removed (``"group_removed"``). Keyword arguments: ``user_ids`` (the people who left),
``group`` (its name), ``origin``, ``actor`` (or None), ``reason``. A receiver takes away what
the membership gave them (an app assigned to the group: its tokens).
"""

from __future__ import annotations

from django.dispatch import Signal

members_left = Signal()
