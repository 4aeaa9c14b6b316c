"""The error handlers (400, 403, 404, 500, CSRF failures): the catalog's words, page or JSON."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from threshold.core import catalog
from threshold.web.http import problem


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "") or (
        request.content_type == "application/json"
    )


def _problem(request: HttpRequest, key: str, status: int) -> HttpResponse:
    entry = catalog.CATALOG[key]
    if _wants_json(request):
        return problem(entry, status)
    return render(request, "web/problem.html", {"entry": entry}, status=status)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    return _problem(request, "session_expired", 403)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _problem(request, "bad_request", 400)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _problem(request, "session_expired", 403)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _problem(request, "not_found", 404)


def server_error(request: HttpRequest) -> HttpResponse:
    return _problem(request, "verification_incomplete", 500)
