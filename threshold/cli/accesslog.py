"""gunicorn's access log, without the secrets some addresses carry.

An enrollment or recovery link's token is in its path (``/enroll/<token>``):
whoever reads the server's log must not be able to take over an account with
it. Every field a log format can name (the request line, the path, the
Referer, any header or WSGI variable) has the token replaced.

Successful passkey sign-in requests are not logged: at nine in the morning they
are most of the traffic, a line each costs a fifth of the request's CPU, and the
audit log already records every sign-in's result (with its address and browser).
Their failures (4xx, 5xx) are logged as everything else is.

Nor are an app's successful ``/token`` and ``/userinfo`` calls (threshold/sso/), two of
the three requests of every single sign-on: each token issued is audited (with the app,
the person and the address), and a userinfo answer only reads what that token was
issued for.
"""

from __future__ import annotations

import re
from typing import Any

from gunicorn.glogging import Logger

_TOKEN_IN_PATH = re.compile(r"(/enroll/)[^/?#\s\"]+")
# threshold/passkeys/urls.py's sign-in-options and sign-in-result (a test compares them).
QUIET_PATHS = frozenset({"/sign-in/options", "/sign-in/result"})
# threshold/sso/urls.py's token and userinfo (a test compares them too).
QUIET_PATHS |= frozenset({"/token", "/userinfo"})
_HTTP_BAD_REQUEST = 400


def redact(text: str) -> str:
    return _TOKEN_IN_PATH.sub(r"\1[token]", text)


class RedactingLogger(Logger):  # type: ignore[misc]
    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        status = getattr(resp, "status_code", None)
        if req.path in QUIET_PATHS and isinstance(status, int) and status < _HTTP_BAD_REQUEST:
            return
        super().access(resp, req, environ, request_time)

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for field, value in atoms.items():
            if isinstance(value, str) and "/enroll/" in value:
                atoms[field] = redact(value)
        return atoms
