"""One request to the production WSGI application (``threshold.wsgi.application``), from an
environ built by hand as gunicorn builds it: what the lean paths (threshold/passkeys/lean.py,
threshold/sso/lean.py) answer before Django's handler is only reached this way."""

from __future__ import annotations

import io
from http.cookies import SimpleCookie
from typing import IO, Any

from django.core import signals
from django.db import close_old_connections


def wsgi(
    method: str,
    path: str,
    body: bytes = b"",
    cookies: dict[str, str] | None = None,
    *,
    as_served: bool = False,
    stream: IO[bytes] | None = None,
    raw_cookie: str | None = None,
    **headers: Any,
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, content) of one request; ``cookies`` the browser's jar, updated from
    the answer's Set-Cookie. A header given as None is left out of the environ (no
    Content-Length, no Content-Type); ``stream`` is read instead of ``body`` (a body shorter
    than its Content-Length); ``raw_cookie`` is sent as the Cookie header as it is."""
    from threshold.wsgi import application  # noqa: PLC0415 - loads the production handler

    cookies = cookies if cookies is not None else {}
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "localhost:8000",
        "REMOTE_ADDR": "203.0.113.9",
        "wsgi.url_scheme": "http",
        "wsgi.input": stream if stream is not None else io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/json",
        "HTTP_COOKIE": (
            raw_cookie
            if raw_cookie is not None
            else "; ".join(f"{name}={value}" for name, value in cookies.items())
        ),
        "HTTP_USER_AGENT": "Mozilla/5.0 (WSGI)",
        **headers,
    }
    environ = {name: value for name, value in environ.items() if value is not None}
    started: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info=None):  # type: ignore[no-untyped-def]
        started.update(status=status, headers=response_headers)

    # As Django's test client does: the test's transaction is open, and closing the
    # connection "left in a transaction" at the end of the request would end the test's.
    # (``as_served``: no test transaction, the connection checks gunicorn's requests get.)
    if not as_served:
        signals.request_started.disconnect(close_old_connections)
        signals.request_finished.disconnect(close_old_connections)
    try:
        chunks = application(environ, start_response)
        content = b"".join(chunks)
        getattr(chunks, "close", lambda: None)()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
    for name, value in started["headers"]:
        if name == "Set-Cookie":
            morsel = next(iter(SimpleCookie(value).values()))
            cookies[morsel.key] = morsel.value
    return int(started["status"].split()[0]), dict(started["headers"]), content
