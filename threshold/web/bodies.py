"""Form bodies, read before the CSRF check parses them (``RequestBodyMiddleware``).

Django's CSRF middleware reads ``request.POST`` on every POST. For a form body
(multipart or URL-encoded) that parses the body, and two things follow unless
the body was read first:

- a multipart body is consumed as a stream: ``request.body`` then raises
  RawPostDataException, so a JSON endpoint sent multipart failed with a 500;
- a form over ``DATA_UPLOAD_MAX_MEMORY_SIZE``, or one that does not parse (a
  broken multipart boundary, too many fields), raises an exception that Django
  answers with a 400 and logs with its whole traceback.

Here such a form is refused before any view, in the catalog's words
(bad_request, 400) with one log line, and any other form body is read and
parsed first, so it stays readable. A view whose callers are servers reading
its protocol's errors (an OAuth endpoint) answers such a refusal itself
(``refuses_bodies_with``), and so does a page whose form has words of its own
for it (``answers_refused_forms_with``: the admin portal's CSV import, "The
file is over 60 KB", 413). Other bodies go on untouched: the JSON endpoints
answer an oversize body themselves (413) and audit it.
"""

from __future__ import annotations

import codecs
import logging
from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import BadRequest, SuspiciousOperation
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest, HttpResponse, QueryDict
from django.http.multipartparser import MultiPartParserError
from django.http.response import HttpResponseBase
from django.urls import resolve
from django.utils.http import parse_header_parameters
from django.utils.module_loading import import_string

from threshold.core.errors import MalformedRequest
from threshold.web.http import (
    client_ip,
    content_length,
    marked_answer,
    marking,
    request_body,
)
from threshold.web.views import bad_request

_FORMS = ("multipart/form-data", "application/x-www-form-urlencoded")
_logger = logging.getLogger(__name__)


# Set in the environ by the WSGI application (``passkeys.lean.LeanSignInApplication``) when
# the Content-Type names a charset Django cannot build a request in (``unreadable_charset``):
# the charset is left out of the Content-Type, so that Django can, and the request is refused
# here, whatever its method, as a body that cannot be read is.
REFUSED_CHARSET = "threshold.refused_charset"


def unreadable_charset(environ: Mapping[str, Any]) -> str | None:
    """Why the request's Content-Type (its charset, or a parameter it cannot parse) would make
    Django fail while reading it, or None.

    Django takes any charset ``codecs.lookup`` knows as the request's encoding, and decodes
    the query string (even of a GET) and form bodies with it. A bytes codec (zlib, base64,
    rot13) or a codec that cannot decode the query string ('undefined', 'punycode') then
    raises outside any view: a 500 before a handler runs. So does a parameter it cannot
    parse: an RFC 2231 one (``name*=charset''value``) in a charset it does not know or that
    cannot decode the value, a charset with a NUL. A charset Django does not know it ignores,
    and so does this."""
    content_type = str(environ.get("CONTENT_TYPE") or "")
    if ";" not in content_type or (
        "charset" not in content_type.lower() and "*" not in content_type
    ):
        return None  # the common case, on every request: no parsing
    try:
        _, params = parse_header_parameters(content_type)
    except (ValueError, LookupError) as exc:  # UnicodeError included
        return f"a Content-Type parameter cannot be read: {type(exc).__name__}"
    charset = params.get("charset")
    return _charset_refusal(str(charset), environ) if charset else None


def _charset_refusal(charset: str, environ: Mapping[str, Any]) -> str | None:
    """Why Django would fail reading the request in ``charset``, or None."""
    try:
        codec = codecs.lookup(charset)
    except LookupError:
        return None  # a charset Django does not know: ignored, there as here
    except ValueError:
        return "the charset cannot be looked up"  # a NUL in it: Django raises as well
    if not getattr(codec, "_is_text_encoding", True):
        return f"charset {charset!r} is not a text encoding"
    try:
        # As WSGIRequest.GET reads it: the environ's text is the bytes, one per character.
        query = str(environ.get("QUERY_STRING") or "").encode("iso-8859-1", "replace")
        QueryDict(query, encoding=charset)
        "a=b".encode(charset).decode(charset)
    except Exception as exc:  # noqa: BLE001 - whatever the codec raises, Django would too
        return f"charset {charset!r} cannot be read: {type(exc).__name__}"
    return None


def without_charset(environ: dict[str, Any], why: str) -> dict[str, Any]:
    """``environ`` with its Content-Type's parameters left out and ``REFUSED_CHARSET`` set."""
    media_type = str(environ.get("CONTENT_TYPE") or "").split(";", 1)[0].strip()
    return {**environ, "CONTENT_TYPE": media_type, REFUSED_CHARSET: why}


class RequestBodyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if REFUSED_CHARSET in request.META:
            return _refused(request, str(request.META[REFUSED_CHARSET]))
        if request.method == "POST" and request.content_type in _FORMS:
            refusal = _refuse_form(request)
            if refusal is not None:
                return refusal
        return self.get_response(request)


def _refuse_form(request: HttpRequest) -> HttpResponseBase | None:
    why = form_refusal(request)
    return None if why is None else _refused(request, why)


def _refused(request: HttpRequest, why: str) -> HttpResponseBase:
    _logger.warning("Refused a %s body from %s: %s", request.content_type, client_ip(request), why)
    own = _own_refusal(request)
    if own is not None:
        return own(request)
    page: Callable[[HttpRequest], HttpResponseBase] | None = marked_answer(request, _FORM_REFUSED)
    if page is not None:
        return _answered_below(request, page)
    return bad_request(request)


_BODY_REFUSED = "threshold_body_refused"

# Mark a view whose callers are servers that read its protocol's errors, not a person (an
# OAuth endpoint's JSON): a form body refused here gets ``answer(request)`` instead of the
# catalog's page.
refuses_bodies_with = marking(_BODY_REFUSED)


_FORM_REFUSED = "threshold_form_refused"

# Mark a page whose form people send, with a refusal of its own words for a form refused here
# (a file over the cap): ``answer(request)`` is answered as a view is, past the rest of the
# middleware (the CSRF cookie, the signed-in person, the session's timeouts, the security
# headers: ``_answered_below``), with the form left unread (empty), instead of the catalog's
# "Session Expired" page, which a signed-out visitor is answered before the session is read.
# The CSRF check, in front of the views, is not made: the answer must change nothing.
answers_refused_forms_with = marking(_FORM_REFUSED)

# The middleware after this one (settings.MIDDLEWARE), through which ``_answered_below`` goes.
_THIS = f"{__name__}.RequestBodyMiddleware"


def _answered_below(
    request: HttpRequest, answer: Callable[[HttpRequest], HttpResponseBase]
) -> HttpResponseBase:
    """``answer(request)`` through the middleware after this one, each wrapped as Django's
    handler wraps it (an exception is answered by the error handlers), as a view's answer
    goes, with the refused form left unread: empty, never read here."""
    # Empty POST and FILES, as a form Django fails to parse leaves them.
    request._mark_post_parse_error()  # type: ignore[attr-defined]  # noqa: SLF001
    # What Django's handler sets before the view (the page's navigation reads it).
    request.resolver_match = resolve(request.path_info)
    handler = convert_exception_to_response(answer)
    below = settings.MIDDLEWARE[settings.MIDDLEWARE.index(_THIS) + 1 :]
    for path in reversed(below):
        handler = convert_exception_to_response(import_string(path)(handler))
    response = handler(request)
    assert isinstance(response, HttpResponseBase)  # noqa: S101 - a WSGI stack: never awaitable
    return response


def _own_refusal(request: HttpRequest) -> Callable[[HttpRequest], HttpResponse] | None:
    """The refusal of the view the request is for, if it answers refused bodies itself
    (resolved only for a body that is refused: the middleware runs before URL resolving)."""
    answer: Callable[[HttpRequest], HttpResponse] | None = marked_answer(request, _BODY_REFUSED)
    return answer


def body_refusal_of(
    view: Callable[..., HttpResponse],
) -> Callable[[HttpRequest], HttpResponse] | None:
    """The answer ``view`` is marked to give a refused form body (``refuses_bodies_with``), or
    None: for a lean path, which refuses bodies itself before any middleware."""
    answer = getattr(view, _BODY_REFUSED, None)
    return answer if callable(answer) else None


def form_refusal(request: HttpRequest) -> str | None:
    """Why a form body is refused (its length, or a parse failure), or None once it is read
    and parsed: the check ``RequestBodyMiddleware`` makes, for the lean paths that skip it."""
    if REFUSED_CHARSET in request.META:
        return str(request.META[REFUSED_CHARSET])
    try:
        length = content_length(request)
    except MalformedRequest as error:
        return error.detail  # request.body would fail on it with a ValueError: a 500
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is not None and length > limit:
        return f"{length} bytes, over {limit}"
    try:
        request_body(request)  # Django keeps it: the body stays readable
        request.POST  # noqa: B018 - parsed here, where a failure is ours to answer
    except MalformedRequest as error:
        return error.detail  # the client stopped sending it (UnreadablePostError: a 500)
    except (
        MultiPartParserError,
        SuspiciousOperation,
        BadRequest,
        UnicodeError,
        LookupError,
    ) as exc:
        # BadRequest: a form whose charset is not UTF-8 (Django 5.1+ refuses to parse it).
        # UnicodeError, LookupError: a multipart field its charset cannot decode.
        return f"{type(exc).__name__}: {exc}"
    return None
