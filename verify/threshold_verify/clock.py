"""The app's one clock (tests move it as they move the server's)."""

from __future__ import annotations

import time


def now() -> float:
    return time.time()
