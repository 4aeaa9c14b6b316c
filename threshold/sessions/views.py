"""Pages: sign-in, sign-out (this session or the others)."""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from threshold.accounts.models import User
from threshold.policy.access import policy_for
from threshold.sessions.actions import do_sign_out_other_sessions, sign_out
from threshold.sessions.flow import Flow, issue_flow_token
from threshold.sessions.middleware import (
    SIGNED_IN_COOKIE,
    TYPED_USERNAME_COOKIE,
    forget_signed_in,
    remember_typed_username,
)
from threshold.web.http import (
    SIGN_IN_CATALOG,
    Done,
    audit_origin,
    needs_sign_in,
    on_settings,
    see_other,
    url_to,
)


@require_http_methods(["GET", "POST"])
@never_cache  # the page is dated (threshold.sessions.flow): never serve an old copy
def sign_in_page(request: HttpRequest) -> HttpResponse:
    """The sign-in page. Its username form is POSTed here only by a browser that runs no
    script (webauthn.js answers it otherwise): no passkey there, and the username stays out
    of the URL, so the page comes back saying so, with the other ways offered."""
    if request.user.is_authenticated:
        return redirect("selfservice:home")
    # Offered only when the policy allows it: the page and webauthn.js show the
    # "Sign in with a password instead" links when this is not empty.
    password_url = ""
    if policy_for(request).allow_password_fallback:
        next_path = request.GET.get("next", "")
        query = f"?{urlencode({'next': next_path})}" if next_path else ""
        password_url = reverse("fallback:password") + query
    # "Send a push to Threshold Verify", where the policy allows it (threshold.devices).
    push_url = ""
    if policy_for(request).allow_device_app_sign_in:
        next_path = request.GET.get("next", "")
        query = f"?{urlencode({'next': next_path})}" if next_path else ""
        push_url = reverse("devices:push") + query
    # This browser was signed in and its session ended (sessions/store.py): say so, once.
    session_ended = bool(request.COOKIES.get(SIGNED_IN_COOKIE))
    context = {
        "catalog": SIGN_IN_CATALOG,
        "flow": issue_flow_token(Flow.SIGN_IN),
        "password_url": password_url,
        "push_url": push_url,
        "session_ended": session_ended,
        "no_script": request.method == "POST",
        # "Sign in with a password instead" takes the username typed here along (webauthn.js).
        "username_cookie": TYPED_USERNAME_COOKIE if password_url else "",
    }
    status = 400 if request.method == "POST" else 200
    response = render(request, "sessions/sign_in.html", context, status=status)
    if session_ended:
        forget_signed_in(response)
    typed = request.POST.get("username", "").strip() if request.method == "POST" else ""
    if password_url and typed:
        # Without JavaScript, the page's "Sign in with a password instead" takes it along.
        remember_typed_username(response, typed)
    return response


@require_http_methods(["GET", "POST"])
def sign_out_page(request: HttpRequest) -> HttpResponse:
    """GET asks first ("Sign out"); POST signs out and answers 303 See Other to this address
    (RFC 9110 §15.4.4), whose GET then says the browser is signed out: reloading it, or going
    back to it, sends no form again."""
    if request.method == "GET":
        if not request.user.is_authenticated:
            # Nothing to sign out of (signed out already, or come back to from the history):
            # say so, with the way back in; the CSRF cookie as the sign-in page would set it.
            get_token(request)
            return render(request, "sessions/signed_out.html")
        return render(request, "sessions/sign_out.html")
    sign_out(request)
    response = see_other(reverse("sessions:sign-out"))
    forget_signed_in(response)
    return response


@require_POST
@needs_sign_in(back=on_settings)
def sign_out_other_sessions(request: HttpRequest) -> HttpResponse:
    """The person's other browsers are signed out; this one stays signed in."""
    assert isinstance(request.user, User)  # noqa: S101 - needs_sign_in
    do_sign_out_other_sessions(request.user, request.session.session_key, audit_origin(request))
    return see_other(url_to("selfservice:settings", query={"done": Done.SESSIONS_ENDED}))
