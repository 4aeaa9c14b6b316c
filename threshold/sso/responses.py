"""How an authorization response reaches the app: the response mode it asked for.

OAuth 2.0 Multiple Response Type Encoding Practices §2.1 defines ``query`` (the default of
the ``code`` response type) and ``fragment`` (legal for ``code`` too); OAuth 2.0 Form Post
Response Mode (OpenID, 2015) defines ``form_post``: the parameters as an HTML form's fields,
POSTed by the browser to the redirect URI (§2), so that they appear in no URL. oauthlib knows
the first two and silently answers anything else with ``query``; here each is honoured, and
every answer sent to the app's redirect URI — a code or an error the app can receive — goes
the way the request asked, so an app reads its errors where it reads its codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from urllib.parse import urlsplit

from django.core.exceptions import DisallowedRedirect
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.utils.cache import add_never_cache_headers
from oauth2_provider.http import OAuth2ResponseRedirect
from oauthlib.common import add_params_to_uri

# A redirect URI's schemes (http for loopback apps; registration checks which).
_SCHEMES = ("http", "https")


class ResponseMode(StrEnum):
    """The response modes this provider honours (discovery's ``response_modes_supported``)."""

    QUERY = "query"
    FRAGMENT = "fragment"
    FORM_POST = "form_post"


def response_mode_of(params: QueryDict) -> ResponseMode | None:
    """The mode the request asks for, ``query`` when it asks for none; None for a value this
    provider does not know, or a repeated ``response_mode`` (RFC 6749 §3.1: "MUST NOT be
    included more than once")."""
    values = params.getlist("response_mode")
    if len(values) > 1:
        return None
    if not values or not values[0]:
        # RFC 6749 §3.1: a parameter sent without a value is treated as omitted.
        return ResponseMode.QUERY
    try:
        return ResponseMode(values[0])
    except ValueError:
        return None


def is_web_uri(uri: str) -> bool:
    """Whether ``uri`` is http(s): a page's, which a form may post to."""
    return urlsplit(uri).scheme in _SCHEMES


def origin_of(uri: str) -> str:
    """The origin of ``uri`` as a CSP source names it: scheme, host and port, without the
    user name and password a URI may carry (which would make the source invalid, and be
    echoed in a header)."""
    parts = urlsplit(uri)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{host}{port}"


def respond(
    request: HttpRequest,
    redirect_uri: str,
    params: list[tuple[str, str]],
    mode: ResponseMode,
    app_name: str = "",
    *,
    schemes: Sequence[str] = _SCHEMES,
) -> HttpResponse:
    """The authorization response carrying ``params`` to ``redirect_uri`` (registered for the
    app; oauthlib checked it) in ``mode``; ``schemes``, those the app may be sent to (a native
    app's private-use one: ``Application.get_allowed_schemes``)."""
    if mode is ResponseMode.FORM_POST and is_web_uri(redirect_uri):
        return _form_post(request, redirect_uri, params, app_name)
    if mode is ResponseMode.FORM_POST:
        # A refusal for a native app that asked for form_post: no page can post to its
        # private-use URI, so the code flow's default (authorize refuses form_post with such a
        # URI before any code is issued).
        mode = ResponseMode.QUERY
    uri = add_params_to_uri(redirect_uri, params, fragment=mode is ResponseMode.FRAGMENT)
    response: HttpResponse = OAuth2ResponseRedirect(uri, list(schemes))
    return response


def _form_post(
    request: HttpRequest, redirect_uri: str, params: list[tuple[str, str]], app_name: str
) -> HttpResponse:
    """Form Post Response Mode §2: a page whose form POSTs ``params`` to the redirect URI,
    sent by ``form-post.js`` (no inline script under our CSP) or by its Continue button."""
    if urlsplit(redirect_uri).scheme not in _SCHEMES:
        # As OAuth2ResponseRedirect refuses one: never a form action of another scheme.
        raise DisallowedRedirect(f"Unsafe redirect URI scheme: {urlsplit(redirect_uri).scheme}")
    response = render(
        request,
        "sso/form_post.html",
        {"redirect_uri": redirect_uri, "params": params, "app_name": app_name},
    )
    # The form may be sent to the app's origin, and only to it (django-csp's per-response
    # update: form-action 'self' plus that origin).
    response._csp_update = {"form-action": [origin_of(redirect_uri)]}  # type: ignore[attr-defined]  # noqa: SLF001
    # The page holds a code: no cache may keep it (Form Post Response Mode §5's example).
    add_never_cache_headers(response)
    response["Pragma"] = "no-cache"
    # The code is in the POST's body, never a URL. The app gets no Referer (same-origin),
    # but does get an Origin header: no-referrer would send "Origin: null", which apps that
    # check a POST's origin refuse.
    response["Referrer-Policy"] = "same-origin"
    return response
