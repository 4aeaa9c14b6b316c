"""Threshold Verify's clock in tests: real time plus the offset the server's tests move.

The app under test runs with this directory on PYTHONPATH, so Python imports this module at
start-up; ``threshold_verify.clock.now`` then adds the seconds stored in
THRESHOLD_TEST_CLOCK_FILE, the same file as the server's (tests/browser/clock), so both
clocks move together.
"""

from __future__ import annotations

import os
import time

_offset_file = os.environ.get("THRESHOLD_TEST_CLOCK_FILE")

if _offset_file:
    import threshold_verify.clock

    def _now(path: str = _offset_file) -> float:
        try:
            with open(path) as stored:
                offset = float(stored.read() or 0)
        except (OSError, ValueError):
            offset = 0.0
        return time.time() + offset

    threshold_verify.clock.now = _now
