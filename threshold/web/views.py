"""The error handlers (400, 403, 404, 405, 500, CSRF failures): the catalog's words, as a page
or JSON."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from threshold.core import catalog
from threshold.web.http import problem


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "") or (
        request.content_type == "application/json"
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
    return problem_response(request, "verification_incomplete", 500)
