"""The real `threshold` command and `make`, run from tests as a newcomer would run them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# What the test run (pytest's settings, make's own variables) must not hand to a child process.
_NOT_A_NEWCOMERS = ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")


def newcomer_environment(**extra: str) -> dict[str, str]:
    """This environment without any THRESHOLD_* setting or the test run's, plus ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("THRESHOLD_") and key not in _NOT_A_NEWCOMERS
    }
    env.update(extra)
    return env


def threshold_command() -> list[str]:
    """The installed `threshold` script, or the module when there is none."""
    script = Path(sys.prefix) / "bin" / "threshold"
    return [str(script)] if script.exists() else [sys.executable, "-m", "threshold.cli.main"]
