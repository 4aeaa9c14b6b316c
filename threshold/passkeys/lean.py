"""The lean path: the two passkey sign-in JSON endpoints, answered without the rest of the stack.

``LeanSignInMiddleware`` comes first in ``MIDDLEWARE``. For an anonymous browser's
``POST /sign-in/options`` and ``POST /sign-in/result`` (no session cookie, a JSON
body, a host Django accepts, a request Django's CSRF check accepts), it runs the
same views and actions as the full stack, minus what an anonymous JSON request
does not need: no session is loaded, no user is looked up, no URL is resolved,
and the rest of the middleware does not run. Everything else — a browser with a
session (signing in again, a step-up), another method or content type, a request
the CSRF check refuses — goes down the full stack, which answers as it always did.

What it keeps, and where from:
- CSRF: Django's own ``CsrfViewMiddleware`` decides (Origin, Referer over HTTPS,
  the token against the cookie) and sets the rotated CSRF cookie after a sign-in;
- the options request: ``views.sign_in_options`` itself (rate limit, flow token,
  decoys), with the policy this process read in the last second, or else read in one
  raw SELECT (``hotpath.recent_policy``; the result reads it afresh);
- the result: ``actions.do_finish_sign_in`` (the same checks in the same order,
  the same audit rows), which writes the signed-in session in its own transaction:
  one transaction of at most four statements (``threshold.passkeys.hotpath``), with
  no health-check query before it (``hotpath.without_health_check``). The
  session is the one ``threshold.sessions.actions.sign_in`` would save
  (``new_signed_in_session``), and its cookies are the ones the session, CSRF,
  session-timeout and ceremony middleware would send;
- the headers every response gets: SecurityMiddleware's own (and its redirect to
  HTTPS, by leaving such a request to the full stack), the Content-Security-Policy
  django-csp would build (built once: these answers set no per-response policy
  and use no nonce), Vary, X-Frame-Options and Content-Length.

``user_logged_in`` is not sent (no receiver is connected: accounts' ``ready()``
disconnects Django's ``update_last_login``); a test fails if one is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from csp.constants import HEADER, HEADER_REPORT_ONLY
from csp.utils import build_policy
from django.conf import settings
from django.core import signals
from django.core.exceptions import DisallowedHost
from django.core.handlers.exception import response_for_exception
from django.core.handlers.wsgi import WSGIRequest, get_script_name
from django.http import HttpRequest, HttpResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.csrf import (
    CSRF_ALLOWED_CHARS,
    CSRF_SECRET_LENGTH,
    CsrfViewMiddleware,
    RejectRequest,
)
from django.middleware.security import SecurityMiddleware
from django.urls import reverse, set_script_prefix
from django.utils.cache import patch_vary_headers

from threshold.core import errors
from threshold.core.randomness import random_string
from threshold.passkeys import hotpath, views
from threshold.passkeys.actions import SignedIn, do_finish_sign_in
from threshold.passkeys.http import anonymous_ceremonies, read_credential, send_ceremony_cookies
from threshold.policy.access import read_policy_with
from threshold.sessions.actions import new_signed_in_session
from threshold.sessions.middleware import session_cookie_max_age, set_signed_in_cookie
from threshold.sessions.models import Session
from threshold.web.bodies import REFUSED_CHARSET, unreadable_charset, without_charset
from threshold.web.http import audit_origin, ok, safe_next

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication

Handler = Callable[[HttpRequest], HttpResponse]


class LeanSignInMiddleware:
    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response
        self.security = SecurityMiddleware(get_response)
        self.csrf = CsrfViewMiddleware(get_response)
        self.xframe = XFrameOptionsMiddleware(get_response)
        self._routes: dict[str, Handler] | None = None
        self._csp: list[tuple[str, str]] | None = None

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.answer(request)
        return self.get_response(request) if response is None else response

    def paths(self) -> dict[str, Handler]:
        """The lean path's routes: the two URLs by their names in threshold/passkeys/urls.py."""
        if self._routes is None:
            self._routes = {
                reverse("passkeys:sign-in-options"): _options,
                reverse("passkeys:sign-in-result"): _result,
            }
        return self._routes

    def answer(self, request: HttpRequest) -> HttpResponse | None:
        """The lean path's answer, or None for a request the full stack must answer."""
        handler = self._handler(request)
        if handler is None:
            return None
        response = handler(request)
        # What the rest of the stack adds to these answers.
        send_ceremony_cookies(request, response)
        self.csrf.process_response(request, response)
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

    def _handler(self, request: HttpRequest) -> Handler | None:
        handler = self.paths().get(request.path_info)
        if (
            handler is None
            or request.method != "POST"
            or settings.SESSION_COOKIE_NAME in request.COOKIES
            or request.content_type != "application/json"
        ):
            return None
        if not host_and_scheme_accepted(request, self.security):
            return None
        return handler if self._csrf_accepts(request) else None

    def _csrf_accepts(self, request: HttpRequest) -> bool:
        """CsrfViewMiddleware's decision for a POST, without its refusal (the full stack
        refuses, logs and answers as it always does)."""
        self.csrf.process_request(request)
        if not getattr(request, "_dont_enforce_csrf_checks", False):
            if "HTTP_ORIGIN" in request.META:
                if not self.csrf._origin_verified(request):  # type: ignore[attr-defined]  # noqa: SLF001
                    return False
            elif request.is_secure():
                try:
                    self.csrf._check_referer(request)  # type: ignore[attr-defined]  # noqa: SLF001
                except RejectRequest:
                    return False
            try:
                self.csrf._check_token(request)  # type: ignore[attr-defined]  # noqa: SLF001
            except RejectRequest:
                return False
        request.csrf_processing_done = True  # type: ignore[attr-defined]
        return True


def host_and_scheme_accepted(request: HttpRequest, security: SecurityMiddleware) -> bool:
    """Whether the full stack would get past the host check and SecurityMiddleware's redirect
    to HTTPS: a lean path answers only such requests (the full stack answers the others)."""
    if REFUSED_CHARSET in request.META:
        return False  # refused down the full stack (RequestBodyMiddleware)
    try:
        request.get_host()
    except DisallowedHost:
        return False
    return security.process_request(request) is None


def _options(request: HttpRequest) -> HttpResponse:
    # The view itself, given what the skipped middleware would have given it: an
    # anonymous browser's ceremonies, and the policy read without the ORM.
    anonymous_ceremonies(request)
    read_policy_with(request, hotpath.recent_policy)
    return views.sign_in_options(request)


def _result(request: HttpRequest) -> HttpResponse:
    found = anonymous_ceremonies(request)
    origin = audit_origin(request)

    def session_for(signed_in: SignedIn) -> Session:
        return new_signed_in_session(
            signed_in.user,
            origin,
            signed_in.assurance,
            user_verified=signed_in.user_verified,
            credential=signed_in.passkey_id,
        )

    def finish() -> SignedIn:
        return do_finish_sign_in(found, read_credential(request), origin, session_for=session_for)

    try:
        signed_in = hotpath.without_health_check(finish)
    except errors.ThresholdError as error:
        response: HttpResponse = views.sign_in_refused(error)
    else:
        assert signed_in.session is not None  # noqa: S101 - session_for gave one
        _rotate_csrf_token(request)  # as login() does
        response = ok({"redirect": safe_next(request)})
        _set_session_cookie(response, signed_in.session.session_key)
        set_signed_in_cookie(response)
    return response


def _rotate_csrf_token(request: HttpRequest) -> None:
    """``django.middleware.csrf.rotate_token``: a new secret, which CsrfViewMiddleware's
    ``process_response`` sets as the cookie; drawn with one call to the CSPRNG."""
    request.META.update(
        {
            "CSRF_COOKIE": random_string(CSRF_SECRET_LENGTH, CSRF_ALLOWED_CHARS),
            "CSRF_COOKIE_NEEDS_UPDATE": True,
        }
    )


def _set_session_cookie(response: HttpResponse, session_key: str) -> None:
    # As SessionMiddleware sets it for a new session.
    response.set_cookie(
        settings.SESSION_COOKIE_NAME,
        session_key,
        max_age=session_cookie_max_age(),
        domain=settings.SESSION_COOKIE_DOMAIN,
        path=settings.SESSION_COOKIE_PATH,
        secure=bool(settings.SESSION_COOKIE_SECURE),
        httponly=bool(settings.SESSION_COOKIE_HTTPONLY),
        samesite=settings.SESSION_COOKIE_SAMESITE,  # type: ignore[arg-type]  # "Lax", a str
    )


class LeanSignInApplication:
    """The WSGI application (``threshold.wsgi``): the lean path's requests are answered before
    Django's handler, everything else by it.

    What the handler would do around ``LeanSignInMiddleware.answer`` is done here, minus
    its middleware chain: the script prefix, the ``request_started`` and
    ``request_finished`` signals (the database connections' checks), an unexpected exception
    answered by Django's own ``response_for_exception`` (the 500 page, logged), and the
    status line and headers written as ``WSGIHandler`` writes them. A request the lean
    path does not take is passed to Django untouched.
    """

    def __init__(self, django: WSGIApplication) -> None:
        self.django = django
        self.lean = LeanSignInMiddleware(_unreachable)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        unreadable = unreadable_charset(environ)
        if unreadable is not None:
            # Django would fail building the request (a 500 outside any handler): built
            # without the charset, and refused by RequestBodyMiddleware.
            return self.django(without_charset(environ, unreadable), start_response)
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") not in (
            self.lean.paths()
        ):
            return self.django(environ, start_response)
        set_script_prefix(get_script_name(environ))
        signals.request_started.send(sender=self.__class__, environ=environ)
        request = WSGIRequest(environ)
        try:
            response = self.lean.answer(request)
        except Exception as exc:  # noqa: BLE001 - what Django's handler does with any exception
            response = response_for_exception(request, exc)
        if response is None:
            return self.django(environ, start_response)
        return send(response, start_response, sender=self.__class__)


def send(response: HttpResponse, start_response: StartResponse, *, sender: type) -> list[bytes]:
    """``response``'s status line, headers and body, as ``WSGIHandler`` writes them, then
    ``request_finished`` (which closes a database connection that is no longer usable)."""
    try:
        start_response(
            f"{response.status_code} {response.reason_phrase}",
            [
                *response.items(),
                *(("Set-Cookie", c.output(header="")) for c in response.cookies.values()),
            ],
        )
        return [response.content]
    finally:
        signals.request_finished.send(sender=sender)


def _unreachable(request: HttpRequest) -> HttpResponse:
    raise AssertionError("LeanSignInApplication calls answer(), never the middleware chain")
