"""Configuration from environment variables, validated once at start-up.

Every variable is documented in the README. A misconfiguration raises
``ConfigError`` with a message that says what to fix; the ``threshold``
command prints it and exits instead of serving a half-working site.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from dataclasses import dataclass, field
from email.utils import formataddr
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from threshold.core import ceremony
from threshold.core.ceremony import RelyingParty, origin_problem
from threshold.core.files import create_once

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ADMIN_EMAIL = "admin@example.com"
HTTP_PORT = 80
# The proxy Threshold trusts by default: one on this machine.
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


class ConfigError(Exception):
    """The environment does not describe a working Threshold."""


@dataclass(frozen=True)
class AndroidApp:
    """An Android app that may use the passkeys: Digital Asset Links' android_app target."""

    package_name: str
    # SHA-256 fingerprints of the app's signing certificates.
    fingerprints: tuple[bytes, ...]

    @property
    def origins(self) -> tuple[str, ...]:
        """What the app sends as clientDataJSON.origin, one per signing certificate."""
        return tuple(ceremony.android_origin(fingerprint) for fingerprint in self.fingerprints)


@dataclass(frozen=True)
class Config:
    rp: RelyingParty
    public_url: str
    var_dir: Path
    # Left out of repr (Django's debug error page prints the settings, THRESHOLD included):
    # the secret key, the database's and the mail server's passwords, the VAPID key.
    secret_key: str = field(repr=False)
    database: dict[str, Any] = field(repr=False)
    listen_host: str
    listen_port: int
    workers: int
    debug: bool
    fido_conformance: bool
    https: bool
    proxy_ssl_header: bool
    session_idle_timeout: int
    session_max_age: int
    email: dict[str, Any] = field(repr=False)
    allowed_hosts: tuple[str, ...]
    # Extra attestation roots the organisation trusts (its own security keys' CA).
    trust_anchors: tuple[x509.Certificate, ...] = ()
    # What the /.well-known documents publish (threshold/web/wellknown.py), in
    # the configured order; the relying party accepts the matching origins.
    android_apps: tuple[AndroidApp, ...] = ()
    ios_apps: tuple[str, ...] = ()
    related_origins: tuple[str, ...] = ()
    # The first administrator's username, which `threshold bootstrap` invites.
    admin_email: str = DEFAULT_ADMIN_EMAIL
    # The TPM manufacturers' roots (and intermediates) that Threshold Verify's EK
    # certificates chain to (threshold/core/tpm.py); none: no device key counts as "tpm".
    device_tpm_roots: tuple[x509.Certificate, ...] = ()
    # Web Push to the phone web app (threshold/devices/webpush.py): off unless the operator
    # turns it on; the VAPID key from THRESHOLD_VAPID_KEY (PEM) or, when that is empty,
    # var/vapid-key.pem, made on first use.
    web_push: bool = False
    vapid_key_pem: str = field(default="", repr=False)
    # The peers whose X-Forwarded-For and X-Forwarded-Proto are believed, with
    # proxy_ssl_header (threshold/web/proxy.py).
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = LOOPBACK
    # The fast path for an anonymous browser's ordinary passkey sign-in (threshold/passkeys/
    # fastpath.py); off (THRESHOLD_FAST_SIGN_IN=0), every sign-in takes the lean path.
    fast_sign_in: bool = True


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


SECRET_KEY_MIN_LENGTH = 32
# Django's deployment check asks as much of a key: fewer different characters are a placeholder.
SECRET_KEY_MIN_CHARACTERS = 5


def _secret_key(env: dict[str, str], var_dir: Path) -> str:
    if env.get("THRESHOLD_SECRET_KEY"):
        key = env["THRESHOLD_SECRET_KEY"]
        if len(key) < SECRET_KEY_MIN_LENGTH:
            raise ConfigError("THRESHOLD_SECRET_KEY must be at least 32 characters")
        if len(set(key)) < SECRET_KEY_MIN_CHARACTERS:
            raise ConfigError(
                "THRESHOLD_SECRET_KEY is a placeholder (fewer than 5 different characters): "
                "use a random one, such as `python3 -c 'import secrets; "
                "print(secrets.token_urlsafe(50))'`"
            )
        return key
    path = var_dir / "secret_key"
    try:
        if not path.exists():
            # Generated once and kept: sessions and signed values survive restarts. Written
            # whole or not at all (a full disk leaves no empty key behind).
            create_once(path, secrets.token_urlsafe(50).encode())
        key = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{path} cannot be read or made ({reason})") from None
    if len(key) < SECRET_KEY_MIN_LENGTH:
        raise ConfigError(
            f"{path} holds no usable secret key (fewer than {SECRET_KEY_MIN_LENGTH} characters):"
            " restore it from a backup, or delete it to have a new one made, which signs"
            " everyone out"
        )
    return key


# How long a statement waits for a lock (SQLite's busy timeout, PostgreSQL's lock_timeout).
LOCK_TIMEOUT_SECONDS = 20


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
            "timeout": LOCK_TIMEOUT_SECONDS,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
        # Test runs get a database file too, not Django's shared in-memory one:
        # its table locks fail concurrent writers at once instead of making
        # them wait, unlike the real file (tests of concurrency need the real one).
        database["TEST"] = {"NAME": str(var_dir / "test.sqlite3")}
    elif not database.get("NAME"):
        raise ConfigError("DATABASE_URL must name a database, e.g. postgres://user@host/threshold")
    else:
        # As SQLite's busy timeout: a statement waits at most this long for a lock another
        # session holds (a long migration, an operator's LOCK TABLE), then fails, answered
        # 503 "try again", instead of holding the worker, and everyone queued behind it, for
        # as long as the lock lasts. The URL's own ``options`` come after, and win.
        given = database.get("OPTIONS")
        options: dict[str, Any] = dict(given) if isinstance(given, dict) else {}
        own = str(options.get("options", ""))
        options["options"] = f"-c lock_timeout={LOCK_TIMEOUT_SECONDS}s {own}".strip()
        database["OPTIONS"] = options
    return database


SMTP_EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


def _email(env: dict[str, str], var_dir: Path, rp_id: str) -> dict[str, Any]:
    host = env.get("THRESHOLD_SMTP_HOST")
    # With SMTP, a sender in the relying party's own domain: mail systems refuse or junk one
    # at localhost. THRESHOLD_EMAIL_FROM names one the mail server may send as.
    domain = rp_id if host and rp_id != "localhost" else "localhost"
    name = env.get("THRESHOLD_RP_NAME", "Threshold")
    default = formataddr((name, f"no-reply@{domain}" if host else "threshold@localhost"))
    sender = env.get("THRESHOLD_EMAIL_FROM", default)
    if host:
        return {
            "EMAIL_BACKEND": SMTP_EMAIL_BACKEND,
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


def _trust_anchors(
    env: dict[str, str], variable: str = "THRESHOLD_TRUST_ANCHORS"
) -> tuple[x509.Certificate, ...]:
    anchors: list[x509.Certificate] = []
    for path in _list(env, variable):
        try:
            loaded = x509.load_pem_x509_certificates(Path(path).read_bytes())
        except OSError as exc:
            raise ConfigError(f"{variable}: cannot read {path}: {exc.strerror}") from None
        except ValueError:
            raise ConfigError(f"{variable}: {path} holds no PEM certificate") from None
        anchors.extend(loaded)
    return tuple(anchors)


# An Android application ID: two or more dot-separated segments, each a letter
# then letters, digits or underscores.
_ANDROID_PACKAGE = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)+")
# A SHA-256 fingerprint as keytool and the Play Console print it.
_FINGERPRINT = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){31}")
# An Apple app ID: the 10-character Team ID (App ID prefix), a dot, the bundle ID.
_IOS_APP = re.compile(r"[A-Z0-9]{10}\.[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")


def _android_apps(env: dict[str, str]) -> tuple[AndroidApp, ...]:
    """THRESHOLD_ANDROID_APPS: ``package=FINGERPRINT`` entries; repeat a package for more keys."""
    fingerprints: dict[str, list[bytes]] = {}
    for entry in _list(env, "THRESHOLD_ANDROID_APPS"):
        package, _, fingerprint = (part.strip() for part in entry.partition("="))
        if not _ANDROID_PACKAGE.fullmatch(package):
            raise ConfigError(
                f"THRESHOLD_ANDROID_APPS: {entry!r} must be package=SHA256 fingerprint, "
                "e.g. com.example.app=14:6D:E9:...:F5, with the app's package name first"
            )
        if not _FINGERPRINT.fullmatch(fingerprint):
            raise ConfigError(
                f"THRESHOLD_ANDROID_APPS: the fingerprint of {package} must be the SHA-256 of its "
                "signing certificate as keytool -list -v prints it: 32 hex pairs separated by "
                f"colons (got {fingerprint!r})"
            )
        digest = bytes.fromhex(fingerprint.replace(":", ""))
        keys = fingerprints.setdefault(package, [])
        if digest not in keys:
            keys.append(digest)
    return tuple(AndroidApp(package, tuple(keys)) for package, keys in fingerprints.items())


def _ios_apps(env: dict[str, str]) -> tuple[str, ...]:
    """THRESHOLD_IOS_APPS: ``TEAMID.bundle.id`` entries, as in apple-app-site-association."""
    apps = _list(env, "THRESHOLD_IOS_APPS")
    for app in apps:
        if not _IOS_APP.fullmatch(app):
            raise ConfigError(
                f"THRESHOLD_IOS_APPS: {app!r} must be TEAMID.bundle.id, e.g. "
                "ABCDE12345.com.example.app (the 10-character Team ID, a dot, the bundle ID)"
            )
    return tuple(dict.fromkeys(apps))


def _related_origins(env: dict[str, str]) -> tuple[str, ...]:
    """THRESHOLD_RELATED_ORIGINS: sibling web origins published in /.well-known/webauthn."""
    origins = tuple(dict.fromkeys(_list(env, "THRESHOLD_RELATED_ORIGINS")))
    labels: list[str] = []
    for origin in origins:
        problem = ceremony.related_origin_problem(origin)
        if problem:
            raise ConfigError(f"THRESHOLD_RELATED_ORIGINS: {problem}")
        label = ceremony.related_origin_label(origin)
        if label is not None and label not in labels:
            labels.append(label)
    if len(labels) > ceremony.RELATED_ORIGIN_MAX_LABELS:
        # L3 §5.11.1: browsers stop at the fifth label; later origins would be ignored.
        raise ConfigError(
            f"THRESHOLD_RELATED_ORIGINS names {len(labels)} different domain labels "
            f"({', '.join(labels)}); browsers read only origins with the first "
            f"{ceremony.RELATED_ORIGIN_MAX_LABELS} (WebAuthn L3 §5.11.1)"
        )
    return origins


def _admin_email(env: dict[str, str]) -> str:
    """THRESHOLD_ADMIN_EMAIL: an email address, as ``threshold invite`` requires of a username."""
    email = env.get("THRESHOLD_ADMIN_EMAIL", "").strip()
    if not email:
        return DEFAULT_ADMIN_EMAIL
    try:
        validate_email(email)
    except ValidationError:
        raise ConfigError(
            f"THRESHOLD_ADMIN_EMAIL must be an email address, e.g. admin@example.com "
            f"(got {email!r})"
        ) from None
    return email


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


def _vapid_key(env: dict[str, str]) -> str:
    """THRESHOLD_VAPID_KEY: the P-256 private key (PEM) that signs Web Push requests (RFC 8292),
    the same on every server that shares a database; empty: var/vapid-key.pem."""
    pem = env.get("THRESHOLD_VAPID_KEY", "").strip()
    if not pem:
        return ""
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise ConfigError(
            "THRESHOLD_VAPID_KEY must be an unencrypted P-256 private key in PEM "
            "(-----BEGIN PRIVATE KEY-----...), e.g. the contents of var/vapid-key.pem"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ConfigError("THRESHOLD_VAPID_KEY must be a P-256 (prime256v1) key")
    return pem


def _debug(env: dict[str, str], origins: list[str]) -> bool:
    debug = _flag(env, "THRESHOLD_DEBUG")
    if debug and any(origin.startswith("https://") for origin in origins):
        raise ConfigError(
            "THRESHOLD_DEBUG=1 shows anyone who reaches the server its settings, URLs and "
            "tracebacks: it is for a development machine (http://localhost), not for https origins"
        )
    return debug


def _keep_private(var_dir: Path) -> None:
    """``var_dir`` readable by its owner only, as PostgreSQL keeps its data directory: it holds
    the database, the keys and, without SMTP, emailed links. Only a directory this user owns
    is changed (an operator's shared one is theirs to set)."""
    status = var_dir.stat()
    if status.st_uid == os.getuid() and status.st_mode & 0o077:
        var_dir.chmod(0o700)


def _trusted_proxies(
    env: dict[str, str], behind_proxy: bool
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    listed = _list(env, "THRESHOLD_TRUSTED_PROXIES")
    if not listed:
        return LOOPBACK
    if not behind_proxy:
        raise ConfigError(
            "THRESHOLD_TRUSTED_PROXIES names the proxies THRESHOLD_BEHIND_TLS_PROXY=1 trusts: "
            "set that too, or leave THRESHOLD_TRUSTED_PROXIES empty"
        )
    networks = []
    for item in listed:
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(
                f"THRESHOLD_TRUSTED_PROXIES: {item!r} is not an IP address or network "
                "(10.0.0.5, 10.0.0.0/24, fd00::/8)"
            ) from None
    return tuple(networks)


def start_up_warnings(config: Config) -> list[str]:
    """What the operator must know whenever Threshold starts with this configuration."""
    warnings = []
    if (
        config.proxy_ssl_header
        and config.trusted_proxies == LOOPBACK
        and config.listen_host not in ("127.0.0.1", "::1", "localhost")
    ):
        warnings.append(
            f"THRESHOLD_BEHIND_TLS_PROXY=1 trusts only a proxy on this machine, but Threshold "
            f"listens on {config.listen_host}: a proxy on another host must be listed in "
            "THRESHOLD_TRUSTED_PROXIES, or its X-Forwarded-For and X-Forwarded-Proto are ignored."
        )
    if config.https and not config.proxy_ssl_header:
        warnings.append(
            "THRESHOLD_ORIGINS are https, but THRESHOLD_BEHIND_TLS_PROXY is not set: `threshold "
            "serve` speaks plain HTTP, so every request will look insecure and no HSTS header "
            "is sent. Put it behind a TLS proxy and set THRESHOLD_BEHIND_TLS_PROXY=1."
        )
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
        _keep_private(var_dir)
    except OSError as exc:
        raise ConfigError(f"THRESHOLD_VAR_DIR {var_dir} cannot be created: {exc}") from None

    port = _int(env, "THRESHOLD_PORT", 8000, 1, 65535)
    behind_proxy = _flag(env, "THRESHOLD_BEHIND_TLS_PROXY")
    rp_id = env.get("THRESHOLD_RP_ID", "localhost").strip().lower()
    if not rp_id or "/" in rp_id or ":" in rp_id:
        raise ConfigError(
            f"THRESHOLD_RP_ID must be a bare domain such as example.com (got {rp_id!r})"
        )
    # As browsers send it: no port when it is HTTP's own.
    configured = _list(env, "THRESHOLD_ORIGINS") or [
        f"http://{rp_id}" + ("" if port == HTTP_PORT else f":{port}")
    ]
    for origin in configured:
        problem = origin_problem(rp_id, origin)
        if problem:
            raise ConfigError(f"THRESHOLD_ORIGINS: {problem}")
    # Android apps' origins are matched in ceremonies but are no place Threshold serves.
    origins = [origin for origin in configured if not ceremony.is_android_origin(origin)]
    if not origins:
        raise ConfigError(
            "THRESHOLD_ORIGINS must include the web origin (scheme://host[:port]) Threshold's "
            "pages are served at, not only Android app origins"
        )
    android_apps = _android_apps(env)
    ios_apps = _ios_apps(env)
    related_origins = _related_origins(env)
    # Configuring an app configures its origin: an Android app sends its signing
    # certificate's hash, an iOS app https://<RP ID>.
    app_origins = {origin for origin in configured if ceremony.is_android_origin(origin)}
    app_origins.update(origin for app in android_apps for origin in app.origins)
    if ios_apps:
        app_origins.add(f"https://{rp_id}")
    allow_cross_origin = _flag(env, "THRESHOLD_ALLOW_CROSS_ORIGIN")
    top_origins = _list(env, "THRESHOLD_TOP_ORIGINS")
    if top_origins and not allow_cross_origin:
        raise ConfigError("THRESHOLD_TOP_ORIGINS needs THRESHOLD_ALLOW_CROSS_ORIGIN=1")
    for origin in top_origins:
        problem = (
            ceremony.web_origin_problem(origin)
            if urlsplit(origin).scheme in ("https", "http")
            else f"{origin!r} is not scheme://host[:port]"
        )
        if problem:
            raise ConfigError(f"THRESHOLD_TOP_ORIGINS: {problem}")
    public_url = env.get("THRESHOLD_PUBLIC_URL", origins[0]).rstrip("/")
    if public_url not in origins:
        raise ConfigError(
            f"THRESHOLD_PUBLIC_URL {public_url!r} must be one of THRESHOLD_ORIGINS {origins}"
        )
    https = all(origin.startswith("https://") for origin in origins)
    hosts = {urlsplit(origin).hostname or "" for origin in (*origins, *related_origins)}
    if android_apps or ios_apps or related_origins:
        # The /.well-known documents are fetched from https://<RP ID>/: answer there too.
        hosts.add(rp_id)
    if rp_id == "localhost":
        hosts |= {"localhost", "127.0.0.1", "[::1]"}

    return Config(
        rp=RelyingParty(
            id=rp_id,
            name=env.get("THRESHOLD_RP_NAME", "Threshold"),
            origins=frozenset(origins),
            allow_cross_origin=allow_cross_origin,
            top_origins=frozenset(top_origins),
            related_origins=frozenset(related_origins),
            app_origins=frozenset(app_origins),
        ),
        public_url=public_url,
        var_dir=var_dir,
        secret_key=_secret_key(env, var_dir),
        database=_database(env, var_dir),
        listen_host=env.get("THRESHOLD_HOST", "127.0.0.1"),
        listen_port=port,
        workers=_int(env, "THRESHOLD_WORKERS", (os.cpu_count() or 1) * 2 + 1, 1, 256),
        debug=_debug(env, origins),
        fido_conformance=_fido_conformance(env, rp_id),
        https=https,
        proxy_ssl_header=behind_proxy,
        trusted_proxies=_trusted_proxies(env, behind_proxy),
        session_idle_timeout=_int(env, "THRESHOLD_SESSION_IDLE_TIMEOUT", 3600, 60, 86400 * 30),
        session_max_age=_int(env, "THRESHOLD_SESSION_MAX_AGE", 43200, 60, 86400 * 90),
        email=_email(env, var_dir, rp_id),
        allowed_hosts=tuple(sorted(hosts)),
        trust_anchors=_trust_anchors(env),
        android_apps=android_apps,
        ios_apps=ios_apps,
        related_origins=related_origins,
        admin_email=_admin_email(env),
        device_tpm_roots=_trust_anchors(env, "THRESHOLD_DEVICE_TPM_ROOTS"),
        web_push=_flag(env, "THRESHOLD_WEB_PUSH"),
        vapid_key_pem=_vapid_key(env),
        fast_sign_in=_flag(env, "THRESHOLD_FAST_SIGN_IN", True),
    )
