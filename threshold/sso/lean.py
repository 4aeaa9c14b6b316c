"""The lean path for the two endpoints an app calls itself, ``/token`` and ``/userinfo``, and
for the common ``/authorize``: a signed-in browser sent on by an app, with nothing to ask.

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
  (``threshold.web.bodies``); one it would refuse (over ``DATA_UPLOAD_MAX_MEMORY_SIZE``, too
  many fields, one that does not parse, a charset other than UTF-8) gets the view's own OAuth
  error, the one ``RequestBodyMiddleware`` gives it down the full stack
  (``refuses_bodies_with``: RFC 6749 §5.2's, RFC 6750 §3.1's at ``/userinfo``,
  ``invalid_request``, audited), with or without cookies;
- the headers every response gets: Vary: Cookie, SecurityMiddleware's own, the
  Content-Security-Policy django-csp would build (built once: these JSON answers set no
  per-response policy and use no nonce), X-Frame-Options and Content-Length. None of the
  skipped middleware adds anything else to these answers (``tests/integration/
  test_sso_speed.py`` compares them);
- the database connection's health check, sent as the first statement of every request
  on PostgreSQL, is not: the views run as the sign-in's do
  (``threshold.passkeys.hotpath.without_health_check``), and so does ``/authorize``'s read
  of the session (its first statement; the connection is then known to be alive).

``/authorize`` (``LeanTokenMiddleware.authorize``) takes the lean path only for a GET that
asks the person nothing (no sign-in, no consent) and writes nothing to the session (a person
outside a group-assigned app's groups gets the full stack's "You don't have access" page, a
test compares them): the request's parameters are the plain code
flow's, with or without ``response_mode`` (the view answers ``query``, ``fragment`` and
``form_post`` alike; a form_post page brings its own CSP form-action), and no ``prompt``,
``max_age``, ``acr_values``, ``id_token_hint`` or repeated
parameter; the app is one this process keeps (``appcache``), without consent (assigned to
everyone or to groups: the view asks whether the person is in one, one SELECT), and the
redirect URI is registered for it; the session is signed in (session and
person in one SELECT, ``hotpath.signed_in_session``), verified as Django's ``get_user``
verifies it (the backend, the person active, the session hash in constant time), already
has its ``sid``, and ``SessionTimeoutMiddleware`` would neither end it (the person locked,
the idle or absolute timeout) nor refresh its idle clock (done at most once a minute, by the
full stack). Anything else goes down the full stack untouched. The view itself
(``views.authorize``) then decides and answers, as in the full stack (with one SELECT of its
own for a passkey's session: whether the policy in force still lets that passkey sign in,
``sso.sessions.sign_in_stands``), and the answer gets
what the skipped middleware would add: the session's (Vary, a saved session's cookie), the
CSRF cookie if a page used the token, ``remember_signed_in``'s cookie, CSP (django-csp's
own middleware when the answer used a nonce or its own policy), X-Frame-Options,
SecurityMiddleware's headers and Content-Length.
"""

from __future__ import annotations

from collections.abc import Callable

from csp.constants import HEADER, HEADER_REPORT_ONLY
from csp.middleware import CSPMiddleware
from csp.utils import build_policy
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpRequest, HttpResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.crypto import constant_time_compare

from threshold import clock
from threshold.accounts.models import User
from threshold.passkeys.hotpath import without_health_check
from threshold.passkeys.lean import host_and_scheme_accepted
from threshold.sessions import middleware as session_timeout
from threshold.sessions.store import LAST_SEEN, SID, SIGNED_IN_AT, SessionStore, is_session_key
from threshold.sso import appcache, hotpath, views
from threshold.sso.models import OFFLINE_ACCESS
from threshold.web.bodies import _FORMS, body_refusal_of, form_refusal

# The parameters of the plain code flow; any other (prompt, max_age, acr_values,
# id_token_hint, a return from signing in again, ...) goes down the full stack.
_PLAIN_AUTHORIZATION = frozenset(
    {
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
        # query, fragment or form_post (sso/responses.py): the view answers each, and a
        # form_post page sets its own CSP form-action, which the lean path passes to django-csp.
        "response_mode",
    }
)
# What a view may set for django-csp's per-response policy: then django-csp builds it.
_CSP_OF_RESPONSE = ("_csp_config", "_csp_update", "_csp_replace", "_csp_exempt", "_csp_exempt_ro")

Handler = Callable[[HttpRequest], HttpResponse]


class LeanTokenMiddleware:
    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response
        self.security = SecurityMiddleware(get_response)
        self.xframe = XFrameOptionsMiddleware(get_response)
        self.sessions = SessionMiddleware(get_response)
        self.csrf = CsrfViewMiddleware(get_response)
        self.csp = CSPMiddleware(get_response)
        self._routes: dict[str, tuple[frozenset[str], Handler, Handler]] | None = None
        self._authorize_path: str | None = None
        self._csp: list[tuple[str, str]] | None = None

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.answer(request)
        return self.get_response(request) if response is None else response

    def paths(self) -> dict[str, tuple[frozenset[str], Handler, Handler]]:
        """The routes, by their names in threshold/sso/urls.py, with the methods the views take
        and each view's answer to a form body it cannot read (``refuses_bodies_with``: the
        answer ``RequestBodyMiddleware`` gives down the full stack)."""
        if self._routes is None:
            self._routes = {}
            for name, methods, view in (
                ("sso:token", {"POST"}, views.token),
                ("sso:userinfo", {"GET", "POST"}, views.userinfo),
            ):
                refused = body_refusal_of(view)
                # The full stack's CSRF check never applies to them; the lean path relies on it.
                assert getattr(view, "csrf_exempt", False), view  # noqa: S101
                assert refused is not None, view  # noqa: S101
                self._routes[reverse(name)] = (frozenset(methods), view, refused)
        return self._routes

    def answer(self, request: HttpRequest) -> HttpResponse | None:
        """The lean path's answer, or None for a request the full stack must answer."""
        if self._authorize_path is None:
            self._authorize_path = reverse("sso:authorize")
        if request.path_info == self._authorize_path:
            return self.authorize(request)
        route = self.paths().get(request.path_info)
        if route is None or request.method not in route[0]:
            return None
        if not host_and_scheme_accepted(request, self.security):
            return None
        form_refused = (
            request.method == "POST" and request.content_type in _FORMS and not _form_read(request)
        )
        if form_refused:
            # The view's own OAuth error, as RequestBodyMiddleware gives it down the full stack.
            response = route[2](request)
        elif settings.SESSION_COOKIE_NAME in request.COOKIES:
            return None  # the full stack's answer
        else:
            # Like the sign-in's: no health-check SELECT 1 first on PostgreSQL; a connection
            # found dead is replaced and the view run once more. /userinfo only reads; a
            # /token whose COMMIT was lost with the connection used its code up, so its
            # second run is refused as a replay (and revokes what the first wrote): no code
            # gives tokens twice.
            view = route[1]
            response = without_health_check(lambda: view(request))
        # What the rest of the stack adds to these answers.
        patch_vary_headers(response, ("Cookie",))
        self.xframe.process_response(request, response)
        self.security.process_response(request, response)
        for header, value in self._content_security_policy():
            response.headers.setdefault(header, value)
        if not response.has_header("Content-Length"):
            response.headers["Content-Length"] = str(len(response.content))
        return response

    def authorize(self, request: HttpRequest) -> HttpResponse | None:
        """A signed-in browser's plain GET /authorize (module docstring), or None."""
        if request.method != "GET" or not _plain_authorization(request):
            return None
        session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
        if not is_session_key(session_key) or SessionStore.__module__ != settings.SESSION_ENGINE:
            return None
        if not host_and_scheme_accepted(request, self.security):
            return None
        # Like /token's: no health-check SELECT 1 first on PostgreSQL. The session's SELECT
        # is the request's first statement; on a connection found dead it is read again on
        # a new one, and the statements after it need no check (Django checks once per
        # request, before the first).
        signed_in = without_health_check(lambda: _signed_in(session_key))
        if signed_in is None:
            return None
        request.session, request.user = signed_in
        self.csrf.process_request(request)
        self.csp.process_request(request)
        response = views.authorize(request)
        # What the rest of the stack adds to this answer, in its order (innermost first).
        self.xframe.process_response(request, response)
        session_timeout.remember_signed_in(request, response)
        self.csrf.process_response(request, response)
        self.sessions.process_response(request, response)
        if getattr(request, "_csp_nonce", None) is None and not any(
            hasattr(response, name) for name in _CSP_OF_RESPONSE
        ):
            for header, value in self._content_security_policy():
                response.headers.setdefault(header, value)
        else:
            self.csp.process_response(request, response)
        self.security.process_response(request, response)
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


def _plain_authorization(request: HttpRequest) -> bool:
    """Only the plain code flow's parameters, each once (module docstring), for an app this
    process keeps that asks no consent, the redirect URI registered."""
    params = request.GET
    if not params.keys() <= _PLAIN_AUTHORIZATION or any(
        len(values) != 1 for _name, values in params.lists()
    ):
        return False
    client_id = params.get("client_id", "")
    application = appcache.get(client_id) if "\x00" not in client_id else None
    return bool(
        application is not None
        and application.is_usable(request)
        and not application.require_consent
        # Staying signed in past the session is asked first (views.authorize).
        and OFFLINE_ACCESS not in params.get("scope", "").split()
        and application.redirect_uri_allowed(params.get("redirect_uri", ""))
    )


def _signed_in(session_key: str) -> tuple[SessionStore, User] | None:
    """The session and its person, as SessionMiddleware, AuthenticationMiddleware and
    SessionTimeoutMiddleware would leave them, if none of them would write anything or
    end the session; otherwise None."""
    found = hotpath.signed_in_session(session_key)
    if found is None:
        return None
    encoded, user = found
    session = SessionStore(session_key)
    data = session.decode(encoded)
    # django.contrib.auth.get_user: the backend, the person, the session hash (no fallback
    # key here: a session signed with one is cycled by the full stack).
    session_hash = data.get(HASH_SESSION_KEY)
    if (
        data.get(BACKEND_SESSION_KEY) not in settings.AUTHENTICATION_BACKENDS
        or data.get(BACKEND_SESSION_KEY) != settings.AUTHENTICATION_BACKENDS[0]
        or str(data.get(SESSION_KEY)) != str(user.pk)
        or not user.is_active
        or not isinstance(session_hash, str)
        or not constant_time_compare(session_hash, user.get_session_auth_hash())
    ):
        return None
    # SessionTimeoutMiddleware: nothing to end, nothing to refresh; and the sid is there.
    now = clock.now()
    signed_in_at, last_seen = data.get(SIGNED_IN_AT), data.get(LAST_SEEN)
    if (
        not user.can_sign_in
        or not isinstance(signed_in_at, int | float)
        or not isinstance(last_seen, int | float)
        or now - signed_in_at > settings.THRESHOLD_SESSION_MAX_AGE
        or now - last_seen > settings.THRESHOLD_SESSION_IDLE_TIMEOUT
        or now - last_seen > session_timeout._LAST_SEEN_RESOLUTION  # noqa: SLF001
        or not isinstance(data.get(SID), str)
    ):
        return None
    session._session_cache = data  # noqa: SLF001 - loaded here
    return session, user


def _form_read(request: HttpRequest) -> bool:
    """Read and parse a form body, as RequestBodyMiddleware does; False if it would refuse it."""
    return form_refusal(request) is None
