"""Loaded with `-p tests.env` (see pyproject.toml), before Django reads its settings."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from tests.support.processes import RUN_DIR

# Set in the environment when the var/ directory below is the test run's own, not the developer's.
_OWN_VAR_DIR = "THRESHOLD_TEST_OWN_VAR_DIR"

# Before Django reads its settings: never touch the developer's var/ or mail. pytest-xdist's
# workers (`-n 2`) inherit the environment of the run that starts them: each makes its own var/
# too (secret key, mail, collected static files, the SQLite test database), rather than share it.
if "THRESHOLD_VAR_DIR" not in os.environ or (
    os.environ.get("PYTEST_XDIST_WORKER")
    and os.environ.get(_OWN_VAR_DIR) == os.environ["THRESHOLD_VAR_DIR"]
):
    _var_dir = tempfile.mkdtemp(prefix="threshold-test-")
    atexit.register(shutil.rmtree, _var_dir, ignore_errors=True)
    os.environ["THRESHOLD_VAR_DIR"] = _var_dir
    os.environ[_OWN_VAR_DIR] = _var_dir
# One directory for the whole run, its pytest-xdist workers included (they inherit it), for what is
# made once per run: the migrated database the tests' servers start from
# (tests/support/processes.py, ``migrated``).
if RUN_DIR not in os.environ:
    _run_dir = tempfile.mkdtemp(prefix="threshold-test-run-")
    atexit.register(shutil.rmtree, _run_dir, ignore_errors=True)
    os.environ[RUN_DIR] = _run_dir
os.environ.setdefault("THRESHOLD_EMAIL_BACKEND", "file")
os.environ.setdefault("THRESHOLD_FIDO_CONFORMANCE", "1")

# Hypothesis (the fuzz tests) keeps what it learns under .hypothesis/ in the working directory,
# at collection already: the run's own temporary directory instead, gone with it.
if "HYPOTHESIS_STORAGE_DIRECTORY" not in os.environ:
    _hypothesis_dir = tempfile.mkdtemp(prefix="threshold-hypothesis-")
    atexit.register(shutil.rmtree, _hypothesis_dir, ignore_errors=True)
    os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = _hypothesis_dir
