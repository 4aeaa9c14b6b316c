"""The one clock. Tests pin time by patching ``threshold.clock.now``."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now() -> float:
    return time.time()


def now_datetime() -> datetime:
    return datetime.fromtimestamp(now(), UTC)
