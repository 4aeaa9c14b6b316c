"""The browser tests' server clock: real time plus an offset the test moves forward.

Tests may fake the clock and nothing else. The server under test runs with
this directory on PYTHONPATH, so Python imports this module at start-up, in
the gunicorn master and so in every worker; ``threshold.clock.now`` then adds
the number of seconds stored in THRESHOLD_TEST_CLOCK_FILE (see
``Server.advance_clock`` in tests/browser/conftest.py).
"""

from __future__ import annotations

import os
import time

_offset_file = os.environ.get("THRESHOLD_TEST_CLOCK_FILE")

if _offset_file:
    import threshold.clock

    def _now(path: str = _offset_file) -> float:
        try:
            with open(path) as stored:
                offset = float(stored.read() or 0)
        except (OSError, ValueError):
            offset = 0.0
        return time.time() + offset

    threshold.clock.now = _now
