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
(``refuses_bodies_with``). Other bodies go on untouched: the JSON
endpoints answer an oversize body themselves (413) and audit it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import BadRequest, SuspiciousOperation
from django.http import HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError

from threshold.core.errors import MalformedRequest
from threshold.web.http import client_ip, content_length, marked_answer, marking
from threshold.web.views import bad_request

_FORMS = ("multipart/form-data", "application/x-www-form-urlencoded")
_logger = logging.getLogger(__name__)


class RequestBodyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST" and request.content_type in _FORMS:
            refusal = _refuse_form(request)
            if refusal is not None:
                return refusal
        return self.get_response(request)


def _refuse_form(request: HttpRequest) -> HttpResponse | None:
    why = form_refusal(request)
    if why is None:
        return None
    _logger.warning("Refused a %s body from %s: %s", request.content_type, client_ip(request), why)
    own = _own_refusal(request)
    return bad_request(request) if own is None else own(request)


_BODY_REFUSED = "threshold_body_refused"

# Mark a view whose callers are servers that read its protocol's errors, not a person (an
# OAuth endpoint's JSON): a form body refused here gets ``answer(request)`` instead of the
# catalog's page.
refuses_bodies_with = marking(_BODY_REFUSED)


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
    try:
        length = content_length(request)
    except MalformedRequest as error:
        return error.detail  # request.body would fail on it with a ValueError: a 500
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is not None and length > limit:
        return f"{length} bytes, over {limit}"
    try:
        request.body  # noqa: B018 - Django keeps it: the body stays readable
        request.POST  # noqa: B018 - parsed here, where a failure is ours to answer
    except (MultiPartParserError, SuspiciousOperation, BadRequest) as exc:
        # BadRequest: a form whose charset is not UTF-8 (Django 5.1+ refuses to parse it).
        return f"{type(exc).__name__}: {exc}"
    return None
