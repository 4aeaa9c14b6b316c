"""gunicorn's access log, and the application's log, without the secrets some addresses carry.

An enrollment or recovery link's token is in its path (``/enroll/<token>``):
whoever reads the server's log must not be able to take over an account with
it. Every field a log format can name (the request line, the path, the
Referer, any header or WSGI variable) has the token replaced, and so has an
OAuth token a client put in a URL's query (``?token=``, ``?access_token=``,
their names percent-encoded or not).

Successful passkey sign-in requests are not logged: at nine in the morning they
are most of the traffic, a line each costs a fifth of the request's CPU, and the
audit log already records every sign-in's result (with its address and browser).
Their failures (4xx, 5xx) are logged as everything else is.

Nor are an app's successful ``/token`` and ``/userinfo`` calls (threshold/sso/), two of
the three requests of every single sign-on: each token issued is audited (with the app,
the person and the address), and a userinfo answer only reads what that token was
issued for.

Nor is ``/authorize``'s answer that sends a browser back to its app with a code (a 302 whose
Location is the app's and has a ``code`` parameter): each is audited as the authorization it
is (app, person, address). Its other answers (pages, a redirect to sign in, an error sent to
the app) are logged.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from gunicorn.glogging import Logger

# An OAuth token sent in a URL's query (``/introspect?token=`` from a client that uses GET,
# which is refused, or a token sent where none belongs): the token is live all the same.
# A name may come percent-encoded (``access%5Ftoken``): Django and oauthlib decode it, and
# /userinfo refuses it as the token in the query it is, a refusal that is logged.
# An ID token too: an app's logout form posted to /end-session is answered by a 303 to the
# same request as a GET, with its id_token_hint in the URL (RP-Initiated Logout's POST).
# And what an app sends /token, /revoke or /introspect in a URL (refused, logged all the
# same): a live authorization code with its PKCE verifier, the app's own secret; a password.
_TOKEN_NAMES = (
    "token",
    "access_token",
    "refresh_token",
    "id_token_hint",
    "id_token",
    "code",
    "code_verifier",
    "client_secret",
    "client_assertion",
    "password",
)


def _encoded_or_not(name: str) -> str:
    return "".join(f"(?:{re.escape(c)}|%(?i:{ord(c):02x}))" for c in name)


# A link's token in its path, however much of ``/enroll/`` came percent-encoded
# (``/enroll%2F<token>``, ``/%65nroll/<token>``): gunicorn decodes the path, and the link works.
_TOKEN_IN_PATH = re.compile(f"({_encoded_or_not('/enroll/')})" + r"[^/?#\s\"]+")


_TOKEN_IN_QUERY = re.compile(
    r"((?:^|[?&])(?:" + "|".join(map(_encoded_or_not, _TOKEN_NAMES)) + r")=)[^&#\s\"]+"
)
# threshold/passkeys/urls.py's sign-in-options and sign-in-result (a test compares them).
QUIET_PATHS = frozenset({"/sign-in/options", "/sign-in/result"})
# threshold/sso/urls.py's token and userinfo (a test compares them too).
QUIET_PATHS |= frozenset({"/token", "/userinfo"})
_HTTP_BAD_REQUEST = 400
# threshold/sso/urls.py's authorize (a test compares it).
AUTHORIZE_PATH = "/authorize"
_HTTP_FOUND = 302
_CODE_PARAMETER = re.compile(r"[?&]code=")


def redact(text: str) -> str:
    return _TOKEN_IN_QUERY.sub(r"\1[token]", _TOKEN_IN_PATH.sub(r"\1[token]", text))


class RedactingFormatter(logging.Formatter):
    """The application's own log lines (``settings.LOGGING``), redacted as the access log is:
    Django names the path in some of them (``django.security.csrf``'s "Forbidden (CSRF
    cookie not set.): /enroll/<token>/options", ``django.request``'s "Internal Server Error:
    ..." with its traceback), and a link's token there is as live as in the access log."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class OneLine(logging.Filter):
    """A refusal anyone can cause, as one WARNING line without its traceback: Django logs a
    foreign Host header (``django.security.DisallowedHost``, any scanner's) or a query string
    of too many fields (``TooManyFieldsSent``) at ERROR with a traceback that says no more than
    its message, and hundreds a minute would bury real errors. The access log's line for the
    400 stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
        return True


class RedactingLogger(Logger):  # type: ignore[misc]
    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        status = getattr(resp, "status_code", None)
        if req.path in QUIET_PATHS and isinstance(status, int) and status < _HTTP_BAD_REQUEST:
            return
        if req.path == AUTHORIZE_PATH and status == _HTTP_FOUND and _code_to_app(resp):
            return
        super().access(resp, req, environ, request_time)

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for field, value in atoms.items():
            if isinstance(value, str) and ("/enroll" in value or "=" in value or "%" in value):
                atoms[field] = redact(value)
        return atoms


def _code_to_app(resp: Any) -> bool:
    """Does this answer send the browser to an app (an absolute Location) with a code?"""
    for name, value in getattr(resp, "headers", ()):
        if name.lower() == "location":
            return "://" in value.split("?", 1)[0] and bool(_CODE_PARAMETER.search(value))
    return False
