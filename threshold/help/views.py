"""Public help pages: the error catalog for support staff, and the set-up guides."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from threshold.core import catalog
from threshold.core.useragent import describe
from threshold.help.guides import PLATFORMS, Platform, localize
from threshold.policy.access import policy_for


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """/help: every help article, public like them: the set-up guides and the error messages."""
    return render(
        request,
        "help/index.html",
        {
            "platforms": [localize(each) for each in PLATFORMS.values()],
            "groups": [heading for heading, _ in catalog.entries_by_group()],
        },
    )


@require_GET
def errors(request: HttpRequest) -> HttpResponse:
    """For support staff: every message, its cause and solution, like the help articles' tables."""
    return render(request, "help/errors.html", {"groups": catalog.entries_by_group()})


# --- The set-up guides ---------------------------------------------------------------------------


# Pages about something other than a device one signs in on: no "first sign-in" section.
_NOT_A_DEVICE = frozenset({"security-key", "threshold-verify"})


def _guide_page(
    request: HttpRequest, platform: Platform | None, *, detected: bool = False
) -> HttpResponse:
    # How to sign in on a device without a passkey yet, for a visitor not signed in (the
    # sign-in page links here): with the other ways only where the policy offers them.
    first_sign_in = not request.user.is_authenticated and (
        platform is None or platform.key not in _NOT_A_DEVICE
    )
    return render(
        request,
        "help/guide.html",
        {
            "platform": localize(platform) if platform else None,
            "platforms": [localize(each) for each in PLATFORMS.values()],
            "detected": detected,
            "first_sign_in": first_sign_in,
            "policy": policy_for(request) if first_sign_in else None,
        },
    )


@require_GET
@vary_on_headers("User-Agent")
def guide_index(request: HttpRequest) -> HttpResponse:
    """The guide for the visitor's platform, from the User-Agent; all platforms if unknown."""
    detected = PLATFORMS.get(describe(request.headers.get("User-Agent", "")).platform)
    return _guide_page(request, detected, detected=detected is not None)


@require_GET
def guide(request: HttpRequest, platform: str) -> HttpResponse:
    if platform not in PLATFORMS:
        raise Http404("no guide for this platform")
    return _guide_page(request, PLATFORMS[platform])
