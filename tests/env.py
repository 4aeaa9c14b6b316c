"""Loaded with `-p tests.env` (see pyproject.toml), before Django reads its settings."""

from __future__ import annotations

import os
import tempfile

# Before Django reads its settings: never touch the developer's var/ or mail.
os.environ.setdefault("THRESHOLD_VAR_DIR", tempfile.mkdtemp(prefix="threshold-test-"))
os.environ.setdefault("THRESHOLD_EMAIL_BACKEND", "file")
os.environ.setdefault("THRESHOLD_FIDO_CONFORMANCE", "1")
