"""CORS for the endpoints an app running in the browser calls itself: ``/token``, ``/userinfo``
and ``/revoke`` (OAuth 2.0 for Browser-Based Apps: the authorization server supports CORS at
the endpoints such an app calls; Keycloak's "web origins", Okta's "trusted origins").

A browser-based app is a public app (``threshold apps add --public``); the origins it runs at
are those of its redirect URIs: https, or http on a loopback address (a developer's machine).
An answer to a request from one of them names that origin in ``Access-Control-Allow-Origin``;
credentials (cookies) are never allowed, as these endpoints read none: the app proves itself
with its code and PKCE verifier, its refresh token or its access token. A confidential app's
redirect URIs allow nothing: its secret belongs on its server, not in a browser.

Every answer of these endpoints says ``Vary: Origin``. A preflight (``OPTIONS`` with
``Access-Control-Request-Method``, sent for ``/userinfo``'s Authorization header) is answered
here, before the view: 204, with the methods and headers allowed to a known origin.

The origins are kept per process as the apps are (``appcache``): a change to an app on this
machine applies at once, one on another server within ``appcache.MAX_AGE`` seconds.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_vary_headers

from threshold.sso import appcache
from threshold.sso.actions import LOOPBACK_HOSTS
from threshold.sso.models import Application

_DEFAULT_PORTS = {"https": 443, "http": 80}
_ALLOWED_HEADERS = "Authorization, Content-Type"
_PREFLIGHT_MAX_AGE = "600"

_lock = threading.Lock()
_kept: tuple[float, Any, frozenset[str]] | None = None

View = Callable[..., HttpResponse]


def origin_of(uri: str) -> str | None:
    """The origin a browser sends from a page at ``uri`` (RFC 6454 §6.1: the scheme, the host
    in lower case, the port unless it is the scheme's default), if that page may call these
    endpoints: https, or http on a loopback address; None otherwise."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname
    if not host or parts.scheme not in _DEFAULT_PORTS:
        return None
    try:
        # A browser sends an internationalized host in its ASCII form ("xn--bcher-kva").
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    if parts.scheme == "http" and host not in LOOPBACK_HOSTS:  # as app redirect URIs allow
        return None
    shown = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[parts.scheme]:
        shown = f"{shown}:{port}"
    return f"{parts.scheme}://{shown}"


def allowed_origins() -> frozenset[str]:
    """The origins of every public app's redirect URIs (``origin_of``)."""
    global _kept  # noqa: PLW0603 - this process's copy, as appcache keeps the apps
    kept = _kept
    stamp = appcache.stamp()
    if kept is not None and time.monotonic() - kept[0] <= appcache.MAX_AGE and kept[1] == stamp:
        return kept[2]
    origins = frozenset(
        origin
        for uris in Application.objects.filter(client_type=Application.CLIENT_PUBLIC).values_list(
            "redirect_uris", flat=True
        )
        for uri in uris.split()
        if (origin := origin_of(uri)) is not None
    )
    with _lock:
        _kept = (time.monotonic(), stamp, origins)
    return origins


def allow_as_last_read(request: HttpRequest, response: HttpResponse) -> None:
    """CORS for an answer made around the view (a body refused before it, the database
    failing under it), with the origins as this process last read them: never read now, as
    the database may be what failed. A process that has read none yet allows none."""
    kept = _kept
    origin = request.headers.get("Origin")
    _allow(response, origin if kept is not None and origin in kept[2] else None)


def _allow(response: HttpResponse, origin: str | None) -> None:
    """An answer's CORS headers: the origin, when allowed, and ``Vary: Origin`` always."""
    if origin is not None:
        response["Access-Control-Allow-Origin"] = origin
        # A refusal's challenge (RFC 6750 §3), for the app to read.
        response["Access-Control-Expose-Headers"] = "WWW-Authenticate"
    patch_vary_headers(response, ("Origin",))


def _allowed(request: HttpRequest) -> str | None:
    origin = request.headers.get("Origin")
    if not origin or origin not in allowed_origins():
        return None
    return origin


def for_browser_apps(methods: str) -> Callable[[View], View]:
    """Decorate an endpoint that browser-based apps call (``methods``: what it takes, as the
    preflight's ``Access-Control-Allow-Methods`` says them)."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def endpoint(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
                response = HttpResponse(status=204)
                origin = _allowed(request)
                if origin is not None:
                    response["Access-Control-Allow-Origin"] = origin
                    response["Access-Control-Allow-Methods"] = methods
                    response["Access-Control-Allow-Headers"] = _ALLOWED_HEADERS
                    response["Access-Control-Max-Age"] = _PREFLIGHT_MAX_AGE
                patch_vary_headers(response, ("Origin",))
                return response
            response = view(request, *args, **kwargs)
            _allow(response, _allowed(request))
            return response

        return endpoint

    return decorate
