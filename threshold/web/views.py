"""The error handlers (400, 403, 404, 405, 500, CSRF failures): the catalog's words, as a page
or JSON."""

from __future__ import annotations

import sys

from django.contrib.auth.models import AnonymousUser
from django.db import InterfaceError, OperationalError, connections
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from threshold.core import catalog
from threshold.core.errors import Category
from threshold.web.http import failure_answer_of, is_set_up, problem

# How long a client waits before sending a request the database could not answer again.
RETRY_AFTER_SECONDS = 1


# Bodies whose senders read JSON answers: the JSON endpoints', and the device API's signed
# requests (docs/device-api.md).
_JSON_BODIES = ("application/json", "application/jose")


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "") or (
        request.content_type in _JSON_BODIES
    )


def problem_response(request: HttpRequest, key: str, status: int) -> HttpResponse:
    """The catalog entry ``key`` with ``status``: JSON for a JSON caller, else the page."""
    entry = catalog.CATALOG[key]
    if _wants_json(request):
        return problem(entry, status)
    return render(request, "web/problem.html", {"entry": entry}, status=status)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    return problem_response(request, "session_expired", 403)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return problem_response(request, "bad_request", 400)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return problem_response(request, "session_expired", 403)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return problem_response(request, "not_found", 404)


def server_error(request: HttpRequest) -> HttpResponse:
    # Django calls the handler inside its ``except`` (``response_for_exception``, also the
    # lean paths'), so the exception is at hand. A database that failed or was busy
    # (OperationalError: "database is locked", a connection closed under the request) is an
    # outage the client may retry: 503 "try again", not a 500. Django logs it either way.
    unavailable = isinstance(sys.exc_info()[1], OperationalError | InterfaceError)
    if unavailable:
        # The page must not need the database that just failed: who is signed in is read
        # from the session's row (the base page's account menu), so it is not asked. And the
        # connection goes: a SQLite file opened while read-only stays read-only in it, and
        # Django keeps SQLite connections for good; the next request opens a new one.
        request.user = AnonymousUser()
        for connection in connections.all(initialized_only=True):
            if not connection.in_atomic_block:
                connection.close()
    own = failure_answer_of(request)
    if own is not None:
        response = own(request, unavailable)
    elif unavailable:
        presentation = catalog.PRESENTATIONS[Category.UNAVAILABLE]
        surface = (
            catalog.Surface.REGISTRATION if is_set_up(request) else catalog.Surface.AUTHENTICATION
        )
        entry = presentation.entry(surface)
        response = problem_response(request, entry.key, presentation.status)
    else:
        return problem_response(request, "verification_incomplete", 500)
    if unavailable:
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
