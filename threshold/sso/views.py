"""The OpenID Connect endpoints: discovery, JWKS, authorize, token, userinfo, revoke, end-session.

django-oauth-toolkit (through oauthlib) checks the protocol; these views decide what DOT
leaves to the provider: whose session signs the person in, whether they may use the app,
``prompt``, ``max_age``, ``acr_values`` and ``id_token_hint``, and consent. A request that
cannot be answered at the app's redirect URI (an unknown client, a redirect URI the app did
not register) gets a page in the catalog's words; every other error goes back to the app as
an OAuth error with ``state`` and ``iss`` (RFC 9207), in the response mode the app asked for
(``query``, ``fragment`` or ``form_post``: ``responses.py``), as its code does. Each outcome
is audited.
"""

from __future__ import annotations

import base64
import functools
import json
import re
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods, require_POST, require_safe
from oauth2_provider.exceptions import (
    ClientIdMissmatch,
    FatalClientError,
    InvalidIDTokenError,
    InvalidOIDCClientError,
    OAuthToolkitError,
    OIDCError,
)
from oauth2_provider.http import OAuth2ResponseRedirect
from oauth2_provider.models import get_grant_model
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.views import RevokeTokenView, UserInfoView
from oauth2_provider.views.mixins import OAuthLibMixin
from oauth2_provider.views.oidc import RPInitiatedLogoutView
from oauthlib.common import add_params_to_uri
from oauthlib.oauth2.rfc6749 import errors as oauth2_errors

from threshold import clock
from threshold.accounts.actions import lock_users
from threshold.accounts.methods import count_usable_sign_in_methods
from threshold.accounts.models import User
from threshold.audit.actions import Action, as_given, record
from threshold.audit.capped import record_capped, record_refusal
from threshold.core import catalog, errors
from threshold.core.assurance import Acr
from threshold.core.catalog import Surface
from threshold.core.names import has_ascii_control
from threshold.core.policy import Policy, evaluate
from threshold.groups.access import rules_of
from threshold.passkeys.actions import do_begin_step_up, do_finish_sign_in
from threshold.passkeys.hotpath import AuditRow, insert_audit
from threshold.passkeys.http import ceremonies, read_credential
from threshold.passkeys.models import Passkey
from threshold.policy.access import policy_for
from threshold.sessions.actions import sign_in, sign_out, with_the_session
from threshold.sessions.flow import Flow, check_flow, issue_flow_token
from threshold.sessions.middleware import forget_signed_in
from threshold.sessions.store import SID, SIGNED_IN_AT
from threshold.sso import cors, keys
from threshold.sso.access import access_signed_in_app, issuer
from threshold.sso.actions import do_sign_out_of_app, end_app_sessions
from threshold.sso.models import OFFLINE_ACCESS, Algorithm, Application, AppSignIn
from threshold.sso.responses import ResponseMode, is_web_uri, respond, response_mode_of
from threshold.sso.sessions import facts_of, sign_in_stands, subject_of
from threshold.sso.validator import (
    FACTS,
    PKCE_VALUE,
    may_use,
    per_request,
    refusal_recorded,
    revoke_tokens,
    storable,
    validated_application,
    validated_redirect_uri,
)
from threshold.web.bodies import refuses_bodies_with
from threshold.web.http import (
    REQUEST_TARGET_MAX_LENGTH,
    SIGN_IN_CATALOG,
    Done,
    answers_failures_with,
    audit_origin,
    failed,
    json_login_required,
    needs_sign_in,
    ok,
    on_settings,
    read_json_object,
    see_other,
    url_to,
)
from threshold.web.methods import answers_wrong_methods_with

REAUTH = "threshold_reauth"
_REAUTH_SALT = "threshold.sso.reauth"
# How long a "sign in again" for one authorization request may take.
_REAUTH_MAX_AGE = 900


# --- Discovery and keys --------------------------------------------------------------------


def _url(name: str) -> str:
    return settings.THRESHOLD.public_url + reverse(name)


def oauth_wrong_method(request: HttpRequest, allow: str) -> HttpResponse:
    """The answer of an endpoint an app's server calls (discovery, the JWKS, /token,
    /userinfo, /revoke, /introspect) to a method it does not take: 405 with ``Allow``
    (``web.methods.MethodNotAllowedMiddleware`` sets it) and RFC 6749 §5.2's JSON, whatever
    the Accept header: the caller reads errors there, never a page. Not audited, as no 405 is."""
    methods = [method.strip() for method in allow.split(",") if method.strip()]
    use = f"Use {methods[0]}." if len(methods) == 1 else f"Use one of {', '.join(methods)}."
    return oauth_error("invalid_request", use if methods else "Use another method.", 405)


# Only read, nothing to forge: exempt from the CSRF check, so that an unsafe method gets the
# 405 an app reads (oauth_wrong_method) rather than CSRF's 403 page.
@answers_wrong_methods_with(oauth_wrong_method)
@csrf_exempt
@require_safe
def discovery(request: HttpRequest) -> JsonResponse:
    """/.well-known/openid-configuration (OpenID Connect Discovery 1.0 §3)."""
    provider = cast(dict[str, Any], settings.OAUTH2_PROVIDER)
    document = {
        "issuer": issuer(),
        "authorization_endpoint": _url("sso:authorize"),
        # OAuth 2.0 for First-Party Applications: a first-party app's own passkey sign-in.
        "authorization_challenge_endpoint": _url("sso:authorize-challenge"),
        "token_endpoint": _url("sso:token"),
        "userinfo_endpoint": _url("sso:userinfo"),
        "jwks_uri": _url("sso:jwks"),
        "revocation_endpoint": _url("sso:revoke"),
        "end_session_endpoint": _url("sso:end-session"),
        "scopes_supported": list(provider["SCOPES"]),
        "response_types_supported": ["code"],
        "response_modes_supported": [str(mode) for mode in ResponseMode],
        "grant_types_supported": list(oauth2_settings.OAUTH2_GRANT_TYPES_SUPPORTED),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(Algorithm.values),
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic", "client_secret_post", "none",
        ],
        "revocation_endpoint_auth_methods_supported": [
            "client_secret_basic", "client_secret_post", "none",
        ],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": [
            "sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "sid", "amr", "acr",
            "email", "email_verified", "name", "preferred_username", "groups",
        ],
        "acr_values_supported": [str(value) for value in Acr],
        "prompt_values_supported": ["none", "login", "consent"],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "authorization_response_iss_parameter_supported": True,
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "frontchannel_logout_supported": False,
        "introspection_endpoint": _url("sso:introspect"),
        "introspection_endpoint_auth_methods_supported": [
            "client_secret_basic", "client_secret_post",
        ],
    }  # fmt: skip
    response = JsonResponse(document)
    response["Access-Control-Allow-Origin"] = "*"
    patch_cache_control(response, public=True, max_age=300)
    return response


@answers_wrong_methods_with(oauth_wrong_method)
@csrf_exempt
@require_safe
def jwks(request: HttpRequest) -> JsonResponse:
    """The public keys: the active ones and the retired ones whose tokens may still be valid."""
    response = JsonResponse(keys.jwks())
    response["Access-Control-Allow-Origin"] = "*"
    # Short: after `threshold keys rotate`, apps find the new kid within a minute.
    patch_cache_control(response, public=True, max_age=60)
    return response


# --- Authorize -----------------------------------------------------------------------------


class _OAuthLib(OAuthLibMixin):  # DOT ships no types
    """DOT's oauthlib server, kept per process as DOT's own views keep theirs
    (``OAuthLibMixin.get_oauthlib_core``, ``ALWAYS_RELOAD_OAUTHLIB_CORE`` respected): the
    server, its grants and the validator hold no state of a request (the validator's is in
    a context variable, ``validator.per_request``)."""


def oauthlib_core() -> Any:
    return _OAuthLib.get_oauthlib_core()


def _error_redirect(
    request: HttpRequest,
    redirect_uri: str,
    error: str,
    description: str,
    state: str | None,
    *,
    application: Application | None = None,
) -> HttpResponse:
    params = [("error", error), ("error_description", description)]
    if state:
        params.append(("state", state))
    params.append(("iss", settings.THRESHOLD.public_url))
    return _answer(request, redirect_uri, params, application)


def _answer(
    request: HttpRequest,
    redirect_uri: str,
    params: list[tuple[str, str]],
    application: Application | None,
) -> HttpResponse:
    """The authorization response to the app, in the response mode its request asked for;
    in ``query``, the code flow's default, when it asked for one this provider does not know
    (Multiple Response Type Encoding Practices §2.1): the refusal of that goes this way."""
    mode = response_mode_of(request.GET) or ResponseMode.QUERY
    if application is None:
        return respond(request, redirect_uri, params, mode)
    return respond(
        request,
        redirect_uri,
        params,
        mode,
        application.name,
        schemes=application.get_allowed_schemes(),
    )


def _to_app(uri: str) -> HttpResponse:
    """A redirect to an app's registered post-logout URI (http for loopback apps; DOT checks
    the scheme)."""
    response: HttpResponse = OAuth2ResponseRedirect(uri, ["http", "https"])
    return response


def _refuse(
    request: HttpRequest,
    application: Application | None,
    credentials: dict[str, Any],
    error: str,
    description: str,
    *,
    reason: str = "",
) -> HttpResponse:
    """``error`` goes back to the app (RFC 6749 §4.1.2.1); the audit log gets ``reason``, the
    rule that refused, where one OAuth error code covers several."""
    user = request.user if request.user.is_authenticated else None
    record_refusal(
        Action.SSO_REFUSED,
        audit_origin(request),
        user,
        reason=reason or error,
        app=getattr(application, "client_id", ""),
    )
    return _error_redirect(
        request,
        credentials["redirect_uri"],
        error,
        description,
        credentials.get("state"),
        application=application,
    )


def _problem(request: HttpRequest, key: str, status: int, **context: Any) -> HttpResponse:
    return render(
        request,
        context.pop("template", "web/problem.html"),
        {"entry": catalog.CATALOG[key], **context},
        status=status,
    )


def _reauth_marker(request: HttpRequest) -> float | None:
    """When this request sent the person to sign in again, if it did (a signed time)."""
    raw = request.GET.get(REAUTH)
    if not raw:
        return None
    try:
        value = signing.loads(raw, salt=_REAUTH_SALT, max_age=_REAUTH_MAX_AGE)
    except signing.BadSignature:
        return None
    if not isinstance(value, dict) or value.get("client_id") != request.GET.get("client_id"):
        return None
    started = value.get("at")
    return float(started) if isinstance(started, int | float) else None


def _sign_in_first(request: HttpRequest, page: str, acr: str = "") -> HttpResponse:
    """Send the person through a passkey ceremony (``page``), then back to this authorization,
    marked with the time they left: a sign-in after it is the new sign-in the app asked for."""
    marker = signing.dumps(
        {"at": clock.now(), "client_id": request.GET.get("client_id")}, salt=_REAUTH_SALT
    )
    parts = urlsplit(request.get_full_path())
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != REAUTH]
    query.append((REAUTH, marker))
    back = urlunsplit(("", "", parts.path, urlencode(query), ""))
    query_of_page = {"next": back, **({"acr": acr} if acr else {})}
    return HttpResponseRedirect(reverse(page) + "?" + urlencode(query_of_page))


def _passkeys_for(user: User, wanted: list[Acr], policy: Policy) -> QuerySet[Passkey]:
    """The person's passkeys that ``policy`` (with their groups' rules) lets sign in today
    and whose sign-in meets one of the ``wanted`` acr values: a refused one is no way to
    sign in again (its ceremony could only fail)."""
    passkeys = Passkey.objects.filter(user=user)
    if Acr.PHR not in wanted:
        # phrh: device-bound with trusted attestation (core/assurance.py for_passkey).
        passkeys = passkeys.filter(backup_eligible=False, attestation_trusted=True)
    groups = rules_of(user)
    allowed = [
        passkey.pk
        for passkey in passkeys
        if evaluate(policy, passkey.policy_facts, groups).error() is None
    ]
    return Passkey.objects.filter(pk__in=allowed)


def _has_method_for(user: User, wanted: list[Acr], policy: Policy) -> bool:
    return _passkeys_for(user, wanted, policy).exists()


def hint_claims(hint: str) -> dict[str, Any] | None:
    """An id_token_hint's claims if it is one of our ID tokens (its signature verifies, as
    ``keys.verified_claims`` checks it; expired ones too, as OpenID Connect Core §3.1.2.1
    allows), else None: /authorize's check, and /authorize-challenge's (firstparty.py)."""
    return keys.verified_claims(hint)


def _hint_matches(hint: str, user: User) -> bool | None:
    """True/False: the id_token_hint names this person or not; None: it is not our ID token."""
    claims = hint_claims(hint)
    if claims is None:
        return None
    return bool(claims.get("sub") == subject_of(user))


# Authorization request parameters this provider does not support (discovery says so), and the
# error each gets.
_UNSUPPORTED_PARAMETERS = {
    "request": "request_not_supported",
    "request_uri": "request_uri_not_supported",
    "registration": "registration_not_supported",
}


# The consent form's fields (sso/consent.html): a POST that has one answers that form, under
# Django's CSRF check; any other POST is an app's authorization request sent as a form.
_CONSENT_FIELDS = ("allow", "csrfmiddlewaretoken")


# A "%" in a URL's query that two hex digits do not follow (RFC 3986 §2.1): Django reads it as
# itself, oauthlib raises on it (DOT hands it the raw query).
_BROKEN_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def refuses_broken_queries(
    answer: Callable[[HttpRequest], HttpResponse],
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """A request whose URL's query is not percent-encoded (an app that left ``state=50%off``
    as it was) is answered ``answer(request)``, the endpoint's own ``invalid_request``,
    before oauthlib, which would raise on it (a 500)."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def endpoint(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if _BROKEN_PERCENT.search(request.META.get("QUERY_STRING", "")):
                return answer(request)
            return view(request, *args, **kwargs)

        return endpoint

    return decorator


_QUERY_NOT_ENCODED = "The URL's query is not percent-encoded (RFC 3986 §2.1)."


def _authorize_query_refused(request: HttpRequest) -> HttpResponse:
    """/authorize's answer to such a URL: where it came from is not known for sure (its
    redirect_uri and state may be misread), so the catalog's page, not a redirect; audited."""
    person = request.user if request.user.is_authenticated else None
    record_refusal(
        Action.SSO_REFUSED,
        audit_origin(request),
        person,
        reason="invalid_request",
        app=as_given(request.GET.get("client_id", "")),
        query="not_percent_encoded",
    )
    return _problem(request, "app_link_invalid", 400)


def _query_refused(endpoint: str) -> Callable[[HttpRequest], HttpResponse]:
    """/token's and /revoke's answer to such a URL: RFC 6749 §5.2's ``invalid_request``."""

    def answer(request: HttpRequest) -> HttpResponse:
        record_capped(
            Action.SSO_TOKEN_REFUSED,
            audit_origin(request),
            reason="invalid_request",
            endpoint=endpoint,
            query="not_percent_encoded",
        )
        response = oauth_error("invalid_request", _QUERY_NOT_ENCODED, 400)
        cors.allow_as_last_read(request, response)
        return response

    return answer


# The one parameter RFC 8707 lets a token request repeat.
_REPEATABLE = frozenset({"resource"})


def repeated_parameter(
    request: HttpRequest, repeatable: frozenset[str] = frozenset()
) -> str | None:
    """The first form parameter sent more than once that may not be (RFC 6749 §3.1: "MUST NOT
    be included more than once"), or None: what /token, /revoke and /authorize-challenge refuse."""
    return next(
        (
            name
            for name, values in request.POST.lists()
            if len(values) > 1 and name not in repeatable
        ),
        None,
    )


def authenticates_twice(request: HttpRequest) -> bool:
    """Whether the app authenticates with HTTP Basic and with ``client_secret`` in the form
    together (RFC 6749 §2.3: "MUST NOT use more than one authentication method")."""
    return "client_secret" in request.POST and request.META.get(
        "HTTP_AUTHORIZATION", ""
    ).lower().startswith("basic ")


def refuses_repeated_parameters(endpoint: str) -> Callable[..., Callable[..., HttpResponse]]:
    """/token's and /revoke's ``invalid_request`` (RFC 6749 §5.2, RFC 7009 §2.2.1) for a form
    that repeats a parameter (§3.2: "MUST NOT be included more than once"), which DOT would
    read as its last value (a wrong client_secret, then the right one), or that authenticates
    the app twice, with HTTP Basic and with client_secret in the form (§2.3: "MUST NOT use
    more than one authentication method"); audited."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            repeated = repeated_parameter(request, _REPEATABLE)
            if repeated is None and not authenticates_twice(request):
                return view(request, *args, **kwargs)
            record_capped(
                Action.SSO_TOKEN_REFUSED,
                audit_origin(request),
                reason="invalid_request",
                endpoint=endpoint,
                app=as_given(_client_id_named(request)),
                **(
                    {"repeated": as_given(repeated, 40)}
                    if repeated is not None
                    else {"client_authentication": "twice"}
                ),
            )
            description = (
                f"{as_given(repeated, 40)} is repeated."
                if repeated is not None
                else "Authenticate the client once: HTTP Basic or client_secret, not both."
            )
            response = oauth_error("invalid_request", description, 400)
            cors.allow_as_last_read(request, response)
            return response

        return checked

    return decorator


def _userinfo_query_refused(request: HttpRequest) -> HttpResponse:
    response = _userinfo_invalid_request(request, "invalid_request", _QUERY_NOT_ENCODED)
    cors.allow_as_last_read(request, response)
    return response


@csrf_exempt
@never_cache
@require_http_methods(["GET", "POST"])
@refuses_broken_queries(_authorize_query_refused)
def authorize(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        if not any(field in request.POST for field in _CONSENT_FIELDS):
            return _posted_authorization(request)
        return _consent_answered(request)
    with per_request():
        return _authorize(request)


@csrf_protect
def _consent_answered(request: HttpRequest) -> HttpResponse:
    with per_request():
        return _authorize(request)


def _posted_authorization(request: HttpRequest) -> HttpResponse:
    """An authorization request sent with POST (OpenID Connect Core §3.1.2.1: "Authorization
    Servers MUST support the use of the HTTP GET and POST methods"), its parameters in a form
    the app's page submits, cross-site, so without Threshold's CSRF token. It changes nothing
    by itself: it is answered by a 303 to the same request sent with GET, which then signs the
    person in first, again, or asks consent and comes back as any GET does."""
    return _posted_as_get(request)


def _posted_as_get(request: HttpRequest, **audited: Any) -> HttpResponse:
    """An app's request sent as a form POST, answered by a 303 to the same request sent with
    GET: the query's parameters, then the form's, each URL-encoded, in their order. A body
    whose parameters cannot all travel in that URL (a file in a multipart form, or more than
    the server reads in a request line, ``REQUEST_TARGET_MAX_LENGTH``) is refused with the
    catalog's page rather than sent on without them; audited with ``audited``. A body Django
    cannot read never gets here: ``RequestBodyMiddleware`` answers it with the catalog's page."""
    params = [
        (name, value)
        for source in (request.GET, request.POST)
        for name, values in source.lists()
        for value in values
    ]
    target = request.path + ("?" + urlencode(params) if params else "")
    if request.FILES or len(target) > REQUEST_TARGET_MAX_LENGTH:
        person = request.user if request.user.is_authenticated else None
        record_refusal(
            Action.SSO_REFUSED,
            audit_origin(request),
            person,
            reason="invalid_request",
            app=as_given(request.POST.get("client_id") or request.GET.get("client_id", "")),
            url_length=len(target),
            files=len(request.FILES),
            **audited,
        )
        return _problem(request, "app_link_invalid", 400)
    return see_other(target)


# The audit log's reason for an authorization request that cannot go back to its app (oauthlib
# calls all of these invalid_request, or invalid_client_id).
_FATAL_REASONS: dict[type[Exception], str] = {
    oauth2_errors.MissingClientIdError: "missing_client_id",
    oauth2_errors.InvalidClientIdError: "invalid_client_id",
    oauth2_errors.MissingRedirectURIError: "missing_redirect_uri",
    oauth2_errors.InvalidRedirectURIError: "invalid_redirect_uri",
    oauth2_errors.MismatchingRedirectURIError: "mismatching_redirect_uri",
}


_MAX_AGE = re.compile(r"[0-9]{1,10}")


def nonce_max_length() -> int:
    """The longest nonce the grant's row holds (DOT's ``Grant.nonce``, 255)."""
    return int(get_grant_model()._meta.get_field("nonce").max_length or 0)


def _authorize(request: HttpRequest) -> HttpResponse:  # noqa: PLR0911, PLR0912, PLR0915 - one answer per rule
    core = oauthlib_core()
    try:
        scopes, credentials = core.validate_authorization_request(request)
    except FatalClientError as error:
        person = request.user if request.user.is_authenticated else None
        record_refusal(
            Action.SSO_REFUSED,
            audit_origin(request),
            person,
            reason=_FATAL_REASONS.get(type(error.oauthlib_error), error.oauthlib_error.error),
            app=as_given(request.GET.get("client_id", "")),
        )
        return _problem(request, "app_link_invalid", 400)
    except OAuthToolkitError as error:
        oauth_error = error.oauthlib_error
        reason = oauth_error.error
        if reason == "unauthorized_client" and request.GET.get("response_type") != "code":
            # oauthlib knows the implicit and hybrid flows and says no app may use them;
            # this provider has only the code flow (discovery's response_types_supported).
            reason = "unsupported_response_type"
        person = request.user if request.user.is_authenticated else None
        missing_pkce = isinstance(oauth_error, oauth2_errors.MissingCodeChallengeError)
        record_refusal(
            Action.SSO_REFUSED,
            audit_origin(request),
            person,
            reason="pkce_missing" if missing_pkce else reason,  # as _refuse's plain PKCE
            app=as_given(request.GET.get("client_id", "")),
        )
        # oauthlib raises some errors without the request (a malformed ``claims``), so
        # without its redirect URI and state: the app still gets its error, if the redirect
        # URI was validated as one it registered; else the page an untrusted one gets.
        redirect_uri = oauth_error.redirect_uri or validated_redirect_uri()
        if not redirect_uri:
            return _problem(request, "app_link_invalid", 400)
        return _error_redirect(
            request,
            redirect_uri,
            reason,
            oauth_error.description or "",
            oauth_error.state or request.GET.get("state"),
            # Its schemes: a native app's private-use one too (Application.get_allowed_schemes).
            application=validated_application(request.GET.get("client_id", "")),
        )
    application: Application = credentials["request"].client
    params = request.GET
    mode = response_mode_of(params)
    if mode is None:
        # A response mode this provider does not know (or a repeated one): an invalid
        # parameter value (RFC 6749 §4.1.2.1 invalid_request), answered in query, the code
        # flow's default, rather than oauthlib's silent query: the app learns why its
        # answer did not come the way it asked (discovery's response_modes_supported).
        return _refuse(
            request,
            application,
            credentials,
            "invalid_request",
            "Unsupported response_mode.",
            reason="response_mode_unsupported",
        )
    if mode is ResponseMode.FORM_POST and not is_web_uri(credentials.get("redirect_uri") or ""):
        # A native app's private-use redirect URI: no page can post a form there.
        return _refuse(
            request,
            application,
            credentials,
            "invalid_request",
            "form_post needs an http(s) redirect_uri.",
            reason="response_mode_unsupported",
        )
    if credentials.get("code_challenge_method") != "S256":
        return _refuse(
            request,
            application,
            credentials,
            "invalid_request",
            "PKCE with S256 is required.",
            reason="pkce_plain" if credentials.get("code_challenge") else "pkce_missing",
        )
    if any(has_ascii_control(value) for _name, values in params.lists() for value in values):
        # A NUL or another control character names nothing here, and PostgreSQL refuses a NUL
        # in the grant's row: refused before anything is saved.
        return _refuse(
            request,
            application,
            credentials,
            "invalid_request",
            "Control characters.",
            reason="control_characters",
        )
    if not PKCE_VALUE.fullmatch(credentials.get("code_challenge") or ""):
        # RFC 7636 §4.2: 43 to 128 unreserved characters; the grant's column holds 128.
        return _refuse(
            request,
            application,
            credentials,
            "invalid_request",
            "Bad code_challenge.",
            reason="pkce_challenge_invalid",
        )
    if len(credentials.get("nonce") or "") > nonce_max_length():
        # Longer than the grant's column: refused before the INSERT that would fail.
        return _refuse(
            request,
            application,
            credentials,
            "invalid_request",
            "The nonce is too long.",
            reason="nonce_too_long",
        )
    for parameter, unsupported in _UNSUPPORTED_PARAMETERS.items():
        # OpenID Connect Core §6.1, §6.2 and §7.2.1: refused, not ignored (a request object's
        # values would otherwise be silently replaced by the query's), before any sign-in.
        if parameter in params:
            return _refuse(
                request, application, credentials, unsupported, f"{parameter} is not supported."
            )
    prompt = set(params.get("prompt", "").split())
    max_age_raw = params.get("max_age")
    max_age: int | None = None
    if max_age_raw is not None:
        # Ten ASCII digits at most: str.isdigit() is True for "²", which int() refuses.
        if not _MAX_AGE.fullmatch(max_age_raw):
            return _refuse(request, application, credentials, "invalid_request", "Bad max_age.")
        max_age = int(max_age_raw)
    wanted = [Acr(value) for value in params.get("acr_values", "").split() if value in set(Acr)]

    if not request.user.is_authenticated:
        if "none" in prompt:
            return _refuse(request, application, credentials, "login_required", "Not signed in.")
        return _sign_in_first(request, "sessions:sign-in")
    user = request.user
    assert isinstance(user, User)  # noqa: S101 - authenticated

    hint = params.get("id_token_hint")
    if hint:
        matches = _hint_matches(hint, user)
        if matches is None:
            return _refuse(
                request, application, credentials, "invalid_request", "Bad id_token_hint."
            )
        if not matches:
            return _refuse(
                request, application, credentials, "login_required",
                "The id_token_hint names someone else.",
            )  # fmt: skip

    if not may_use(application, user):
        record(
            Action.SSO_REFUSED,
            audit_origin(request),
            actor=user,
            subject=user,
            reason="not_assigned",
            app=application.client_id,
        )
        if "none" in prompt:
            return _error_redirect(
                request,
                credentials["redirect_uri"],
                "access_denied",
                "Not assigned to this app.",
                credentials.get("state"),
                application=application,
            )
        return _problem(
            request, "app_not_allowed", 403, template="sso/no_access.html", application=application
        )

    facts = facts_of(request)
    reauth_started = _reauth_marker(request)
    signed_in_at = request.session.get(SIGNED_IN_AT, 0)
    signed_in_again = reauth_started is not None and signed_in_at >= reauth_started
    too_old = max_age is not None and clock.now() - facts.auth_time > max_age
    # The policy in force may have come to refuse the passkey (or the password, or the
    # device) this session signed in with: then a new sign-in, as for prompt=login.
    stands = sign_in_stands(request, user)
    needs_login = (("login" in prompt or too_old) and not signed_in_again) or not stands
    acr_unmet = bool(wanted) and facts.acr not in {
        str(acr) for want in wanted for acr in Acr if _satisfies(acr, want)
    }
    if acr_unmet and (signed_in_again or not _has_method_for(user, wanted, policy_for(request))):
        return _refuse(
            request, application, credentials, "unmet_authentication_requirements",
            "No sign-in method of this person meets the acr_values.",
        )  # fmt: skip
    if needs_login and not _has_method_for(user, [Acr.PHR], policy_for(request)):
        if (
            not stands
            and "none" not in prompt
            and count_usable_sign_in_methods(user, policy_for(request))
        ):
            # Signed in a way the policy now refuses, with another way still allowed (the
            # password, a push): this session ends, and the person signs in anew with every
            # way the sign-in page offers (OpenID Connect Core §3.1.2.3: the OP authenticates
            # them), then comes back to this authorization.
            sign_out(request, reason="sign_in_no_longer_allowed")
            return _sign_in_first(request, "sessions:sign-in")
        # A new sign-in is a passkey ceremony; someone with no passkey cannot give one
        # (OpenID Connect Core §3.1.2.1: "If it cannot reauthenticate ... login_required").
        return _refuse(request, application, credentials, "login_required", "No passkey.")
    if needs_login or acr_unmet:
        if "none" in prompt:
            code = "interaction_required" if acr_unmet and not needs_login else "login_required"
            return _refuse(request, application, credentials, code, "A new sign-in is needed.")
        return _sign_in_first(
            request, "sso:sign-in-again", acr=" ".join(wanted) if acr_unmet else ""
        )

    # Offline access, tokens that outlive the session, is always asked (OpenID Connect Core
    # §11: the OP MUST obtain consent for it), as "Stay signed in to the app".
    if application.require_consent or "consent" in prompt or OFFLINE_ACCESS in scopes:
        if "none" in prompt:
            return _refuse(request, application, credentials, "consent_required", "Consent needed.")
        if request.method != "POST":
            descriptions = cast(dict[str, Any], settings.OAUTH2_PROVIDER)["SCOPES"]
            return render(
                request,
                "sso/consent.html",
                {
                    "application": application,
                    "scopes": [descriptions.get(scope, scope) for scope in scopes],
                    "action": request.get_full_path(),
                },
            )
        if request.POST.get("allow") != "yes":
            return _refuse(request, application, credentials, "access_denied", "Not allowed.")

    credentials[FACTS] = facts
    try:
        # The grant, the sign-in's facts and the audit row: all three or none.
        with transaction.atomic():
            response_params = issue_code(core, request, list(scopes), credentials)
            # What record() stores, in one INSERT built once (threshold/sso/hotpath.py).
            insert_audit(
                [
                    AuditRow(
                        at=clock.now_datetime(),
                        action=Action.SSO_AUTHORIZED,
                        origin=audit_origin(request),
                        actor=user,
                        subject=user,
                        detail={
                            "app": application.client_id,
                            "scopes": list(scopes),
                            "acr": facts.acr,
                        },
                    )
                ]
            )
    except OAuthToolkitError as error:
        oauth_error = error.oauthlib_error
        return _refuse(
            request, application, credentials, oauth_error.error, oauth_error.description or ""
        )
    except IntegrityError:
        # The app was removed meanwhile (another server's kept copy, sso/appcache.py).
        record(
            Action.SSO_REFUSED,
            audit_origin(request),
            actor=user,
            subject=user,
            reason="app_removed",
            app=application.client_id,
        )
        return _problem(request, "app_link_invalid", 400)
    return _answer(request, credentials["redirect_uri"], response_params, application)


def issue_code(
    core: Any,
    request: HttpRequest,
    scopes: list[str],
    credentials: dict[str, Any],
    user: User | None = None,
) -> list[tuple[str, str]]:
    """A new code: the authorization response's parameters (``code``, ``state``, RFC 9207's
    ``iss``), what DOT's ``create_authorization_response`` would put in its redirect, without
    validating the request a second time.

    oauthlib's grant validates the whole request again inside its
    ``create_authorization_response`` (duplicate parameters, client, redirect URI, PKCE,
    OpenID Connect's checks: a tenth of a millisecond per authorization), on a request
    ``validate_authorization_request`` has just validated, with the same parameters, so with
    the same answer. Here the validated request (``credentials["request"]``) goes through the
    steps that follow that validation, each the grant's or validator's own: the code
    (``create_authorization_code``) and the grant's INSERT (``save_authorization_code``); then
    DOT's RFC 9207 ``iss``. The response itself is ours (``_answer``): oauthlib's
    ``prepare_authorization_response`` knows no ``form_post`` and answers it in ``query``.
    Only the hybrid flows' grants modify a code (``_code_modifiers``, oauthlib 4), and this
    provider has only the code flow: such a grant is refused, never half-served.

    ``user``: the person the code is for, when not the request's (a first-party app's sign-in,
    ``firstparty.py``, which has no browser session).
    """
    oauth_request = credentials["request"]
    dispatcher = core.server.response_types.get(oauth_request.response_type)
    grant_type = getattr(dispatcher, "oidc_grant" if "openid" in scopes else "default_grant", None)
    if grant_type is None or getattr(grant_type, "_code_modifiers", True):
        raise OAuthToolkitError(
            error=oauth2_errors.UnsupportedResponseTypeError(),
            redirect_uri=credentials["redirect_uri"],
        )
    # What DOT's and oauthlib's create_authorization_response put on their request.
    oauth_request.scopes = scopes
    oauth_request.user = user or request.user
    setattr(oauth_request, FACTS, credentials[FACTS])
    try:
        code = grant_type.create_authorization_code(oauth_request)
        grant_type.request_validator.save_authorization_code(
            oauth_request.client_id, code, oauth_request
        )
    except oauth2_errors.OAuth2Error as error:
        # As DOT's create_authorization_response raises them.
        raise OAuthToolkitError(error=error, redirect_uri=credentials["redirect_uri"]) from error
    params = [(str(name), str(value)) for name, value in code.items()]
    if oauth2_settings.COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS:
        params.append(("iss", str(oauth2_settings.oauth2_authorization_server_issuer(request))))
    return params


def _satisfies(acr: Acr, wanted: Acr) -> bool:
    from threshold.core.assurance import SATISFIES  # noqa: PLC0415

    return acr in SATISFIES[wanted]


@never_cache
@require_safe
def sign_in_again(request: HttpRequest) -> HttpResponse:
    """The new passkey sign-in an app asked for (prompt=login, max_age, acr_values).

    A real ceremony with one of the person's own passkeys (user verification required),
    offering only those that meet the requested acr; it ends in a new sign-in of this
    session (new auth_time, amr, acr), then goes back to the authorization.
    """
    if not request.user.is_authenticated:
        return HttpResponseRedirect(
            reverse("sessions:sign-in") + "?" + urlencode({"next": _next_of(request)})
        )
    return render(
        request,
        "sso/sign_in_again.html",
        {
            "catalog": SIGN_IN_CATALOG,
            "flow": issue_flow_token(Flow.STEP_UP),
            "options_query": urlencode({"acr": request.GET.get("acr", "")}),
            "result_query": urlencode({"next": _next_of(request)}),
        },
    )


def _next_of(request: HttpRequest) -> str:
    """The authorization to go back to: only /authorize on this site."""
    target = request.GET.get("next", "")
    if target.startswith(reverse("sso:authorize") + "?") and "\\" not in target:
        return target
    return reverse("selfservice:home")


@require_POST
@json_login_required
def sign_in_again_options(request: HttpRequest) -> JsonResponse:
    user = request.user
    assert isinstance(user, User)  # noqa: S101 - json_login_required
    wanted = [Acr(value) for value in request.GET.get("acr", "").split() if value in set(Acr)]
    try:
        policy = policy_for(request)
        check_flow(request, Flow.STEP_UP, policy=policy)
        read_json_object(request)
        # Only the passkeys that meet the acr the app asked for: offered, and the only ones
        # the ceremony accepts (WebAuthn §7.2 step 5).
        options = do_begin_step_up(
            ceremonies(request),
            user,
            policy=policy,
            # Without acr_values, any passkey the policy lets sign in (phr: all of them).
            passkeys=_passkeys_for(user, wanted or [Acr.PHR], policy),
        )
    except errors.ThresholdError as error:
        return failed(error, Surface.AUTHENTICATION)
    return ok({"publicKey": options})


@require_POST
@json_login_required
def sign_in_again_result(request: HttpRequest) -> JsonResponse:
    user = request.user
    assert isinstance(user, User)  # noqa: S101 - json_login_required
    try:
        # A new sign-in of this session: what the app is told is what just happened. With
        # its session in one transaction (``with_the_session``): a database failing at the
        # session does not end it, as a key change that tells no app.
        with_the_session(
            request,
            lambda: do_finish_sign_in(
                ceremonies(request),
                read_credential(request),
                audit_origin(request),
                step_up_user=user,
                policy=policy_for(request),
            ),
            lambda signed_in: sign_in(
                request,
                user,
                signed_in.assurance,
                user_verified=signed_in.user_verified,
                credential=signed_in.passkey_id,
            ),
        )
    except errors.ThresholdError as error:
        return failed(error, Surface.AUTHENTICATION)
    return ok({"redirect": _next_of(request)})


# --- Token, userinfo, revoke ---------------------------------------------------------------


_TOKEN_HEADERS = {
    "Content-Type": "application/json",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
}


def oauth_json(body: dict[str, Any], status: int = 200) -> JsonResponse:
    """An answer to an app's server about tokens: JSON that no cache keeps (RFC 6749 §5.1,
    RFC 7662 §2.2); an error's body is ``oauth_error``'s."""
    response = JsonResponse(body, status=status)
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    return response


def oauth_error(error: str, description: str, status: int) -> JsonResponse:
    """An OAuth error, as RFC 6749 §5.2 writes it, never cached."""
    return oauth_json({"error": error, "error_description": description}, status)


def oauth_failure(request: HttpRequest, unavailable: bool) -> HttpResponse:
    """How an app's server learns that its call failed here (``web.views.server_error``): an
    OAuth error in RFC 6749 §5.2's JSON, never a page. ``temporarily_unavailable`` (503, with
    Retry-After) while the database fails, else ``server_error`` (500). Not audited: the
    database may be what failed; Django's log has the error."""
    response = oauth_failed(unavailable)
    cors.allow_as_last_read(request, response)  # a browser app reads why, too
    return response


def oauth_failed(unavailable: bool) -> JsonResponse:
    """The JSON of ``oauth_failure``: ``temporarily_unavailable`` (503) or ``server_error``
    (500)."""
    if unavailable:
        return oauth_error(
            "temporarily_unavailable",
            "Threshold is briefly unavailable: try again in a moment.",
            503,
        )
    return oauth_error("server_error", "Threshold could not answer this.", 500)


_BODY_UNREADABLE = "The request body cannot be read."


def token_body_refused(request: HttpRequest) -> HttpResponse:
    """/token's answer to a form body Django will not parse (over DATA_UPLOAD_MAX_MEMORY_SIZE,
    too many fields, a broken multipart, a charset other than UTF-8): the OAuth error an app
    reads (RFC 6749 §5.2), not a page; audited as the token's other refusals."""
    record_capped(Action.SSO_TOKEN_REFUSED, audit_origin(request), reason="invalid_request")
    response = oauth_error("invalid_request", _BODY_UNREADABLE, 400)
    cors.allow_as_last_read(request, response)
    return response


def userinfo_body_refused(request: HttpRequest) -> HttpResponse:
    """/userinfo's answer to such a body: RFC 6750 §3.1's ``invalid_request`` (400), with
    its WWW-Authenticate challenge, in JSON as its other refusals; audited."""
    response = _userinfo_invalid_request(request, "invalid_request", _BODY_UNREADABLE)
    cors.allow_as_last_read(request, response)
    return response


_NOT_IN_THE_URL = "An access token is not accepted in the URL: send it in the Authorization header."


def _userinfo_invalid_request(request: HttpRequest, reason: str, description: str) -> HttpResponse:
    """RFC 6750 §3.1's ``invalid_request`` (400) with its WWW-Authenticate challenge, in JSON
    as /userinfo's other refusals; audited (``reason``), never with the request's token."""
    record_capped(
        Action.SSO_TOKEN_REFUSED, audit_origin(request), reason=reason, endpoint="userinfo"
    )
    response = oauth_error("invalid_request", description, 400)
    response["WWW-Authenticate"] = (
        f'Bearer error="invalid_request", error_description="{description}"'
    )
    return response


def _token_in_query(request: HttpRequest) -> bool:
    """Does the URL's query carry an ``access_token`` parameter (its name decoded as Django
    and oauthlib decode it, whatever its value, as DOT's ``verify_request`` checks)? Parsed
    here without Django's limit on the number of fields, which a query may exceed."""
    query = request.META.get("QUERY_STRING", "")
    return bool(query) and any(
        name == "access_token" for name, _ in parse_qsl(query, keep_blank_values=True)
    )


def revoke_body_refused(request: HttpRequest) -> HttpResponse:
    """/revoke's answer to such a body: RFC 7009 §2.2.1's error response, which is RFC 6749
    §5.2's (``invalid_request``, 400); audited."""
    record_capped(
        Action.SSO_TOKEN_REFUSED, audit_origin(request), reason="invalid_request", endpoint="revoke"
    )
    response = oauth_error("invalid_request", _BODY_UNREADABLE, 400)
    cors.allow_as_last_read(request, response)
    return response


def _challenged_as_apps_authenticate(
    view: Callable[..., HttpResponse],
) -> Callable[..., HttpResponse]:
    """/token's and /revoke's 401 (``invalid_client``) challenge the scheme an app
    authenticates with there, HTTP Basic (RFC 6749 §5.2, as /introspect does), not oauthlib's
    Bearer, which these endpoints never take."""

    @functools.wraps(view)
    def endpoint(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        if response.status_code == 401:  # noqa: PLR2004
            # With the error as an auth-param too, where a client that reads the challenge
            # (openid-client does, and then not the body) finds it.
            response["WWW-Authenticate"] = 'Basic realm="Threshold", error="invalid_client"'
        return response

    return endpoint


@cors.for_browser_apps("POST")
@_challenged_as_apps_authenticate
@answers_failures_with(oauth_failure)
@answers_wrong_methods_with(oauth_wrong_method)
@refuses_bodies_with(token_body_refused)
@csrf_exempt
@require_POST
@refuses_broken_queries(_query_refused("token"))
@refuses_repeated_parameters("token")
def token(request: HttpRequest) -> HttpResponse:
    grant_type = request.POST.get("grant_type")
    if grant_type and grant_type not in oauth2_settings.OAUTH2_GRANT_TYPES_SUPPORTED:
        # RFC 6749 §5.2 unsupported_grant_type, before oauthlib, whose server still knows
        # grants Threshold does not offer (the device code's, the password's, the client's).
        unsupported = oauth2_errors.UnsupportedGrantTypeError()
        headers, body, status, recorded = {}, unsupported.json, unsupported.status_code, False
    else:
        core = oauthlib_core()
        with per_request():
            _, headers, body, status = core.create_token_response(request)
            recorded = refusal_recorded()
    response = HttpResponse(content=body, status=status)
    # oauthlib's token answers' headers (RFC 6749 §5.1, §5.2); an error raised while the
    # tokens are saved (a code used up meanwhile) comes without them.
    for name, value in {**_TOKEN_HEADERS, **headers}.items():
        response[name] = value
    if status != 200 and not recorded:  # noqa: PLR2004
        try:
            error = str(json.loads(body).get("error", ""))
        except (ValueError, AttributeError):
            error = "invalid_request"
        # No person, and perhaps no app: anyone can send these (threshold/audit/capped.py).
        record_capped(
            Action.SSO_TOKEN_REFUSED,
            audit_origin(request),
            reason=error,
            app=as_given(_client_id_named(request)),
            grant_type=as_given(request.POST.get("grant_type", ""), 40),
        )
    return response


def _client_id_named(request: HttpRequest) -> str:
    """The client_id a /token request names, for its audit row: the form's, else the HTTP
    Basic credentials' (RFC 6749 §2.3.1: form-urlencoded, then base64), "" if neither."""
    named = request.POST.get("client_id", "")
    if named:
        return named
    scheme, _, credentials = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return ""
    return unquote_plus(decoded.partition(":")[0])


_userinfo = UserInfoView.as_view()


@cors.for_browser_apps("GET, POST")
@answers_failures_with(oauth_failure)
@answers_wrong_methods_with(oauth_wrong_method)
@refuses_bodies_with(userinfo_body_refused)
@csrf_exempt
@refuses_broken_queries(_userinfo_query_refused)
def userinfo(request: HttpRequest) -> HttpResponse:
    """DOT's userinfo view, with the validator's per-request reads (the person's groups come
    with the access token's SELECT).

    An access token in the URL's query is refused (RFC 9700 §4.3.2; RFC 6750 §2.3): a URL ends
    up in logs and Referer headers. DOT refuses it only in ``verify_request``
    (``COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT``), which its userinfo view does not call.
    The token is not looked up: the request is refused before any SQL but the audit row's. The
    header (RFC 6750 §2.1) and a form body (§2.2) are read as DOT reads them."""
    if _token_in_query(request):
        return _userinfo_invalid_request(request, "token_in_query", _NOT_IN_THE_URL)
    with per_request():
        response: HttpResponse = _userinfo(request)
    if response.status_code >= 400 and response.content.startswith(b"{"):  # noqa: PLR2004
        # DOT's refusals (401 invalid_token, ...) are JSON sent as text/html.
        response["Content-Type"] = "application/json"
    if response.status_code == 403 and not response.has_header("WWW-Authenticate"):  # noqa: PLR2004
        # A live token without the openid scope (RFC 6750 §3.1 insufficient_scope): oauthlib
        # gives the challenge to 401s only, and §3 wants it on every refusal.
        response["WWW-Authenticate"] = (
            'Bearer error="insufficient_scope", scope="openid", '
            'error_description="The access token was not issued for OpenID Connect."'
        )
    # A person's claims: kept by no cache on the way (as /token's answers, RFC 6749 §5.1).
    response["Cache-Control"] = "no-store"
    return response


revoke = cors.for_browser_apps("POST")(
    _challenged_as_apps_authenticate(
        answers_failures_with(oauth_failure)(
            answers_wrong_methods_with(oauth_wrong_method)(
                refuses_bodies_with(revoke_body_refused)(
                    refuses_broken_queries(_query_refused("revoke"))(
                        refuses_repeated_parameters("revoke")(RevokeTokenView.as_view())
                    )
                )
            )
        )
    )
)


# --- Settings: "Sign out of this app" -----------------------------------------------------------


@require_POST
@needs_sign_in(back=on_settings)
def sign_out_of_app(request: HttpRequest, app_id: str) -> HttpResponse:
    user = request.user
    assert isinstance(user, User)  # noqa: S101 - needs_sign_in
    application = access_signed_in_app(user, app_id)
    if application is not None:
        do_sign_out_of_app(user, application, audit_origin(request))
    return see_other(url_to("selfservice:settings", query={"done": Done.SIGNED_OUT_OF_APP}))


# --- RP-initiated logout -------------------------------------------------------------------


class EndSessionView(RPInitiatedLogoutView):  # DOT ships no types
    """OpenID Connect RP-Initiated Logout 1.0, ending the Threshold session like "Sign out"."""

    template_name = "sso/logout_confirm.html"
    hint_sid = ""  # the session the ID token hint was issued in
    # RP-Initiated Logout 1.0 §2: GET and POST. Not FormView's PUT (its ``put`` is ``post``):
    # a PUT is a 405, and Allow does not name it.
    http_method_names = ("get", "post", "head", "options")

    def validate_logout_request_user(self, id_token_hint: str | None, client_id: str | None) -> Any:
        """The hint's app and person, from its signature: DOT would look for an ID token row,
        which ``threshold cleanup`` removes once it expires (and Threshold keeps none)."""
        if not id_token_hint:
            return None
        claims = keys.verified_claims(id_token_hint)
        if claims is None:
            raise InvalidIDTokenError()
        self.hint_sid = str(claims.get("sid", ""))
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        application = Application.objects.filter(
            client_id__in=[a for a in audiences if isinstance(a, str)]
        ).first()
        if application is None:
            raise InvalidIDTokenError()
        if client_id and application.client_id != client_id:
            raise ClientIdMissmatch()
        sign_in = (
            AppSignIn.objects.filter(sid=self.hint_sid, application=application)
            .select_related("user")
            .first()
        )
        user = sign_in.user if sign_in is not None else None
        if user is not None and subject_of(user) != claims.get("sub"):
            user = None
        return SimpleNamespace(application=application, user=user)

    def must_prompt(self, token_user: Any) -> bool:
        """DOT's answer, and also when the hint was issued in another session of the person
        than this browser's (RP-Initiated Logout §2: the OP MUST ask when the ID token does
        not belong to the current OP session): an ID token from the phone, or one leaked,
        does not sign the laptop out by a link."""
        if super().must_prompt(token_user):
            return True
        return bool(self.request.user.is_authenticated) and self.hint_sid != self._this_sid()

    def _this_sid(self) -> str:
        sid = self.request.session.get(SID) if self.request.user.is_authenticated else None
        return sid if isinstance(sid, str) else ""

    def get_request_application(self, id_token: Any, client_id: str | None) -> Any:
        if client_id:
            application = (
                Application.objects.filter(client_id=client_id).first()
                if storable(client_id)
                else None
            )
            if application is None:
                raise InvalidOIDCClientError()
            return application
        return id_token.application if id_token else None

    def error_response(self, error: OIDCError) -> HttpResponse:
        person = self.request.user if self.request.user.is_authenticated else None
        record_refusal(
            Action.SSO_REFUSED,
            audit_origin(self.request),
            person,
            reason=getattr(error, "error", "invalid_request"),
            logout=True,
        )
        return _problem(self.request, "app_link_invalid", 400)

    def do_logout(
        self,
        application: Any = None,
        post_logout_redirect_uri: str | None = None,
        state: str | None = None,
        token_user: Any = None,
    ) -> HttpResponse:
        signed_in = self.request.user if self.request.user.is_authenticated else None
        user = token_user or signed_in
        # One transaction, the people's rows first, as every revocation of theirs takes them:
        # the ID token hint's person and this browser's, when another, in the order of IDs.
        with transaction.atomic():
            lock_users({person.pk for person in (user, signed_in) if person is not None})
            # The app's tokens of the session the hint names and of this browser's, but those
            # the person let it keep (offline_access): the person's other sessions keep theirs
            # (Keycloak and Okta end only the session logged out, and a Sign out revokes only
            # its own session's).
            sids = sorted({sid for sid in (self.hint_sid, self._this_sid()) if sid})
            sessions = 0
            if user is not None and application is not None and sids:
                revoke_tokens(user, application=application, sids=sids, keep_offline=True)
                # A first-party app's logout with the ID token of its own sign-in (no browser
                # session to sign out): the Threshold session it holds ends too. Never a
                # browser's: sign_out below ends this browser's.
                sessions = end_app_sessions(user, application, sids=sids)
            ended: dict[str, Any] = {"sessions": sessions} if sessions else {}
            record(
                Action.SSO_LOGOUT,
                audit_origin(self.request),
                actor=user,
                subject=user,
                app=getattr(application, "client_id", ""),
                **ended,
            )
            if self.request.user.is_authenticated:
                sign_out(self.request)
        if post_logout_redirect_uri:
            target = post_logout_redirect_uri
            if state:
                target = add_params_to_uri(target, [("state", state)])
            response = _to_app(target)
        else:
            response = render(self.request, "sessions/signed_out.html")
        forget_signed_in(response)
        return response


_end_session = EndSessionView.as_view()
# Its confirmation form's POST (sso/logout_confirm.html), and every method but an app's POST,
# under Django's CSRF check as before.
_end_session_checked = csrf_protect(_end_session)

# The confirmation form's fields: a POST that has one answers that form, under Django's CSRF
# check; any other POST is an app's logout request sent as a form.
_CONFIRMATION_FIELDS = ("allow", "csrfmiddlewaretoken")


@csrf_exempt
@never_cache  # its confirmation page holds the app's ID token
def end_session(request: HttpRequest) -> HttpResponse:
    """RP-Initiated Logout 1.0 §2: "The OP MUST support the use of the HTTP GET and POST
    methods at the Logout Endpoint." An app's page posts its logout request's form
    cross-site, so without Threshold's CSRF token: it changes nothing by itself, and is
    answered, as an authorization request sent with POST is, by a 303 to the same request
    sent with GET, which then signs the person out or asks them first, as any GET does. The
    confirmation's answer (its "Sign out" button, with the token) stays CSRF-protected."""
    if request.method == "POST" and not any(
        field in request.POST for field in _CONFIRMATION_FIELDS
    ):
        return _posted_as_get(request, logout=True)
    response: HttpResponse = _end_session_checked(request)
    return response
