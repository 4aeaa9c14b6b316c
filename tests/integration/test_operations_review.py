"""Deployment and operations security, reviewed from the outside against the real server.

Two real ``threshold serve`` processes (gunicorn, one worker each) are started, as an operator
starts them, with the usual umask (022): one on ``http://localhost`` with the file email backend
and a generated secret key, one configured for production behind a TLS proxy. What they write
under ``var/``, what they print and log, and the headers of every kind of response are checked;
``threshold.config.load`` is checked directly for odd and dangerous values.

The tests after a comment "Was a defect" failed when the review found them; each names the fix's
place in the code.
"""

from __future__ import annotations

import http.client
import os
import re
import secrets
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import free_port, newcomer_environment, serving, threshold_command
from threshold import config

# Its servers and commands run on SQLite files of their own: the PostgreSQL run skips it.
pytestmark = pytest.mark.same_on_every_database

REPO = Path(__file__).resolve().parents[2]
LINK = re.compile(r"https?://[^\s/]+/enroll/([A-Za-z0-9_-]{43})")
TLS_HOST = "login.example.com"


@contextmanager
def _usual_umask() -> Iterator[None]:
    """The children get Debian's default umask, and systemd's for services (they inherit it)."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@dataclass
class Server:
    port: int
    host: str
    var: Path
    log: Path
    invite_output: str = ""

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request(
                method, path, body=body, headers={"Host": self.host, **(headers or {})}
            )
            response = connection.getresponse()
            return response.status, response.headers, response.read()
        finally:
            connection.close()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _start(tmp: Path, invite: bool, **settings: str) -> Iterator[Server]:
    port = free_port()
    var = tmp / "var"
    host = settings.pop("PROBE_HOST", f"localhost:{port}")
    env = newcomer_environment(
        THRESHOLD_VAR_DIR=str(var),
        THRESHOLD_HOST="127.0.0.1",
        THRESHOLD_PORT=str(port),
        THRESHOLD_WORKERS="1",
        THRESHOLD_EMAIL_BACKEND="file",
        **settings,
    )
    command = threshold_command()

    def run(*args: str) -> str:
        done = subprocess.run(
            [*command, *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return done.stdout

    with _usual_umask():
        run("migrate", "--noinput")
    server = Server(port, host, var, tmp / "server.log")
    if invite:
        # Emailed (the file backend) and printed: a live enrollment link.
        with _usual_umask():
            server.invite_output = run("invite", "bob@example.com", "--name", "Bob Example")
    with _usual_umask(), serving(env, server.log, lambda: bool(server.request("GET", "/sign-in"))):
        yield server


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``make run``'s configuration: localhost, generated secret key, emails as files."""
    yield from _start(tmp_path_factory.mktemp("ops-local"), invite=True)


@pytest.fixture(scope="module")
def behind_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """docs/operations.md's production set-up: https origin, THRESHOLD_BEHIND_TLS_PROXY=1."""
    yield from _start(
        tmp_path_factory.mktemp("ops-tls"),
        invite=False,
        THRESHOLD_RP_ID=TLS_HOST,
        THRESHOLD_ORIGINS=f"https://{TLS_HOST}",
        THRESHOLD_BEHIND_TLS_PROXY="1",
        THRESHOLD_SECRET_KEY=secrets.token_urlsafe(48),
        PROBE_HOST=TLS_HOST,
    )


def _invite_link(server: Server) -> tuple[str, str]:
    match = LINK.search(server.invite_output)
    assert match, server.invite_output
    return match.group(0), match.group(1)


def _readable_by_others(var: Path, path: Path) -> bool:
    """Can another local user read ``path``: every directory from ``var`` down searchable by
    others and the file readable by them (``var``'s own parents are the deployment's)."""
    directories = [var, *[p for p in path.parents if var in p.parents]]
    searchable = all(stat.S_IMODE(d.stat().st_mode) & 0o001 for d in directories)
    return bool(searchable and stat.S_IMODE(path.stat().st_mode) & 0o004)


# --- Files under var/ ---------------------------------------------------------------------------


def test_secret_key_and_oidc_signing_keys_are_owner_only(local):
    for name in ("secret_key", "oidc-keys.json"):
        path = local.var / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
    assert len((local.var / "secret_key").read_text().strip()) >= 50
    # No temporary copy of a key is left beside it (create_once links, then unlinks).
    assert not list(local.var.glob("*.new"))


# Was a defect (medium): the SQLite database and its -wal/-shm files are created with the process
# umask (0644 in a 0755 var/): any local user reads live session keys (web_session.session_key,
# unhashed), TOTP seeds (fallback_totpdevice.secret) and the audit log. Nothing sets a umask or
# var/'s mode (threshold/config.py load, cli/main.py).
def test_database_and_its_wal_files_are_not_readable_by_other_users(local):
    database = local.var / "threshold.sqlite3"
    local.request("GET", "/sign-in")  # a worker holds the database open: WAL and SHM exist
    paths = [database, *(p for p in local.var.glob("threshold.sqlite3-*"))]
    assert len(paths) == 3, paths
    exposed = [p.name for p in paths if _readable_by_others(local.var, p)]
    assert exposed == []


# Was a defect (high on a shared host): the file email backend (the default without SMTP) writes
# each message, with its live one-time enrollment or recovery link, as a 0644 file in a 0755
# var/mail/: any local user can enroll a passkey on the invited account. (threshold/config.py
# _email: Django's filebased backend, no umask.)
def test_emailed_enrollment_links_are_not_readable_by_other_users(local):
    link, _ = _invite_link(local)
    [message] = list((local.var / "mail").iterdir())
    assert link in message.read_text()
    assert not _readable_by_others(local.var, message)


# --- What is printed and logged -----------------------------------------------------------------


def test_access_log_never_holds_an_enrollment_links_token(local):
    _, token = _invite_link(local)
    status, _, _ = local.request("GET", f"/enroll/{token}")
    assert status == 200
    deadline = time.monotonic() + 5
    while 'GET /enroll/[token] HTTP/1.1" 200' not in local.log_text():
        assert time.monotonic() < deadline, local.log_text()
        time.sleep(0.05)
    assert token not in local.log_text()
    assert "Threshold serving on http://127.0.0.1:" in local.log_text()


# Was a defect (low): every request with a foreign Host header (any internet scanner) logs
# django.security.DisallowedHost at ERROR with a full traceback, ~15 lines per request: log
# amplification and noise that buries real errors (threshold/settings.py LOGGING sends
# django.security to the root handler). Django's docs suggest silencing it.
def test_a_foreign_host_header_is_logged_in_one_line(local):
    refused = '"GET /sign-in HTTP/1.1" 400'
    before = local.log_text()
    status, _, _ = local.request("GET", "/sign-in", headers={"Host": "scanner.invalid"})
    assert status == 400
    deadline = time.monotonic() + 5
    while local.log_text().count(refused) == before.count(refused):  # its access-log line
        assert time.monotonic() < deadline, local.log_text()
        time.sleep(0.05)
    added = local.log_text()[len(before) :].splitlines()
    assert not any("Traceback" in line for line in added), added
    # One warning line, and the access log's line. (The server is the module's: an earlier
    # test's access-log line may land in the same stretch of the log; it is not counted.)
    assert len([line for line in added if "scanner.invalid" in line]) == 1, added
    assert len([line for line in added if refused in line]) == 1, added


# --- Response headers ---------------------------------------------------------------------------

CSP_BASE = ("default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "base-uri 'none'")


def _assert_hardened(headers: http.client.HTTPMessage, what: str) -> None:
    assert headers["X-Content-Type-Options"] == "nosniff", what
    assert headers["Referrer-Policy"] in ("same-origin", "no-referrer"), what
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin", what
    policy = headers["Content-Security-Policy"] or ""
    for directive in CSP_BASE:
        assert directive in policy, (what, policy)
    assert "unsafe-inline" not in policy, what
    assert "unsafe-eval" not in policy, what


def test_every_kind_of_answer_carries_the_security_headers(local):
    form = b"a=" + b"x" * (70 * 1024)
    cases = [
        ("GET", "/sign-in", None, {}, 200),
        ("GET", "/", None, {}, 302),
        ("GET", "/no-such-page", None, {}, 404),
        ("GET", "/static/no-such-file.css", None, {}, 404),
        ("GET", "/enroll/not-a-real-token", None, {}, 404),
        ("GET", "/token", None, {}, 405),
        ("GET", "/userinfo", None, {}, 401),
        ("GET", "/jwks", None, {}, 200),
        ("POST", "/sign-in/options", b"{}", {"Content-Type": "application/json"}, 403),
        ("POST", "/sign-in", form, {"Content-Type": "application/x-www-form-urlencoded"}, 400),
        ("GET", "/sign-in", None, {"Host": "evil.example"}, 400),
    ]
    for method, path, body, headers, expected in cases:
        status, got, _ = local.request(method, path, headers=headers, body=body)
        assert status == expected, (method, path, status)
        _assert_hardened(got, f"{method} {path} {status}")
    # Pages are never framed (CSP above, and the legacy header where the middleware runs).
    _, got, _ = local.request("GET", "/sign-in")
    assert got["X-Frame-Options"] == "DENY"
    assert "no-store" in got["Cache-Control"]


def test_enrollment_page_is_neither_cached_nor_sent_as_a_referrer(local):
    _, token = _invite_link(local)
    status, headers, _ = local.request("GET", f"/enroll/{token}")
    assert status == 200
    assert "no-store" in headers["Cache-Control"]
    assert "private" in headers["Cache-Control"]
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Frame-Options"] == "DENY"
    _assert_hardened(headers, "enrollment page")


def test_an_oversized_json_body_is_refused_with_413_and_the_headers(local):
    link, token = _invite_link(local)
    _, page, _ = local.request("GET", f"/enroll/{token}")
    cookies = page.get_all("Set-Cookie") or []
    # (Whatever the CSRF cookie is named.)
    [csrf] = [c.split(";", 1)[0] for c in cookies if "csrf" in c.split("=", 1)[0]]
    status, headers, body = local.request(
        "POST",
        f"/enroll/{token}/options",
        headers={
            "Content-Type": "application/json",
            "Cookie": csrf,
            "X-CSRFToken": csrf.split("=", 1)[1],
            "Origin": link.split("/enroll/")[0],
        },
        body=b"{" + b" " * (200 * 1024) + b"}",
    )
    assert status == 413, body
    assert headers["Content-Type"] == "application/json"
    _assert_hardened(headers, "413")


def test_request_line_and_header_limits_are_enforced_by_gunicorn(local):
    status, _, _ = local.request("GET", "/" + "a" * 5000)
    assert status == 414
    many = {f"X-Filler-{i}": "1" for i in range(60)}
    status, _, _ = local.request("GET", "/sign-in", headers=many)
    assert status in (400, 431)
    status, _, _ = local.request("GET", "/sign-in", headers={"X-Big": "a" * 9000})
    assert status in (400, 431)


# --- Static files -------------------------------------------------------------------------------


def test_static_files_have_their_type_nosniff_and_no_way_out_of_static(local):
    _, _, page = local.request("GET", "/sign-in")
    stylesheet = re.search(rb'href="(/static/[^"]+\.css)"', page)
    script = re.search(rb'src="(/static/[^"]+\.js)"', page)
    assert stylesheet
    assert script
    for path, kind in ((stylesheet, "text/css"), (script, "text/javascript")):
        status, headers, _ = local.request("GET", path.group(1).decode())
        assert status == 200
        assert headers["Content-Type"].startswith(kind)
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert "immutable" in headers["Cache-Control"]
    secret = (local.var / "secret_key").read_bytes().strip()
    for attempt in (
        "/static/../secret_key",
        "/static/%2e%2e/secret_key",
        "/static/..%2fsecret_key",
        "/static/%2e%2e%2fsecret_key",
        "/static//tmp/../secret_key",
        "/static/../oidc-keys.json",
        "/static/../threshold.sqlite3",
    ):
        status, _, body = local.request("GET", attempt)
        assert status in (400, 404), attempt
        for secret_content in (secret, b"PRIVATE", b"SQLite"):
            assert secret_content not in body, attempt


# --- Host header --------------------------------------------------------------------------------


def test_links_are_built_from_the_public_url_never_from_the_host_header(local):
    link, _ = _invite_link(local)
    assert link.startswith(f"http://localhost:{local.port}/enroll/")
    for host in ("evil.example", f"localhost:{local.port}@evil.example", "evil.example:80"):
        status, _, _ = local.request("GET", "/sign-in", headers={"Host": host})
        assert status == 400, host
    status, headers, _ = local.request("GET", "/", headers={"X-Forwarded-Host": "evil.example"})
    assert status == 302
    assert "evil" not in headers["Location"]
    _, _, document = local.request(
        "GET", "/.well-known/openid-configuration", headers={"X-Forwarded-Host": "evil.example"}
    )
    assert b"evil" not in document
    assert f"localhost:{local.port}".encode() in document


# --- Behind a TLS proxy -------------------------------------------------------------------------


def test_hsts_on_every_kind_of_answer_behind_the_tls_proxy(behind_tls):
    https = {"X-Forwarded-Proto": "https"}
    cases = [
        ("GET", "/sign-in", None, {}),
        ("GET", "/no-such-page", None, {}),
        ("GET", "/jwks", None, {}),
        ("GET", "/token", None, {}),
        ("POST", "/token", b"grant_type=x", {"Content-Type": "application/x-www-form-urlencoded"}),
        ("POST", "/sign-in/options", b"{}", {"Content-Type": "application/json"}),
        ("GET", "/sign-in", None, {"Host": "evil.example"}),
    ]
    _, _, page = behind_tls.request("GET", "/sign-in", headers=https)
    stylesheet = re.search(rb'href="(/static/[^"]+\.css)"', page)
    assert stylesheet
    cases.append(("GET", stylesheet.group(1).decode(), None, {}))
    for method, path, body, headers in cases:
        status, got, _ = behind_tls.request(method, path, headers={**https, **headers}, body=body)
        assert got["Strict-Transport-Security"] == "max-age=31536000", (method, path, status)
    # Cookies over https are Secure.
    _, got, _ = behind_tls.request("GET", "/sign-in", headers=https)
    assert all("Secure" in cookie for cookie in got.get_all("Set-Cookie") or [])
    # Without the proxy's header the request is not https: no HSTS on plain http.
    _, got, _ = behind_tls.request("GET", "/sign-in")
    assert got["Strict-Transport-Security"] is None


# --- Configuration ------------------------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "THRESHOLD_VAR_DIR": str(tmp_path / "var"),
        "THRESHOLD_SECRET_KEY": secrets.token_urlsafe(48),
        "THRESHOLD_RP_ID": "login.example.com",
        "THRESHOLD_ORIGINS": "https://login.example.com",
    }


@pytest.mark.parametrize(
    "origins",
    [
        "https://login.example.com/app",  # a path
        "https://login.example.com/",  # a trailing slash
        "https://login.example.com?x=1",
        "https://user@login.example.com",
        "http://login.example.com",  # http in production
        "*",
        "https://evil.example.org",
        "",  # empty: the default http://login.example.com:8000 is no production origin
        " , ",
    ],
)
def test_origins_that_are_not_secure_origins_on_the_rp_id_are_refused(env, origins):
    with pytest.raises(config.ConfigError, match="THRESHOLD_ORIGINS"):
        config.load({**env, "THRESHOLD_ORIGINS": origins})


def test_hosts_and_public_url_follow_the_origins(env):
    loaded = config.load(env)
    assert loaded.allowed_hosts == ("login.example.com",)
    assert loaded.public_url == "https://login.example.com"
    assert loaded.https
    assert not loaded.debug
    assert loaded.listen_host == "127.0.0.1"  # not exposed unless the operator says so
    with pytest.raises(config.ConfigError, match="THRESHOLD_PUBLIC_URL"):
        config.load({**env, "THRESHOLD_PUBLIC_URL": "https://evil.example"})
    with pytest.raises(config.ConfigError, match="THRESHOLD_DEBUG"):
        config.load({**env, "THRESHOLD_DEBUG": "enabled"})
    with pytest.raises(config.ConfigError, match="at least 32"):
        config.load({**env, "THRESHOLD_SECRET_KEY": "short"})


# Was a defect (low-medium): THRESHOLD_ORIGINS=https://*.example.com is accepted with RP ID
# example.com (fido2's verify_rp_id sees a subdomain; _web_origin_problem never checks that the
# host is a hostname). It lands in CSRF_TRUSTED_ORIGINS, where Django reads it as a wildcard: any
# sibling subdomain passes CSRF's origin check (the token check remains)
# (threshold/core/ceremony.py _web_origin_problem, threshold/settings.py).
def test_a_wildcard_origin_is_refused(env):
    wildcard = {
        **env,
        "THRESHOLD_RP_ID": "example.com",
        "THRESHOLD_ORIGINS": "https://login.example.com,https://*.example.com",
    }
    with pytest.raises(config.ConfigError):
        config.load(wildcard)


# Was a defect (low): THRESHOLD_ORIGINS accepts spellings browsers never send (upper case, :443)
# and compares them exactly, so every passkey ceremony fails with origin_not_allowed;
# THRESHOLD_RELATED_ORIGINS already refuses them (ceremony.related_origin_problem's canonical
# check is not applied to origins).
@pytest.mark.parametrize("origin", ["https://LOGIN.example.com", "https://login.example.com:443"])
def test_an_origin_spelled_as_no_browser_sends_it_is_refused_or_normalised(env, origin):
    try:
        loaded = config.load({**env, "THRESHOLD_ORIGINS": origin})
    except config.ConfigError:
        return
    assert loaded.rp.origins == frozenset({"https://login.example.com"})


# Was a defect (medium): THRESHOLD_DEBUG=1 is accepted silently for a production RP ID over https:
# Django's technical 404/500 pages (URL map, settings, tracebacks with local variables) are then
# served to anyone. Neither refused nor in start_up_warnings (threshold/config.py), unlike
# THRESHOLD_FIDO_CONFORMANCE.
def test_debug_in_production_is_refused_or_warned(env):
    try:
        loaded = config.load({**env, "THRESHOLD_DEBUG": "1"})
    except config.ConfigError:
        return
    assert any("THRESHOLD_DEBUG" in w for w in config.start_up_warnings(loaded))


# Was a defect (low): https origins without THRESHOLD_BEHIND_TLS_PROXY=1 start silently, yet
# `threshold serve` cannot terminate TLS, so every request looks like http: HSTS is never sent. A
# start-up warning (config.start_up_warnings) would catch it.
def test_https_origins_without_the_tls_proxy_flag_are_warned(env):
    loaded = config.load(env)
    assert any("THRESHOLD_BEHIND_TLS_PROXY" in w for w in config.start_up_warnings(loaded))


# Was a defect (low): THRESHOLD_SECRET_KEY is checked for length only: 40 spaces or one repeated
# character are accepted as the key that signs sessions and ceremony state (threshold/config.py
# _secret_key; Django's check --deploy flags < 5 unique characters).
@pytest.mark.parametrize("key", [" " * 40, "a" * 40])
def test_a_guessable_secret_key_is_refused(env, key):
    with pytest.raises(config.ConfigError):
        config.load({**env, "THRESHOLD_SECRET_KEY": key})


def test_an_existing_var_directory_open_to_others_is_made_private(env):
    # Installed before Threshold kept var/ private: the next start closes it.
    var = Path(env["THRESHOLD_VAR_DIR"])
    var.mkdir(mode=0o755)
    var.chmod(0o755)
    config.load(env)
    assert stat.S_IMODE(var.stat().st_mode) == 0o700


def test_the_command_keeps_what_it_writes_to_its_owner(tmp_path):
    """``threshold`` sets its umask itself, whatever it was started with."""
    done = subprocess.run(
        [*threshold_command(), "shell", "-c", "import os; print(oct(os.umask(0)))"],
        cwd=REPO,
        env=newcomer_environment(THRESHOLD_VAR_DIR=str(tmp_path / "var")),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip().splitlines()[-1] == "0o77"
