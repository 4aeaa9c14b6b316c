"""The one check in front of every admin portal view: role, then step-up for a change.

``portal_view(area)`` sends a signed-out visitor to sign in and back (``?next=``, as every
page that needs a signed-in person does), answers 404 to a signed-in person whose role may
not read ``area`` (no role at all included: the portal does not reveal itself to people
without one), and for a POST 403 to a role that may read but not change it, then sends
someone who has not verified with a passkey within the policy's step-up window to "Verify
it's you" and back (a password sign-in never counts). CSRF is Django's middleware's, on
every POST.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache

from threshold.accounts.models import Role, User
from threshold.portal.roles import Area, can_change, can_read, role_of
from threshold.sessions.stepup import recently_verified, verify_first
from threshold.web.http import see_other

View = Callable[..., HttpResponseBase]


class Refused(Exception):
    """A change this role may make, but not to this person (a view raises it): answered 403
    with the reason, nothing changed."""


def portal_view(area: Area, *, back: Callable[..., str] | None = None) -> Callable[[View], View]:
    """Guard a view of ``area``. ``back(**kwargs)``: the page to return to after "Verify it's
    you" when a POST came without a fresh step-up (the view's own path by default, which
    must then answer GET)."""

    def decorate(view: View) -> View:
        @wraps(view)
        @never_cache
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not request.user.is_authenticated:
                # Back to this page once signed in (a form's page, for a POST); the sign-in
                # keeps ``next`` only when it is on this site (``web.http.safe_next``).
                if request.method in ("GET", "HEAD"):
                    return redirect_to_login(request.get_full_path())
                # 303, as ``web.http.needs_sign_in``: the browser GETs it, sending no form.
                page = back(**kwargs) if back else _this_page(request)
                return see_other(redirect_to_login(page)["Location"])
            role = role_of(request)
            if not can_read(role, area):
                raise Http404("no admin portal for this person")
            if request.method not in ("GET", "HEAD"):
                if not can_change(role, area):
                    return render(
                        request,
                        "portal/forbidden.html",
                        {"role": role, "portal_role": role},
                        status=403,
                    )
                if not recently_verified(request):
                    return verify_first(back(**kwargs) if back else _this_page(request))
            try:
                return view(request, *args, **kwargs)
            except Refused as refusal:
                return render(
                    request,
                    "portal/forbidden.html",
                    {"portal_role": role, "why": str(refusal)},
                    status=403,
                )

        return guarded

    return decorate


def _this_page(request: HttpRequest) -> str:
    """The page a form posted to itself was on: its path, with the query it was shown with
    (a search) when the browser's same-origin Referer says so."""
    referer = urlsplit(request.META.get("HTTP_REFERER", ""))
    if referer.path == request.path and referer.query:
        return f"{request.path}?{referer.query}"
    return request.path


def actor(request: HttpRequest) -> User:
    """The signed-in member of staff (portal_view let them in)."""
    assert isinstance(request.user, User)  # noqa: S101 - portal_view
    return request.user


def portal_home() -> str:
    return reverse("portal:home")


__all__ = ["Area", "Role", "actor", "portal_view"]
