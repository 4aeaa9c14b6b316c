"""Start-up configuration: ``threshold.config.load(env)`` and the command's refusal to start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from threshold.config import ConfigError, load

# It reads settings only, no database: the PostgreSQL run skips it.
pytestmark = pytest.mark.same_on_every_database

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return {"THRESHOLD_VAR_DIR": str(tmp_path), "THRESHOLD_SECRET_KEY": "test-key-" * 5}


def test_defaults_serve_localhost(env):
    config = load(env)
    assert config.rp.id == "localhost"
    assert config.rp.origins == frozenset({"http://localhost:8000"})
    assert config.public_url == "http://localhost:8000"
    assert config.https is False
    assert config.fido_conformance is False
    assert config.database["ENGINE"].endswith("sqlite3")


def test_a_production_configuration_loads(env):
    config = load(
        {
            **env,
            "THRESHOLD_RP_ID": "Example.com",
            "THRESHOLD_ORIGINS": "https://login.example.com, https://example.com:8443",
            "THRESHOLD_PUBLIC_URL": "https://login.example.com/",
            "DATABASE_URL": "postgres://threshold:secret@db.internal:5432/threshold",
            "THRESHOLD_ALLOW_CROSS_ORIGIN": "1",
            "THRESHOLD_TOP_ORIGINS": "https://portal.example.org",
        }
    )
    assert config.rp.id == "example.com"
    assert config.rp.origins == frozenset({"https://login.example.com", "https://example.com:8443"})
    assert config.public_url == "https://login.example.com"
    assert config.https is True
    assert config.rp.top_origins == frozenset({"https://portal.example.org"})
    assert config.database["NAME"] == "threshold"
    assert config.database["HOST"] == "db.internal"
    assert "login.example.com" in config.allowed_hosts


def test_the_first_administrators_email_is_configured(env):
    assert load(env).admin_email == "admin@example.com"
    assert load({**env, "THRESHOLD_ADMIN_EMAIL": ""}).admin_email == "admin@example.com"
    configured = load({**env, "THRESHOLD_ADMIN_EMAIL": " root@example.com "})
    assert configured.admin_email == "root@example.com"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"THRESHOLD_RP_ID": "example.com", "THRESHOLD_ORIGINS": "https://evil.example"},
            "does not match RP ID 'example.com'",
        ),
        (
            {
                "THRESHOLD_RP_ID": "example.com",
                "THRESHOLD_ORIGINS": "https://example.com.evil.example",
            },
            "does not match RP ID",
        ),
        (
            {"THRESHOLD_RP_ID": "example.com", "THRESHOLD_ORIGINS": "http://example.com"},
            "http is allowed only for localhost",
        ),
        ({"THRESHOLD_ORIGINS": "https://evil.example"}, "does not match RP ID 'localhost'"),
        (
            {"THRESHOLD_RP_ID": "example.com", "THRESHOLD_ORIGINS": "https://example.com/"},
            "no path or trailing slash",
        ),
        (
            {"THRESHOLD_RP_ID": "example.com", "THRESHOLD_ORIGINS": "https://example.com/login"},
            "THRESHOLD_ORIGINS",
        ),
        (
            {"THRESHOLD_RP_ID": "example.com", "THRESHOLD_ORIGINS": "https://example.com?next=1"},
            "THRESHOLD_ORIGINS",
        ),
        (
            {"THRESHOLD_RP_ID": "example.com", "THRESHOLD_ORIGINS": "https://example.com#top"},
            "THRESHOLD_ORIGINS",
        ),
        (
            {"THRESHOLD_RP_ID": "example.com", "THRESHOLD_ORIGINS": "https://user@example.com"},
            "THRESHOLD_ORIGINS",
        ),
        ({"THRESHOLD_RP_ID": "https://example.com"}, "THRESHOLD_RP_ID must be a bare domain"),
        ({"THRESHOLD_RP_ID": "example.com:443"}, "THRESHOLD_RP_ID must be a bare domain"),
        (
            {"DATABASE_URL": "mysql://threshold@db/threshold"},
            "DATABASE_URL must start with sqlite:// or postgres://",
        ),
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL must start with"),
        ({"DATABASE_URL": "postgres://threshold@db.internal"}, "DATABASE_URL must name a database"),
        ({"DATABASE_URL": "postgres://threshold@db.internal:notaport/threshold"}, "DATABASE_URL"),
        ({"THRESHOLD_PORT": "eighty"}, "THRESHOLD_PORT must be a whole number"),
        ({"THRESHOLD_PORT": "70000"}, "THRESHOLD_PORT must be between 1 and 65535"),
        ({"THRESHOLD_PORT": "0"}, "THRESHOLD_PORT must be between 1 and 65535"),
        (
            {"THRESHOLD_TOP_ORIGINS": "https://portal.example.org"},
            "THRESHOLD_TOP_ORIGINS needs THRESHOLD_ALLOW_CROSS_ORIGIN=1",
        ),
        (
            {"THRESHOLD_ALLOW_CROSS_ORIGIN": "1", "THRESHOLD_TOP_ORIGINS": "portal.example.org"},
            "THRESHOLD_TOP_ORIGINS: 'portal.example.org' is not scheme://host[:port]",
        ),
        (
            {"THRESHOLD_PUBLIC_URL": "http://localhost:9000"},
            "THRESHOLD_PUBLIC_URL 'http://localhost:9000' must be one of",
        ),
        ({"THRESHOLD_FIDO_CONFORMANCE": "maybe"}, "THRESHOLD_FIDO_CONFORMANCE must be 1 or 0"),
        ({"THRESHOLD_SESSION_IDLE_TIMEOUT": "5"}, "THRESHOLD_SESSION_IDLE_TIMEOUT must be between"),
        ({"THRESHOLD_SECRET_KEY": "short"}, "THRESHOLD_SECRET_KEY must be at least 32 characters"),
        ({"THRESHOLD_EMAIL_BACKEND": "pigeon"}, "THRESHOLD_EMAIL_BACKEND must be file or console"),
        ({"THRESHOLD_ADMIN_EMAIL": "root"}, "THRESHOLD_ADMIN_EMAIL must be an email address"),
    ],
    ids=[
        "origin-other-domain",
        "origin-lookalike-domain",
        "origin-http-not-localhost",
        "origin-not-localhost-default-rp",
        "origin-trailing-slash",
        "origin-with-path",
        "origin-with-query",
        "origin-with-fragment",
        "origin-with-userinfo",
        "rp-id-with-scheme",
        "rp-id-with-port",
        "database-mysql",
        "database-not-a-url",
        "database-postgres-no-name",
        "database-bad-port",
        "port-not-a-number",
        "port-too-high",
        "port-zero",
        "top-origins-without-cross-origin",
        "top-origin-not-an-origin",
        "public-url-not-an-origin",
        "flag-not-boolean",
        "idle-timeout-too-short",
        "secret-key-too-short",
        "email-backend-unknown",
        "admin-email-not-an-address",
    ],
)
def test_misconfiguration_stops_start_up_with_a_clear_message(env, changes, message):
    with pytest.raises(ConfigError) as raised:
        load({**env, **changes})
    assert message in str(raised.value)


def test_the_command_refuses_to_start_when_misconfigured(tmp_path):
    run_env = {
        **os.environ,
        "THRESHOLD_VAR_DIR": str(tmp_path),
        "THRESHOLD_ORIGINS": "https://evil.example",
        "DJANGO_SETTINGS_MODULE": "threshold.settings",
    }
    result = subprocess.run(
        [sys.executable, "-m", "threshold.cli.main", "users"],
        cwd=REPO,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "configuration error" in result.stderr
    assert "https://evil.example" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_postgresql_statements_wait_for_a_lock_as_long_as_sqlite_waits(tmp_path):
    from threshold.config import LOCK_TIMEOUT_SECONDS, _database  # noqa: PLC0415

    database = _database({"DATABASE_URL": "postgres://u@db/threshold"}, tmp_path)
    assert database["OPTIONS"]["options"] == f"-c lock_timeout={LOCK_TIMEOUT_SECONDS}s"
    sqlite = _database({}, tmp_path)
    assert sqlite["OPTIONS"]["timeout"] == LOCK_TIMEOUT_SECONDS
    # The URL's own options come after, and so win.
    own = _database({"DATABASE_URL": "postgres://u@db/t?options=-c%20lock_timeout%3D5s"}, tmp_path)
    assert own["OPTIONS"]["options"].endswith("-c lock_timeout=5s")
