"""A request with a method its address does not take, answered in the catalog's words.

Django's ``require_POST`` and class-based views answer such a request with a bare 405:
an empty body, which a browser shows as its own "This page isn't working" and a
script cannot read. ``MethodNotAllowedMiddleware`` keeps the status and the ``Allow``
header and gives the body the error handlers give (``threshold.web.views``): JSON for
a JSON caller, else the page. A person who opens an address that only a form or a
script posts to (a form's answer reloaded, bookmarked or opened from the history) reads
"Page No Longer Available" with the way back; any other method reads "This request could
not be understood".

A view whose callers are servers that read its protocol's errors, not a person (an OAuth
endpoint), is marked with its own answer (``answers_wrong_methods_with``, the mechanism of
``threshold.web.http.marking``): it gets that answer, whatever the Accept header, with the
``Allow`` header it was given.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus

from django.http import HttpRequest, HttpResponse

from threshold.web.http import marked_answer, marking
from threshold.web.views import problem_response

# The answer of a marked view to a method it does not take: ``answer(request, allow)``, where
# ``allow`` is the Allow header's value ("POST", "GET, HEAD", ...).
MethodAnswer = Callable[[HttpRequest, str], HttpResponse]
_METHOD_ANSWER = "threshold_method_answer"
answers_wrong_methods_with = marking(_METHOD_ANSWER)


class MethodNotAllowedMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code != HTTPStatus.METHOD_NOT_ALLOWED
            or response.streaming
            or response.content
        ):
            return response
        allow = response["Allow"] if response.has_header("Allow") else ""
        own: MethodAnswer | None = marked_answer(request, _METHOD_ANSWER)
        if own is not None:
            answer = own(request, allow)
        else:
            key = "form_answered" if request.method in ("GET", "HEAD") else "bad_request"
            answer = problem_response(request, key, HTTPStatus.METHOD_NOT_ALLOWED)
        if allow:
            answer["Allow"] = allow
        return answer


class HeadMiddleware:
    """A HEAD is answered as the GET of the same address, without its body (RFC 9110 §9.3.2;
    §9.1: a general-purpose server MUST support GET and HEAD). The views say which methods they
    take with ``require_http_methods(["GET", "POST"])``, which refuses HEAD; a link checker or a
    mail scanner would then report a working link as dead. Outside ``MethodNotAllowedMiddleware``:
    a HEAD that no GET answers keeps its 405, and no answer to a HEAD carries a body (its
    Content-Length is the GET's)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.method != "HEAD":
            return response
        allowed = response["Allow"] if response.has_header("Allow") else ""
        if response.status_code == HTTPStatus.METHOD_NOT_ALLOWED and "GET" in allowed.split(", "):
            request.method = "GET"
            try:
                response = self.get_response(request)
            finally:
                request.method = "HEAD"
        if not response.streaming:
            length = len(response.content)
            response.content = b""
            response["Content-Length"] = str(length)
        return response
