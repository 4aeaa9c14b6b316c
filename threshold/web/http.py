"""The HTTP kit every app's views share: bodies, JSON answers, problem pages, the audit origin.

It imports no app above audit (``docs/architecture.md``, "Layers"): any app may use it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from enum import StrEnum
from functools import lru_cache, wraps
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
    UnreadablePostError,
)
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.urls import Resolver404, get_script_prefix, resolve, reverse
from django.utils.http import url_has_allowed_host_and_scheme

from threshold.audit.actions import Channel, Origin
from threshold.core import catalog, errors
from threshold.core.names import has_ascii_control, is_text
from threshold.web.proxy import client_address


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: behind a trusted proxy (THRESHOLD_BEHIND_TLS_PROXY=1), the one
    it forwarded; see ``threshold.web.proxy``."""
    return client_address(request.META)


def audit_origin(request: HttpRequest) -> Origin:
    return Origin(
        ip=client_ip(request),
        user_agent=request.META.get("HTTP_USER_AGENT", ""),
        via=Channel.WEB,
    )


# More digits than this in a Content-Length are refused: no body is that long, and int() (as
# Django's request.body calls it) fails on more than 4,300 digits, leading zeros included.
_MOST_DIGITS = 18


def content_length(request: HttpRequest) -> int:
    """The request's Content-Length (0 without one), or MalformedRequest when it is not a
    number of bytes: Django's ``request.body`` would fail on it with a ValueError (a 500)."""
    return declared_length(request.META)


def declared_length(meta: Mapping[str, Any]) -> int:
    """``content_length`` of a request's META or WSGI environ."""
    value = meta.get("CONTENT_LENGTH") or "0"
    # Digits only (RFC 9110 §8.6): int() would also take "+5", " 5", "5_0" and "-5".
    if not (isinstance(value, str) and value.isascii() and value.isdigit()):
        raise errors.MalformedRequest("the Content-Length is not a number of bytes")
    if len(value) > _MOST_DIGITS:
        raise errors.MalformedRequest("the Content-Length has too many digits")
    return int(value)


def request_body(request: HttpRequest) -> bytes:
    """``request.body``, or MalformedRequest when it cannot be read: the client stopped
    sending it (a connection reset mid-body), which Django raises as UnreadablePostError, an
    OSError that no handler answers (a 500, and a traceback in the log at anyone's will)."""
    try:
        return request.body
    except UnreadablePostError as exc:
        raise errors.MalformedRequest("the request body could not be read") from exc


def _read_body(request: HttpRequest) -> bytes | None:
    """The request body, or None when it is over the cap; MalformedRequest when its
    Content-Length is not a number or the body cannot be read."""
    if content_length(request) > settings.THRESHOLD_MAX_JSON_BODY:
        return None
    try:
        body = request_body(request)
    except RequestDataTooBig:
        return None
    return body if len(body) <= settings.THRESHOLD_MAX_JSON_BODY else None


# A UTF-16 surrogate, escaped (\\ud800) or as the bytes Python's JSON decoder lets through
# (ED A0 80): the only ways a request body becomes a string that is not text.
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def parse_json(body: bytes) -> Any:
    """``body`` (UTF-8) as JSON, as ``read_json`` reads a request body: MalformedRequest if it
    is not JSON or a string in it is not text. For JSON sent in a form field."""
    return _parse_json(body)


def _parse_json(body: bytes) -> Any:
    """A request body as JSON, or MalformedRequest: also when a string in it is not text.

    JSON may escape a lone UTF-16 surrogate ("\\ud800"), which Python decodes to a
    str that cannot be encoded as UTF-8: the database drivers fail on it (a 500).
    A surrogate pair is one character and fine.
    """
    try:
        # UTF-8 only (RFC 8259 §8.1), decoded strictly: json.loads(bytes) would also take
        # UTF-16 and UTF-32, whose lone surrogates the check below does not see. NaN,
        # Infinity and numbers too large for a float are not JSON numbers (§6).
        data = _DECODER.decode(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise errors.MalformedRequest("the request body is not JSON") from exc
    if _SURROGATE.search(body) and not _is_text(data):
        raise errors.MalformedRequest("the request body holds a lone UTF-16 surrogate")
    return data


def _not_a_number(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is too large for a number")
    return value


# One decoder for every request (json.loads with arguments would build one per call).
_DECODER = json.JSONDecoder(parse_constant=_not_a_number, parse_float=_finite_float)


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


def _check_json_type(request: HttpRequest) -> None:
    """MalformedRequest unless the body is sent as JSON (``application/json``, or a type of
    that structure, ``+json``, RFC 6839): what a JSON API answers a form, text or XML."""
    media_type = (request.content_type or "").lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise errors.MalformedRequest(f"the body is {media_type[:60] or 'untyped'}, not JSON")


def read_json(request: HttpRequest) -> Any:
    """The body as JSON, any value: RequestTooLarge over the cap, MalformedRequest if not JSON
    or not sent as JSON."""
    body = _read_body(request)
    if body is None:
        raise errors.RequestTooLarge()
    _check_json_type(request)
    return _parse_json(body)


def read_json_object(request: HttpRequest) -> dict[str, Any]:
    """The body as a JSON object (an empty body, of any type, is ``{}``), or MalformedRequest."""
    body = _read_body(request)
    if body is None:
        raise errors.RequestTooLarge()
    if not body.strip():
        return {}
    _check_json_type(request)
    data = _parse_json(body)
    if not isinstance(data, dict):
        raise errors.MalformedRequest("the request body must be a JSON object")
    return data


def optional_string(data: dict[str, Any], name: str, max_length: int = 150) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise errors.MalformedRequest(f"{name} must be a string of at most {max_length} characters")
    if has_ascii_control(value):
        raise errors.MalformedRequest(f"{name} must not contain control characters")
    if not is_text(value):
        raise errors.MalformedRequest(f"{name} must be text")
    return value


def json_login_required(view: Callable[..., JsonResponse]) -> Callable[..., JsonResponse]:
    """``login_required`` for the JSON endpoints: a signed-out caller gets a JSON
    "Session Expired" (401, with the session's challenge: ``problem``), not a redirect to the
    sign-in page that a script cannot follow."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        if not request.user.is_authenticated:
            return problem(catalog.CATALOG["session_expired"], 401)
        return view(request, *args, **kwargs)

    return wrapped


def on_settings(request: HttpRequest, **_: object) -> str:
    """Settings: the page most forms that need a signed-in person are on (``needs_sign_in``)."""
    return reverse("selfservice:settings")


def needs_sign_in(
    back: Callable[..., str] | None = None,
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Django's ``login_required``, for a page and for the forms sent from one: a signed-out
    GET or HEAD goes to sign in and back to the same address (302, as ``login_required``);
    any other method, a form sent after the session ended, gets 303 See Other to sign in
    (RFC 9110 §15.4.4: the browser GETs it, and no form is sent again) with ``next`` the page
    the form was on: ``back(request, **kwargs)``, else the form's own address, which must then
    answer GET. A form's address that takes only POST is never ``next``: signing in would land
    on its 405. As the admin portal's ``portal_view(back=...)``."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.user.is_authenticated:
                return view(request, *args, **kwargs)
            if request.method in ("GET", "HEAD"):
                return redirect_to_login(request.get_full_path())
            page = back(request, **kwargs) if back is not None else request.get_full_path()
            return see_other(redirect_to_login(page)["Location"])

        return wrapped

    return decorate


# RFC 9110 §15.5.2: a 401 "MUST send a WWW-Authenticate header field containing at least one
# challenge applicable to the target resource". The credential each of Threshold's JSON 401s
# asks for, by its catalog entry: a signed-in session's cookie (``json_login_required``;
# there is no registered scheme for one), or a request signed by a Threshold Verify device's
# key (``device_not_recognized``: docs/device-api.md). The OAuth endpoints answer their own
# (Basic, Bearer).
SESSION_CHALLENGE = 'Cookie realm="Threshold"'
DEVICE_CHALLENGE = 'Threshold-Device realm="Threshold"'
_CHALLENGES = {"device_not_recognized": DEVICE_CHALLENGE}


def ok(payload: dict[str, Any] | None = None) -> JsonResponse:
    return JsonResponse({"status": "ok", "errorMessage": "", **(payload or {})})


def problem(
    entry: catalog.CatalogEntry, status: int, extra: dict[str, Any] | None = None
) -> JsonResponse:
    """A JSON failure in the catalog's words (the shape the conformance API uses too); a 401
    names its challenge (``_CHALLENGES``)."""
    response = JsonResponse(
        {
            "status": "failed",
            "errorMessage": f"{entry.title}: {entry.message}",
            "error": entry.as_json(),
            **(extra or {}),
        },
        status=status,
    )
    if status == HTTPStatus.UNAUTHORIZED:
        response["WWW-Authenticate"] = _CHALLENGES.get(entry.key, SESSION_CHALLENGE)
    return response


def failed(
    error: errors.ThresholdError,
    surface: catalog.Surface | str,
    extra: dict[str, Any] | None = None,
) -> JsonResponse:
    """A refused request in the catalog's words and its category's status. The precise reason
    is in the audit log."""
    return problem(catalog.entry_for(error, surface), catalog.status_for(error), extra)


# The catalog entries webauthn.js shows on its own, when the browser (not the server) ends a
# ceremony; every failure the server answers carries its own entry. Every page that runs a
# ceremony passes them to the script as a JSON data block: only its ceremony's, to keep the
# sign-in page small (a test compares them with the script's uses).
_EITHER = ("not_supported", "no_compatible_device", "verification_incomplete")
SIGN_IN_ENTRIES = (
    "passkey_unavailable",
    "passkey_not_found_or_canceled",
    "passkey_not_on_device",
    "sign_in_timed_out",
    *_EITHER,
    "username_required",
)
SET_UP_ENTRIES = (
    "setup_unavailable",
    "setup_canceled",
    "setup_timed_out",
    "already_registered",
    *_EITHER,
)


def _page_catalog(keys: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The entries as a page carries them: each under its code, which webauthn.js puts back
    (``as_json`` but for the code, about 300 bytes of the sign-in page's weight)."""
    entries = {key: catalog.CATALOG[key].as_json() for key in keys}
    return {key: {k: v for k, v in entry.items() if k != "code"} for key, entry in entries.items()}


# For a page that signs in or verifies a person (an assertion), and for one that sets up a
# passkey (a registration).
SIGN_IN_CATALOG = _page_catalog(SIGN_IN_ENTRIES)
SET_UP_CATALOG = _page_catalog(SET_UP_ENTRIES)


def url_to(
    name: str, *args: object, query: Mapping[str, str] | None = None, fragment: str = ""
) -> str:
    """The path of the URL named ``name`` ("selfservice:settings"), with a query and fragment."""
    url = reverse(name, args=args)
    if query:
        url += f"?{urlencode(query)}"
    return f"{url}#{fragment}" if fragment else url


# The longest URL (path and query) a redirect may send a browser to on this site: `threshold
# serve`'s gunicorn reads request lines of at most 4094 bytes (its limit_request_line), "GET "
# and " HTTP/1.1" included, and refuses a longer one before Threshold sees it.
REQUEST_TARGET_MAX_LENGTH = 4094 - len("GET  HTTP/1.1")


def see_other(url: str) -> HttpResponseRedirect:
    """303 See Other: after a form is sent, the browser GETs ``url``."""
    return HttpResponseRedirect(url, status=303)


def query_value(request: HttpRequest, name: str) -> str:
    """The query string's last ``name`` ("" without one). A query string Django refuses to parse
    (over DATA_UPLOAD_MAX_NUMBER_FIELDS parameters) has none: read after a sign-in or a push
    was stored, its TooManyFieldsSent would answer 400 and leave what was stored unsent."""
    try:
        return request.GET.get(name, "")
    except TooManyFieldsSent:
        return ""


def safe_next(request: HttpRequest) -> str:
    """Where to go after signing in: ``?next=`` when it is on this site, else Home."""
    target = query_value(request, "next")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return _home(get_script_prefix())


@lru_cache(maxsize=4)
def _home(script_prefix: str) -> str:
    # reverse() under that prefix (set per request), once: it is every sign-in's answer.
    return reverse("selfservice:home")


class Done(StrEnum):
    """What Settings confirms at its top after a change (``?done=``), whichever app made it."""

    RENAMED = "renamed"
    REMOVED = "removed"
    NAME_CHANGED = "name-changed"
    SESSIONS_ENDED = "sessions-ended"
    FALLBACK_REMOVED = "fallback-removed"
    FALLBACK_SET_UP = "fallback-set-up"
    DEVICE_ADDED = "device-added"
    DEVICE_RENAMED = "device-renamed"
    DEVICE_REMOVED = "device-removed"
    SIGNED_OUT_OF_APP = "signed-out-of-app"


def settings_problem(request: HttpRequest, error: errors.ThresholdError) -> HttpResponse:
    """A refused change to one's own methods: a page in the catalog's words (Settings'), with
    its category's status and the way back to Settings."""
    return render(
        request,
        "web/problem.html",
        {
            "entry": catalog.entry_for(error, catalog.Surface.SETTINGS),
            "back_url": reverse("selfservice:settings"),
            "back_label": "Back to Settings",
        },
        status=catalog.status_for(error),
    )


def resolved_view(request: HttpRequest) -> Callable[..., HttpResponse] | None:
    """The view the request's path resolves to (the one Django resolved, when it got that far;
    a lean path resolves nothing), or None: for the marks a view carries (``web.bodies``'
    ``refuses_bodies_with``, ``answers_failures_with`` below), read only when a request is
    refused or failed."""
    match = request.resolver_match
    if match is None:
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return None
    view: Callable[..., HttpResponse] = match.func
    return view


def marking(attribute: str) -> Callable[[Any], Callable[[Callable[..., HttpResponseBase]], Any]]:
    """A decorator factory that marks a view with an answer (``attribute`` holds it), for the
    code that refuses or fails a request before or around the view to give that answer
    instead of its own (``marked_answer``)."""

    def with_answer(answer: Any) -> Callable[[Callable[..., HttpResponseBase]], Any]:
        def mark(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
            setattr(view, attribute, answer)
            return view

        return mark

    return with_answer


def marked_answer(request: HttpRequest, attribute: str) -> Any:
    """The answer the request's view is marked with (``marking``), or None."""
    answer = getattr(resolved_view(request), attribute, None)
    return answer if callable(answer) else None


_SETS_UP = "threshold_sets_up"

# Mark a page or endpoint that sets a sign-in method up: a failure under it is worded with the
# catalog's set-up entry ("... set it up later", ``web.views.server_error``), not the
# sign-in's ("... use your password").
sets_up = marking(_SETS_UP)(True)


def is_set_up(request: HttpRequest) -> bool:
    """Whether the request's view sets a sign-in method up (``sets_up``)."""
    return bool(getattr(resolved_view(request), _SETS_UP, False))


FailureAnswer = Callable[[HttpRequest, bool], HttpResponse]
_FAILURE_ANSWER = "threshold_failure_answer"

# Mark a view whose callers are servers that read its protocol's errors, not a person (an
# OAuth endpoint's JSON): a request that fails under it gets ``answer(request, unavailable)``
# instead of the catalog's page (``unavailable``: the database failed, and the answer gets
# the 503's Retry-After: ``web.views.server_error``).
answers_failures_with = marking(_FAILURE_ANSWER)


def failure_answer_of(request: HttpRequest) -> FailureAnswer | None:
    """The answer the request's view gives to its failures (``answers_failures_with``), if any."""
    answer: FailureAnswer | None = marked_answer(request, _FAILURE_ANSWER)
    return answer
