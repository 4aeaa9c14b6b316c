"""Configuration from environment variables, validated once at start-up.

Every variable is documented in the README. A misconfiguration raises
``ConfigError`` with a message that says what to fix; the ``threshold``
command prints it and exits instead of serving a half-working site.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
from cryptography import x509

from threshold.core.ceremony import RelyingParty, origin_problem

REPO_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(Exception):
    """The environment does not describe a working Threshold."""


@dataclass(frozen=True)
class Config:
    rp: RelyingParty
    public_url: str
    var_dir: Path
    secret_key: str
    database: dict[str, Any]
    listen_host: str
    listen_port: int
    workers: int
    debug: bool
    fido_conformance: bool
    https: bool
    proxy_ssl_header: bool
    session_idle_timeout: int
    session_max_age: int
    email: dict[str, Any]
    allowed_hosts: tuple[str, ...]
    # Extra attestation roots the organisation trusts (its own security keys' CA).
    trust_anchors: tuple[x509.Certificate, ...] = ()


def _flag(env: dict[str, str], name: str, default: bool = False) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be 1 or 0 (got {raw!r})")


def _int(env: dict[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number (got {raw!r})") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum} (got {value})")
    return value


def _list(env: dict[str, str], name: str) -> list[str]:
    return [item.strip() for item in env.get(name, "").split(",") if item.strip()]


def _secret_key(env: dict[str, str], var_dir: Path) -> str:
    if env.get("THRESHOLD_SECRET_KEY"):
        key = env["THRESHOLD_SECRET_KEY"]
        if len(key) < 32:
            raise ConfigError("THRESHOLD_SECRET_KEY must be at least 32 characters")
        return key
    path = var_dir / "secret_key"
    if not path.exists():
        # Generated once and kept: sessions and signed values survive restarts.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


def _database(env: dict[str, str], var_dir: Path) -> dict[str, Any]:
    url = env.get("DATABASE_URL") or f"sqlite:///{var_dir / 'threshold.sqlite3'}"
    scheme = urlsplit(url).scheme
    if scheme not in ("sqlite", "postgres", "postgresql", "pgsql"):
        raise ConfigError(
            f"DATABASE_URL must start with sqlite:// or postgres:// (got scheme {scheme!r})"
        )
    try:
        database = dict(dj_database_url.parse(url, conn_max_age=600, conn_health_checks=True))
    except Exception as exc:  # noqa: BLE001 - dj-database-url raises assorted errors
        raise ConfigError(f"DATABASE_URL is not a valid database URL: {exc}") from None
    if str(database["ENGINE"]).endswith("sqlite3"):
        # Persistent, like PostgreSQL's: reopening SQLite per request also
        # checkpoints and recreates the WAL file, with an fsync each time.
        database["CONN_MAX_AGE"] = None
        # WAL lets sign-ins read while another worker writes; the busy timeout
        # makes concurrent writers wait instead of failing.
        database["OPTIONS"] = {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
        # Test runs get a database file too, not Django's shared in-memory one:
        # its table locks fail concurrent writers at once instead of making
        # them wait, unlike the real file (tests of concurrency need the real one).
        database["TEST"] = {"NAME": str(var_dir / "test.sqlite3")}
    elif not database.get("NAME"):
        raise ConfigError("DATABASE_URL must name a database, e.g. postgres://user@host/threshold")
    return database


def _email(env: dict[str, str], var_dir: Path) -> dict[str, Any]:
    sender = env.get("THRESHOLD_EMAIL_FROM", "Threshold <threshold@localhost>")
    host = env.get("THRESHOLD_SMTP_HOST")
    if host:
        return {
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": host,
            "EMAIL_PORT": _int(env, "THRESHOLD_SMTP_PORT", 587, 1, 65535),
            "EMAIL_HOST_USER": env.get("THRESHOLD_SMTP_USER", ""),
            "EMAIL_HOST_PASSWORD": env.get("THRESHOLD_SMTP_PASSWORD", ""),
            "EMAIL_USE_TLS": _flag(env, "THRESHOLD_SMTP_STARTTLS", True),
            "EMAIL_TIMEOUT": 10,
            "DEFAULT_FROM_EMAIL": sender,
        }
    backend = env.get("THRESHOLD_EMAIL_BACKEND", "file")
    if backend == "console":
        return {
            "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",
            "DEFAULT_FROM_EMAIL": sender,
        }
    if backend != "file":
        raise ConfigError("THRESHOLD_EMAIL_BACKEND must be file or console (or set SMTP host)")
    return {
        "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "EMAIL_FILE_PATH": str(var_dir / "mail"),
        "DEFAULT_FROM_EMAIL": sender,
    }


def _trust_anchors(env: dict[str, str]) -> tuple[x509.Certificate, ...]:
    anchors: list[x509.Certificate] = []
    for path in _list(env, "THRESHOLD_TRUST_ANCHORS"):
        try:
            loaded = x509.load_pem_x509_certificates(Path(path).read_bytes())
        except OSError as exc:
            raise ConfigError(
                f"THRESHOLD_TRUST_ANCHORS: cannot read {path}: {exc.strerror}"
            ) from None
        except ValueError:
            raise ConfigError(f"THRESHOLD_TRUST_ANCHORS: {path} holds no PEM certificate") from None
        anchors.extend(loaded)
    return tuple(anchors)


def _fido_conformance(env: dict[str, str], rp_id: str) -> bool:
    """THRESHOLD_FIDO_CONFORMANCE, refused outside localhost unless the operator says they know."""
    if not _flag(env, "THRESHOLD_FIDO_CONFORMANCE"):
        return False
    if rp_id != "localhost" and not _flag(env, "THRESHOLD_FIDO_CONFORMANCE_I_UNDERSTAND"):
        raise ConfigError(
            "THRESHOLD_FIDO_CONFORMANCE=1 lets anyone register a passkey on any account, "
            "existing ones included: it is for test servers. With THRESHOLD_RP_ID "
            f"{rp_id!r} it also needs THRESHOLD_FIDO_CONFORMANCE_I_UNDERSTAND=1; "
            "in production, set THRESHOLD_FIDO_CONFORMANCE=0"
        )
    return True


def start_up_warnings(config: Config) -> list[str]:
    """What the operator must know whenever Threshold starts with this configuration."""
    warnings = []
    if config.fido_conformance:
        warnings.append(
            "THRESHOLD_FIDO_CONFORMANCE=1: the FIDO conformance API is on, and anyone who "
            "can reach this server can register a passkey on any account. Test servers only."
        )
    return warnings


def load(env: dict[str, str] | None = None) -> Config:
    env = dict(os.environ if env is None else env)
    var_dir = Path(env.get("THRESHOLD_VAR_DIR") or REPO_ROOT / "var").resolve()
    try:
        (var_dir / "static").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"THRESHOLD_VAR_DIR {var_dir} cannot be created: {exc}") from None

    port = _int(env, "THRESHOLD_PORT", 8000, 1, 65535)
    rp_id = env.get("THRESHOLD_RP_ID", "localhost").strip().lower()
    if not rp_id or "/" in rp_id or ":" in rp_id:
        raise ConfigError(
            f"THRESHOLD_RP_ID must be a bare domain such as example.com (got {rp_id!r})"
        )
    origins = _list(env, "THRESHOLD_ORIGINS") or [f"http://{rp_id}:{port}"]
    for origin in origins:
        problem = origin_problem(rp_id, origin)
        if problem:
            raise ConfigError(f"THRESHOLD_ORIGINS: {problem}")
    allow_cross_origin = _flag(env, "THRESHOLD_ALLOW_CROSS_ORIGIN")
    top_origins = _list(env, "THRESHOLD_TOP_ORIGINS")
    if top_origins and not allow_cross_origin:
        raise ConfigError("THRESHOLD_TOP_ORIGINS needs THRESHOLD_ALLOW_CROSS_ORIGIN=1")
    for origin in top_origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("https", "http") or not parts.netloc or parts.path:
            raise ConfigError(f"THRESHOLD_TOP_ORIGINS: {origin!r} is not scheme://host[:port]")
    public_url = env.get("THRESHOLD_PUBLIC_URL", origins[0]).rstrip("/")
    if public_url not in origins:
        raise ConfigError(
            f"THRESHOLD_PUBLIC_URL {public_url!r} must be one of THRESHOLD_ORIGINS {origins}"
        )
    https = all(origin.startswith("https://") for origin in origins)
    hosts = {urlsplit(origin).hostname or "" for origin in origins}
    if rp_id == "localhost":
        hosts |= {"localhost", "127.0.0.1", "[::1]"}

    return Config(
        rp=RelyingParty(
            id=rp_id,
            name=env.get("THRESHOLD_RP_NAME", "Threshold"),
            origins=frozenset(origins),
            allow_cross_origin=allow_cross_origin,
            top_origins=frozenset(top_origins),
        ),
        public_url=public_url,
        var_dir=var_dir,
        secret_key=_secret_key(env, var_dir),
        database=_database(env, var_dir),
        listen_host=env.get("THRESHOLD_HOST", "127.0.0.1"),
        listen_port=port,
        workers=_int(env, "THRESHOLD_WORKERS", (os.cpu_count() or 1) * 2 + 1, 1, 256),
        debug=_flag(env, "THRESHOLD_DEBUG"),
        fido_conformance=_fido_conformance(env, rp_id),
        https=https,
        proxy_ssl_header=_flag(env, "THRESHOLD_BEHIND_TLS_PROXY"),
        session_idle_timeout=_int(env, "THRESHOLD_SESSION_IDLE_TIMEOUT", 3600, 60, 86400 * 30),
        session_max_age=_int(env, "THRESHOLD_SESSION_MAX_AGE", 43200, 60, 86400 * 90),
        email=_email(env, var_dir),
        allowed_hosts=tuple(sorted(hosts)),
        trust_anchors=_trust_anchors(env),
    )
