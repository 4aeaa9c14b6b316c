"""Let a form on the way to an app end at the app: CSP ``form-action`` for that one origin.

Browsers apply a page's ``form-action`` to every redirect that follows its form's submission
(Chrome reports the form's own URL). Threshold's CSP says ``form-action 'self'``, so a form
whose answer redirects to an app — consent ("Allow", "Don't allow"), the logout confirmation,
and the fallback's password, code and "Set up a passkey" steps when they continue to
``/authorize`` — would leave the person on Threshold. This middleware adds to such a page's
CSP the one origin its form may end at: the redirect URI (or post-logout redirect URI) the
page is continuing to, and only when that URI is registered for the app it names. Every other
page keeps ``'self'`` alone, and pages that lead to no app cost nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from threshold.sso.models import Application
from threshold.sso.responses import origin_of
from threshold.sso.validator import storable


class FormActionMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.authorize = reverse("sso:authorize")
        self.end_session = reverse("sso:end-session")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code == HTTPStatus.OK
            and response.get("Content-Type", "").startswith("text/html")
            # A page that set its own (the form_post response, sso/responses.py) knows its app.
            and not hasattr(response, "_csp_update")
        ):
            origin = self.app_origin(request)
            if origin:
                # django-csp's documented per-response update of the policy.
                response._csp_update = {"form-action": [origin]}  # type: ignore[attr-defined]  # noqa: SLF001
        return response

    def app_origin(self, request: HttpRequest) -> str | None:
        """The origin of the app the page's form may end at, if it continues to one."""
        if request.path == self.end_session:
            return _post_logout_origin(request.GET.get("post_logout_redirect_uri", ""))
        if request.path == self.authorize:
            return _redirect_origin(
                request.GET.get("client_id", ""), request.GET.get("redirect_uri", "")
            )
        target = request.GET.get("next", "") or request.POST.get("next", "")
        if target.startswith(self.authorize + "?"):
            query = parse_qs(urlsplit(target).query)
            client_id = (query.get("client_id") or [""])[0]
            redirect_uri = (query.get("redirect_uri") or [""])[0]
            return _redirect_origin(client_id, redirect_uri)
        return None


def _redirect_origin(client_id: str, redirect_uri: str) -> str | None:
    if not client_id or not redirect_uri or not storable(client_id):
        return None
    application = Application.objects.filter(client_id=client_id).first()
    if application is None or not application.redirect_uri_allowed(redirect_uri):
        return None
    return origin_of(redirect_uri)


def _post_logout_origin(uri: str) -> str | None:
    if not uri or not storable(uri):
        return None
    for application in Application.objects.filter(post_logout_redirect_uris__contains=uri):
        if application.post_logout_redirect_uri_allowed(uri):
            return origin_of(uri)
    return None
