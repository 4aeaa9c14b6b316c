"""Pages: sign-in, home, sign-out (this session or the others), the error pages and their help."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from threshold.accounts.models import User
from threshold.audit.actions import Action, record
from threshold.core import catalog
from threshold.passkeys.access import list_passkeys, not_allowed_passkey_ids
from threshold.policy.access import policy_for
from threshold.web.flow import SIGN_IN, issue_flow_token
from threshold.web.http import audit_origin, problem
from threshold.web.middleware import forget_signed_in
from threshold.web.sessions import (
    SIGN_IN_METHOD,
    SIGNED_IN_COOKIE,
    describe_sign_in_method,
    do_sign_out_other_sessions,
)

# The catalog entries the browser script may show, by key (not the browsers' own messages).
CLIENT_CATALOG = {
    key: entry.as_json() for key, entry in catalog.CATALOG.items() if not entry.is_browser_message
}
# The fallback sign-in's first step (threshold.fallback).
PASSWORD_SIGN_IN_URL = "/sign-in/password"  # noqa: S105 - a URL, not a password


@require_GET
@never_cache  # the page is dated (threshold.web.flow): never serve an old copy
def sign_in(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("home")
    # Offered only when the policy allows it: the page and webauthn.js show the
    # "Sign in with a password instead" links when this is not empty.
    password_url = ""
    if policy_for(request).allow_password_fallback:
        next_path = request.GET.get("next", "")
        query = f"?{urlencode({'next': next_path})}" if next_path else ""
        password_url = PASSWORD_SIGN_IN_URL + query
    # This browser was signed in and its session ended (web/sessions.py): say so, once.
    session_ended = bool(request.COOKIES.get(SIGNED_IN_COOKIE))
    context = {
        "catalog": CLIENT_CATALOG,
        "flow": issue_flow_token(SIGN_IN),
        "password_url": password_url,
        "session_ended": session_ended,
    }
    response = render(request, "web/sign_in.html", context)
    if session_ended:
        forget_signed_in(response)
    return response


@require_GET
def help_errors(request: HttpRequest) -> HttpResponse:
    """For support staff: every message, its cause and solution, like the help articles' tables."""
    return render(
        request,
        "web/help_errors.html",
        {"groups": catalog.entries_by_group()},
    )


@require_GET
@never_cache
@login_required
def home(request: HttpRequest) -> HttpResponse:
    assert isinstance(request.user, User)  # noqa: S101 - login_required
    passkeys = list(list_passkeys(request.user))
    return render(
        request,
        "web/home.html",
        {
            "passkeys": passkeys,
            "not_allowed": not_allowed_passkey_ids(passkeys, policy_for(request)),
            "just_enrolled": request.GET.get("enrolled") == "1",
            # In the words of Settings' sessions list.
            "signed_in_with": describe_sign_in_method(request.session.get(SIGN_IN_METHOD, "")),
        },
    )


@require_http_methods(["GET", "POST"])
def sign_out(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return render(request, "web/sign_out.html")
    if request.user.is_authenticated:
        user = request.user
        record(Action.SIGN_OUT, audit_origin(request), actor=user, subject=user)
    logout(request)
    response = render(request, "web/signed_out.html")
    forget_signed_in(response)
    return response


@require_POST
@login_required
def sign_out_other_sessions(request: HttpRequest) -> HttpResponse:
    """The person's other browsers are signed out; this one stays signed in."""
    assert isinstance(request.user, User)  # noqa: S101 - login_required
    do_sign_out_other_sessions(request.user, request.session.session_key, audit_origin(request))
    return HttpResponseRedirect("/settings?done=sessions-ended", status=303)


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
