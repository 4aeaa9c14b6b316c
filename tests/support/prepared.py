"""The fast sign-in path's statements as PostgreSQL receives them, read as the statements they
stand for (``threshold.passkeys.hotpath.execute_prepared``)."""

from __future__ import annotations

import re

# What each statement begins with, by the label execute_prepared names it with.
_BEGINS = {"find": "WITH used AS", "record": "WITH moved AS"}
_EXECUTE = re.compile(r"EXECUTE threshold_([a-z]+)_[0-9a-f]{16}\(")


def unprepared(sql: str) -> str | None:
    """``sql`` with a prepared statement's EXECUTE read as the statement's first words; None
    for a PREPARE (sent once per connection, after a DEALLOCATE when its plan went stale)."""
    if sql.lstrip().startswith(("PREPARE threshold_", "DEALLOCATE threshold_")):
        return None
    return _EXECUTE.sub(lambda match: f"{_BEGINS[match.group(1)]} (", sql)
