"""Loaded with `-p tests.env` (see pyproject.toml), before Django reads its settings."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# Before Django reads its settings: never touch the developer's var/ or mail.
if "THRESHOLD_VAR_DIR" not in os.environ:
    _var_dir = tempfile.mkdtemp(prefix="threshold-test-")
    atexit.register(shutil.rmtree, _var_dir, ignore_errors=True)
    os.environ["THRESHOLD_VAR_DIR"] = _var_dir
os.environ.setdefault("THRESHOLD_EMAIL_BACKEND", "file")
os.environ.setdefault("THRESHOLD_FIDO_CONFORMANCE", "1")
