"""The lean path for the two endpoints an app calls itself: ``/token`` and ``/userinfo``.

``LeanTokenMiddleware`` comes right after the sign-in lean path in ``MIDDLEWARE``. An app's
server calls these two with its client credentials or a bearer token, never with the
person's cookies: both views are CSRF-exempt and read no session and no ``request.user``.
For such a request (no session cookie, a host Django accepts, the view's own methods), the
view runs without the rest of the middleware: no session, no user, no CSRF middleware, no
URL resolving. A request with a session cookie, another method, a host Django refuses or
an HTTP request that SecurityMiddleware would send to HTTPS goes down the full stack, which
answers as it always did.

What it keeps, and where from:
- a form body is read and parsed first, as ``RequestBodyMiddleware`` does
  (``threshold.web.bodies``); one it would refuse (over ``DATA_UPLOAD_MAX_MEMORY_SIZE``, or
  one that does not parse) gets, at ``/token``, the OAuth error an app can read (RFC 6749
  §5.2 ``invalid_request``, audited), with or without cookies, and at ``/userinfo`` goes down
  the full stack, which refuses it;
- the headers every response gets: Vary: Cookie, SecurityMiddleware's own, the
  Content-Security-Policy django-csp would build (built once: these JSON answers set no
  per-response policy and use no nonce), X-Frame-Options and Content-Length. None of the
  skipped middleware adds anything else to these answers (``tests/integration/
  test_sso_speed.py`` compares them).
"""

from __future__ import annotations

from collections.abc import Callable

from csp.constants import HEADER, HEADER_REPORT_ONLY
from csp.utils import build_policy
from django.conf import settings
from django.core.exceptions import DisallowedHost, SuspiciousOperation
from django.http import HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import reverse
from django.utils.cache import patch_vary_headers

from threshold.sso import views
from threshold.web.bodies import _FORMS

Handler = Callable[[HttpRequest], HttpResponse]


class LeanTokenMiddleware:
    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response
        self.security = SecurityMiddleware(get_response)
        self.xframe = XFrameOptionsMiddleware(get_response)
        self._routes: dict[str, tuple[frozenset[str], Handler]] | None = None
        self._csp: list[tuple[str, str]] | None = None

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.answer(request)
        return self.get_response(request) if response is None else response

    def paths(self) -> dict[str, tuple[frozenset[str], Handler]]:
        """The routes, by their names in threshold/sso/urls.py, with the methods the views take."""
        if self._routes is None:
            self._routes = {
                reverse("sso:token"): (frozenset({"POST"}), views.token),
                reverse("sso:userinfo"): (frozenset({"GET", "POST"}), views.userinfo),
            }
            for _methods, view in self._routes.values():
                # The full stack's CSRF check never applies to them; the lean path relies on it.
                assert getattr(view, "csrf_exempt", False), view  # noqa: S101
        return self._routes

    def answer(self, request: HttpRequest) -> HttpResponse | None:
        """The lean path's answer, or None for a request the full stack must answer."""
        route = self.paths().get(request.path_info)
        if route is None or request.method not in route[0]:
            return None
        try:
            request.get_host()
        except DisallowedHost:
            return None
        if self.security.process_request(request) is not None:
            return None  # a redirect to HTTPS
        form_refused = (
            request.method == "POST" and request.content_type in _FORMS and not _form_read(request)
        )
        if form_refused and route[1] is views.token:
            response = views.token_body_refused(request)
        elif form_refused or settings.SESSION_COOKIE_NAME in request.COOKIES:
            return None  # the full stack's answer (RequestBodyMiddleware's page for a body)
        else:
            response = route[1](request)
        # What the rest of the stack adds to these answers.
        patch_vary_headers(response, ("Cookie",))
        self.xframe.process_response(request, response)
        self.security.process_response(request, response)
        for header, value in self._content_security_policy():
            response.headers.setdefault(header, value)
        if not response.has_header("Content-Length"):
            response.headers["Content-Length"] = str(len(response.content))
        return response

    def _content_security_policy(self) -> list[tuple[str, str]]:
        if self._csp is None:
            headers = [
                (HEADER, build_policy()),
                (HEADER_REPORT_ONLY, build_policy(report_only=True)),
            ]
            self._csp = [(header, value) for header, value in headers if value]
        return self._csp


def _form_read(request: HttpRequest) -> bool:
    """Read and parse a form body, as RequestBodyMiddleware does; False if it would refuse it."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is not None and length > limit:
        return False
    try:
        request.body  # noqa: B018 - kept by Django: the full stack can read it again
        request.POST  # noqa: B018
    except (MultiPartParserError, SuspiciousOperation):
        return False
    return True
