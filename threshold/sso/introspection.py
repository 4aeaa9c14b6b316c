"""Token introspection (RFC 7662): a company's API asks whether an app's access token is active.

Access tokens are opaque random strings; an API (a "resource server") that receives one from
an app asks ``POST /introspect`` about it. This is django-oauth-toolkit's
``IntrospectTokenView``, with Threshold's rules where they differ from DOT's:

- the caller is a confidential app, authenticated with its client credentials
  (client_secret_basic or client_secret_post, checked by the validator: SHA-256, constant
  time) and by nothing else. DOT would also let a bearer token with an ``introspection``
  scope call it (Threshold has no such scope, and a token leaked to an API must not let it
  probe others), and a public app has no secret to prove itself with. Any such app may ask
  about any access token: an API is often registered as an app of its own (as in Keycloak),
  and tells nothing to whoever presents it the token but what the answer says;
- the answer (§2.2) says whose token it is as the app's ID tokens do (``sub``, ``iss``,
  ``aud``), never the person's username or email: the username here is the work address,
  and the caller may be another app than the one the person granted ``email`` to; an API
  that needs more asks ``/userinfo`` with the token, which honours its scopes;
- a token is active only while it would be honoured: not expired, its person neither
  locked nor deactivated (as every sign-in and refresh checks) and still assigned its app
  (as a refresh checks). Anything else, a refresh token, and an empty or missing ``token``
  are ``{"active": false}`` (§2.2: nothing about why);
- the request is a form (§2.1) in UTF-8, sent with POST: a token must not travel in a URL.
  A body that is not one (another type, not UTF-8, a NUL, a repeated parameter, too big)
  is the OAuth error ``invalid_request`` (RFC 6749 §5.2), audited as a refusal like a
  caller that is not an app (``invalid_client``, 401). A successful introspection is not
  audited: a busy API asks about every request it serves.
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import parse_qsl

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.compat import login_not_required
from oauth2_provider.models import get_access_token_model
from oauth2_provider.views import IntrospectTokenView
from oauthlib.common import Request as OAuthRequest

from threshold.audit.actions import Action
from threshold.audit.capped import record_capped
from threshold.core.errors import MalformedRequest
from threshold.sso.models import Application
from threshold.sso.sessions import subject_of
from threshold.sso.validator import may_use, per_request
from threshold.sso.views import oauth_error, oauth_failure, oauth_json, oauth_wrong_method
from threshold.web.bodies import refuses_bodies_with
from threshold.web.http import answers_failures_with, audit_origin, content_length
from threshold.web.methods import answers_wrong_methods_with

_FORM = "application/x-www-form-urlencoded"
_UTF_8 = frozenset({"utf-8", "utf8"})
_INACTIVE = {"active": False}


def _refused(
    request: HttpRequest, error: str, description: str, status: int, **detail: Any
) -> JsonResponse:
    """The OAuth error (RFC 6749 §5.2), audited: who called, and why they were refused."""
    # No person, and no app that proved itself: audited up to a rate (audit/capped.py).
    record_capped(Action.SSO_INTROSPECTION_REFUSED, audit_origin(request), reason=error, **detail)
    response = oauth_error(error, description, status)
    if status == 401:  # noqa: PLR2004
        # RFC 6749 §5.2: invalid_client answered with 401 names the scheme the client may use.
        response["WWW-Authenticate"] = 'Basic realm="Threshold"'
    return response


def body_refused(request: HttpRequest) -> HttpResponse:
    """The answer to a form body ``RequestBodyMiddleware`` will not parse (over
    DATA_UPLOAD_MAX_MEMORY_SIZE, too many fields): the OAuth error an API reads, not a page."""
    return _refused(request, "invalid_request", "The request body cannot be read.", 400)


def _form_problem(request: HttpRequest) -> str | None:  # noqa: PLR0911 - one answer per rule
    """Why the body is not the form RFC 7662 §2.1 asks for, or None."""
    if request.GET:
        return "Send the parameters in the body, not in the URL."
    try:
        length = content_length(request)
    except MalformedRequest as error:
        return f"Bad request: {error.detail}."
    if length == 0:
        return None  # no parameters, whatever the type: no token to ask about
    if request.content_type != _FORM:
        return f"The body must be {_FORM}."
    if (request.content_params or {}).get("charset", "utf-8").lower() not in _UTF_8:
        return "The body must be UTF-8."
    try:
        # Django's own parsing replaces what is not UTF-8; here it is refused.
        pairs = parse_qsl(request.body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        return "The body must be UTF-8."
    names = [name for name, _value in pairs]
    if any("\x00" in name or "\x00" in value for name, value in pairs):
        return "The body must not contain NUL."
    if len(set(names)) != len(names):
        # RFC 6749 §3.2: no parameter may be sent more than once.
        return "A parameter is repeated."
    return None


def _credentials(request: HttpRequest) -> str:
    """How the caller tried to authenticate, for the audit log."""
    scheme = str(request.META.get("HTTP_AUTHORIZATION", "")).split(" ", 1)[0].lower()
    if scheme in {"basic", "bearer"}:
        return scheme
    return "post" if "client_secret" in request.POST else "none"


@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(login_not_required, name="dispatch")
class IntrospectView(IntrospectTokenView):  # DOT ships no types
    """``POST /introspect``: DOT's view, for confidential apps only (module docstring)."""

    http_method_names = ["post"]  # noqa: RUF012 - Django's own attribute

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # Not DOT's ClientProtectedResourceMixin.dispatch: it lets a bearer token stand in for
        # the client's credentials.
        if request.method != "POST":
            # Django's bare 405, answered as the other OAuth endpoints' (oauth_wrong_method).
            not_allowed: HttpResponse = self.http_method_not_allowed(request, *args, **kwargs)
            return not_allowed
        problem = _form_problem(request)
        if problem is not None:
            return _refused(request, "invalid_request", problem, 400)
        with per_request():
            client, named = self._authenticated_app(request)
            if client is None:
                return _refused(
                    request,
                    "invalid_client",
                    "Authenticate as a confidential app with its client_id and client_secret.",
                    401,
                    # The app the credentials named, when it exists ("" for an unknown one).
                    app=getattr(named, "client_id", ""),
                    credentials=_credentials(request),
                )
            response: HttpResponse = self.post(request, *args, **kwargs)
        return response

    def _authenticated_app(
        self, request: HttpRequest
    ) -> tuple[Application | None, Application | None]:
        """The confidential app whose client credentials the request carries (or None), and
        the app they named, authenticated or not (or None).

        The validator's ``authenticate_client``, as DOT's ``OAuthLibCore.authenticate_client``
        calls it, keeping oauthlib's request to learn which app it was."""
        core = self.get_oauthlib_core()
        uri, http_method, body, headers = core._extract_params(request)  # noqa: SLF001
        oauth_request = OAuthRequest(uri, http_method, body, headers)
        authenticated = core.server.request_validator.authenticate_client(oauth_request)
        client = oauth_request.client if isinstance(oauth_request.client, Application) else None
        # A public app has no secret (the validator refuses an empty one): checked here too.
        if not authenticated or client is None or client.client_type != client.CLIENT_CONFIDENTIAL:
            return None, client
        return client, client

    def get_token_response(self, token_value: str | None = None) -> JsonResponse:
        """RFC 7662 §2.2's answer about an access token; DOT's, with Threshold's rules."""
        if not token_value:
            return oauth_json(_INACTIVE)
        checksum = hashlib.sha256(token_value.encode("utf-8")).hexdigest()
        token = (
            get_access_token_model()
            .objects.select_related("user", "application")
            .filter(token_checksum=checksum)
            .first()
        )
        if token is None or not token.is_valid():
            return oauth_json(_INACTIVE)
        user, application = token.user, token.application
        if user is None or application is None:
            return oauth_json(_INACTIVE)
        if not user.can_sign_in or not may_use(application, user):
            return oauth_json(_INACTIVE)
        return oauth_json(
            {
                "active": True,
                "scope": token.scope,
                "client_id": application.client_id,
                "token_type": "Bearer",
                "exp": int(token.expires.timestamp()),
                "iat": int(token.created.timestamp()),
                "iss": settings.THRESHOLD.public_url,
                # As in the person's ID tokens for this app.
                "sub": subject_of(user),
                "aud": application.client_id,
            }
        )


introspect = answers_failures_with(oauth_failure)(
    answers_wrong_methods_with(oauth_wrong_method)(
        refuses_bodies_with(body_refused)(IntrospectView.as_view())
    )
)
