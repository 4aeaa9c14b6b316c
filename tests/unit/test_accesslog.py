"""The server's access log never holds an enrollment or recovery link's token."""

from __future__ import annotations

import datetime
import types

from django.urls import reverse
from gunicorn.config import Config

from threshold.cli.accesslog import AUTHORIZE_PATH, QUIET_PATHS, RedactingLogger, redact

TOKEN = "q4dNDl6fhP1-Vw0y9dbHgWnu_wKqaLl3a6j0HzqV2Xc"


def _atoms_of_get(path: str, query: str, status: str) -> dict:
    """Every field the access log's format can name, for a GET of ``path?query``."""
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": f"{path}?{query}",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
    }
    response = types.SimpleNamespace(status=status, sent=0, headers=[])
    request = types.SimpleNamespace(headers=[])
    atoms: dict = RedactingLogger(Config()).atoms(
        response, request, environ, datetime.timedelta(seconds=0.01)
    )
    return atoms


def test_tokens_are_taken_out_of_paths():
    assert redact(f"GET /enroll/{TOKEN}/options HTTP/1.1") == "GET /enroll/[token]/options HTTP/1.1"
    assert (
        redact(f"https://id.example.com/enroll/{TOKEN}") == "https://id.example.com/enroll/[token]"
    )
    assert redact("GET /sign-in HTTP/1.1") == "GET /sign-in HTTP/1.1"


def test_the_access_log_line_has_no_token():
    logger = RedactingLogger(Config())
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": f"/enroll/{TOKEN}",
        "PATH_INFO": f"/enroll/{TOKEN}",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_REFERER": f"http://localhost:8000/enroll/{TOKEN}",
        "REMOTE_ADDR": "127.0.0.1",
    }
    response = types.SimpleNamespace(status="200 OK", sent=10, headers=[])
    request = types.SimpleNamespace(headers=[("REFERER", environ["HTTP_REFERER"])])
    atoms = logger.atoms(response, request, environ, datetime.timedelta(seconds=0.01))
    assert TOKEN not in repr(atoms)
    assert atoms["r"] == "GET /enroll/[token] HTTP/1.1"


def test_an_oauth_token_in_a_query_is_taken_out():
    """A client that sends /introspect's token in the URL is refused (GET), but the token is
    live: the log must not hold it."""
    assert redact(f"GET /introspect?token={TOKEN} HTTP/1.1") == (
        "GET /introspect?token=[token] HTTP/1.1"
    )
    assert (
        redact(f"GET /userinfo?x=1&access_token={TOKEN}&y=2 HTTP/1.1")
        == "GET /userinfo?x=1&access_token=[token]&y=2 HTTP/1.1"
    )
    assert redact("GET /introspect?tokens=1&mytoken=2 HTTP/1.1") == (
        "GET /introspect?tokens=1&mytoken=2 HTTP/1.1"
    )
    atoms = _atoms_of_get("/introspect", f"token={TOKEN}", "405 Method Not Allowed")
    assert TOKEN not in repr(atoms)


def logged_lines(path: str, status: int, capsys, location: str = "") -> str:
    config = Config()
    config.set("accesslog", "-")
    logger = RedactingLogger(config)
    environ = {
        "REQUEST_METHOD": "POST",
        "RAW_URI": path,
        "PATH_INFO": path,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
    }
    response = types.SimpleNamespace(
        status=f"{status} X",
        status_code=status,
        sent=10,
        headers=[("Location", location)] if location else [],
        response_length=10,
    )
    request = types.SimpleNamespace(headers=[], path=path)
    logger.access(response, request, environ, datetime.timedelta(seconds=0.01))
    return capsys.readouterr().out


def test_successful_passkey_sign_in_requests_are_not_logged(capsys):
    """They are most of the traffic at nine, and the audit log has every result."""
    assert logged_lines("/sign-in/options", 200, capsys) == ""
    assert logged_lines("/sign-in/result", 200, capsys) == ""
    assert "/sign-in/result" in logged_lines("/sign-in/result", 400, capsys)
    assert "/sign-in/options" in logged_lines("/sign-in/options", 429, capsys)
    assert "/sign-in" in logged_lines("/sign-in", 200, capsys)


def test_an_apps_successful_token_and_userinfo_calls_are_not_logged(capsys):
    """Each token issued is audited; their failures are logged."""
    assert logged_lines("/token", 200, capsys) == ""
    assert logged_lines("/userinfo", 200, capsys) == ""
    assert "/token" in logged_lines("/token", 400, capsys)
    assert "/userinfo" in logged_lines("/userinfo", 401, capsys)
    assert "/authorize" in logged_lines("/authorize", 302, capsys)


def test_the_quiet_paths_are_the_sign_in_endpoints():
    assert {
        reverse("passkeys:sign-in-options"),
        reverse("passkeys:sign-in-result"),
        reverse("sso:token"),
        reverse("sso:userinfo"),
    } == QUIET_PATHS


def test_an_authorization_sending_a_code_to_its_app_is_not_logged(capsys):
    """Each is audited (SSO_AUTHORIZED); a page, a redirect to sign in or an error is logged."""
    app = "https://wiki.example.com/callback"
    assert logged_lines("/authorize", 302, capsys, f"{app}?code=abc&state=s&iss=x") == ""
    assert "/authorize" in logged_lines("/authorize", 302, capsys, f"{app}?error=access_denied")
    assert "/authorize" in logged_lines(
        "/authorize", 302, capsys, "/sign-in?next=/authorize%3Fcode%3D1"
    )
    assert "/authorize" in logged_lines("/authorize", 200, capsys)
    assert "/authorize" in logged_lines("/authorize", 302, capsys)


def test_the_authorize_path_is_the_authorization_endpoint():
    assert reverse("sso:authorize") == AUTHORIZE_PATH


def test_a_token_whose_name_is_percent_encoded_is_taken_out():
    """Django and oauthlib decode ``access%5Ftoken`` to ``access_token``: /userinfo refuses it
    (400, so logged) as the token in the query it is, and the log must not hold the token."""
    for name in ("access%5Ftoken", "access%5ftoken", "%61ccess_token", "%74oken"):
        assert redact(f"GET /userinfo?x=1&{name}={TOKEN} HTTP/1.1") == (
            f"GET /userinfo?x=1&{name}=[token] HTTP/1.1"
        )
    # Other names, encoded or not, stay.
    assert redact("GET /userinfo?Access_token=1&my%74oken=2 HTTP/1.1") == (
        "GET /userinfo?Access_token=1&my%74oken=2 HTTP/1.1"
    )
    atoms = _atoms_of_get("/userinfo", f"access%5Ftoken={TOKEN}", "400 Bad Request")
    assert TOKEN not in repr(atoms)


def test_an_id_token_hint_in_a_logout_url_is_taken_out():
    """An app's logout form POSTed to /end-session is answered by a 303 to the same request as
    a GET: the ID token it sent as a hint (the person's claims) is then in the URL."""
    assert redact(f"GET /end-session?id_token_hint={TOKEN}&state=s HTTP/1.1") == (
        "GET /end-session?id_token_hint=[token]&state=s HTTP/1.1"
    )
    assert TOKEN not in repr(_atoms_of_get("/end-session", f"id_token_hint={TOKEN}", "302 Found"))
