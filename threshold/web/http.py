"""Small HTTP helpers shared by the views: bodies, JSON answers, the audit origin."""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse

from threshold import clock
from threshold.audit.actions import Origin
from threshold.core import catalog, errors
from threshold.core.names import is_text
from threshold.passkeys.pending import KINDS, Ceremonies


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: behind the TLS proxy (THRESHOLD_BEHIND_TLS_PROXY=1), the one the
    proxy appended to X-Forwarded-For (the last entry: earlier ones are the client's to forge)."""
    if settings.THRESHOLD.proxy_ssl_header:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").rsplit(",", 1)[-1].strip()
        try:
            return str(ipaddress.ip_address(forwarded))
        except ValueError:
            pass
    return request.META.get("REMOTE_ADDR") or None


def audit_origin(request: HttpRequest) -> Origin:
    return Origin(
        ip=client_ip(request),
        user_agent=request.META.get("HTTP_USER_AGENT", ""),
        via="web",
    )


def read_body(request: HttpRequest) -> bytes | None:
    """The request body, or None when it is over the cap."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > settings.THRESHOLD_MAX_JSON_BODY:
        return None
    try:
        body = request.body
    except RequestDataTooBig:
        return None
    return body if len(body) <= settings.THRESHOLD_MAX_JSON_BODY else None


# A UTF-16 surrogate, escaped (\\ud800) or as the bytes Python's JSON decoder lets through
# (ED A0 80): the only ways a request body becomes a string that is not text.
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def parse_json(body: bytes) -> Any:
    """A request body as JSON, or MalformedRequest: also when a string in it is not text.

    JSON may escape a lone UTF-16 surrogate ("\\ud800"), which Python decodes to a
    str that cannot be encoded as UTF-8: the database drivers fail on it (a 500).
    A surrogate pair is one character and fine.
    """
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise errors.MalformedRequest("the request body is not JSON") from exc
    if _SURROGATE.search(body) and not _is_text(data):
        raise errors.MalformedRequest("the request body holds a lone UTF-16 surrogate")
    return data


def _is_text(value: Any) -> bool:
    """Whether every string in a decoded JSON value, keys included, is encodable text."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not is_text(item):
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def read_json_object(request: HttpRequest) -> dict[str, Any]:
    """The body as a JSON object, or MalformedRequest."""
    body = read_body(request)
    if body is None:
        raise errors.RequestTooLarge()
    if not body.strip():
        return {}
    data = parse_json(body)
    if not isinstance(data, dict):
        raise errors.MalformedRequest("the request body must be a JSON object")
    return data


def optional_string(data: dict[str, Any], name: str, max_length: int = 150) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise errors.MalformedRequest(f"{name} must be a string of at most {max_length} characters")
    if any(ord(character) < 32 or ord(character) == 127 for character in value):
        raise errors.MalformedRequest(f"{name} must not contain control characters")
    if not is_text(value):
        raise errors.MalformedRequest(f"{name} must be text")
    return value


# --- Ceremony tokens: a cookie per kind ---------------------------------------------------------

CEREMONY_COOKIE = "threshold_ceremony_{kind}"


def ceremonies(request: HttpRequest) -> Ceremonies:
    """The ceremony tokens the browser sent; those a view begins go back with the response.

    A ceremony begun for a signed-in person is bound to their session.
    ``CeremonyCookieMiddleware`` writes the cookies.
    """
    found = getattr(request, "_threshold_ceremonies", None)
    if found is None:
        received = {
            kind: request.COOKIES[name]
            for kind in KINDS
            if (name := CEREMONY_COOKIE.format(kind=kind)) in request.COOKIES
        }
        signed_in = request.user.is_authenticated
        found = Ceremonies(received, request.session.session_key if signed_in else None)
        request._threshold_ceremonies = found  # type: ignore[attr-defined]
    return found


class CeremonyCookieMiddleware:
    """Sends the tokens of the ceremonies a view began, and removes the ones it used up.

    HttpOnly: only the server reads them. SameSite=Strict: the ceremony pages call
    their endpoints from the same site. They expire with the ceremony.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        found: Ceremonies | None = getattr(request, "_threshold_ceremonies", None)
        if found is None:
            return response
        for kind in found.taken - found.issued.keys():
            response.delete_cookie(CEREMONY_COOKIE.format(kind=kind), samesite="Strict")
        now = clock.now()
        for kind, (token, expires_at) in found.issued.items():
            response.set_cookie(
                CEREMONY_COOKIE.format(kind=kind),
                token,
                max_age=max(1, math.ceil(expires_at - now)),
                secure=settings.SESSION_COOKIE_SECURE,
                httponly=True,
                samesite="Strict",
            )
        return response


def json_login_required(view: Callable[..., JsonResponse]) -> Callable[..., JsonResponse]:
    """``login_required`` for the JSON endpoints: a signed-out caller gets a JSON
    "Session Expired" (401), not a redirect to the sign-in page that a script cannot follow."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        if not request.user.is_authenticated:
            return problem(catalog.CATALOG["session_expired"], 401)
        return view(request, *args, **kwargs)

    return wrapped


def ok(payload: dict[str, Any] | None = None) -> JsonResponse:
    return JsonResponse({"status": "ok", "errorMessage": "", **(payload or {})})


def problem(
    entry: catalog.CatalogEntry, status: int, extra: dict[str, Any] | None = None
) -> JsonResponse:
    """A JSON failure in the catalog's words (the shape the conformance API uses too)."""
    return JsonResponse(
        {
            "status": "failed",
            "errorMessage": f"{entry.title}: {entry.message}",
            "error": entry.as_json(),
            **(extra or {}),
        },
        status=status,
    )


def failed(
    error: errors.CeremonyError, ceremony: str, extra: dict[str, Any] | None = None
) -> JsonResponse:
    """A failed ceremony in the catalog's words. The precise reason is in the audit log."""
    return problem(catalog.entry_for(error, ceremony), _STATUS.get(type(error), 400), extra)


_STATUS: dict[type[errors.CeremonyError], int] = {
    errors.RequestTooLarge: 413,
    errors.TooManyAttempts: 429,
    errors.StepUpRequired: 403,
    errors.AccountLocked: 403,
}
