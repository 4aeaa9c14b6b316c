"""A passkey sign-in inside the company's own app: the Authorization Challenge Endpoint of
OAuth 2.0 for First-Party Applications (draft-ietf-oauth-first-party-apps-04), with a passkey
as the challenge.

``POST /authorize-challenge`` takes a form (§4.1), as ``/token`` does, from an app an
administrator marked first-party (``Application.first_party``), authenticated as at ``/token``
(a public app by its ``client_id``, a confidential one with its secret: DOT's validator).

1. The authorization request (``client_id``, ``response_type=code`` or none, ``scope``, PKCE
   S256, ``acr_values``, ``nonce``, ``id_token_hint``) is answered ``insufficient_authorization``
   (§5.2.2, 403 as §5.2.2.1 says) with an ``auth_session`` and the ``passkey_options`` to give
   Credential Manager or AuthenticationServices: the sign-in page's discoverable options
   (``do_begin_sign_in``), or only the hinted person's passkeys. The ``auth_session`` is the
   ceremony's signed token (``passkeys.pending``, its own kind ``APP_SIGN_IN``) carrying the
   authorization request too: nothing is written.
2. ``auth_session`` and ``passkey_response`` (the credential's ``toJSON()``; ``client_id`` may
   be left out, §5.1: it is the one the ``auth_session`` names) are verified by
   the sign-in's own action (``do_finish_sign_in``: the challenge used once, the counter, the
   policy, the audit rows); the person must be assigned the app and meet the ``acr_values``.
   Then, in one transaction with the sign-in, a Threshold session the app holds (no cookie;
   Settings names it by the app; it ends, and the app's tokens with it, as a browser's does,
   but at the absolute timeout only, and with the app's logout or "Sign out of this app")
   and a code issued through DOT's grant (``views.issue_code``), bound to that session
   (``AppSignIn``: its ``sid``, ``auth_time``, ``amr``, ``acr``). 200 ``authorization_code``
   (§5.1), exchanged at ``/token`` with the PKCE verifier.

What the browser's ``/authorize`` would ask the person on a page, this endpoint cannot: an app
that requires consent and ``prompt=consent`` get ``redirect_to_web`` (§5.2.2), and the app uses
the browser instead. ``offline_access`` (staying signed in past the Threshold session), which
``/authorize`` asks every app's person about, is granted here without a page: the administrator
who marked the app first-party (the company's own app) decided it, which is the "other
conditions ... known" of OpenID Connect Core §11; "Sign out of this app", a lock, a recovery and
"Sign out other sessions" still end it.

A failed assertion is one answer (``access_denied``, "Verification failed"), its reason in
the audit log only; answers are JSON that no cache keeps and carry no CORS headers (apps only).
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from oauth2_provider.exceptions import OAuthToolkitError
from oauth2_provider.settings import oauth2_settings
from oauthlib.common import Request as OAuthRequest
from oauthlib.oauth2.rfc6749.utils import scope_to_list

from threshold import clock
from threshold.audit.actions import Action, Origin, as_given
from threshold.audit.capped import record_capped
from threshold.core import catalog, ceremony, errors
from threshold.core.assurance import SATISFIES, Acr
from threshold.core.catalog import Surface
from threshold.core.names import has_ascii_control, is_text
from threshold.passkeys.actions import SignedIn, do_begin_sign_in, do_finish_sign_in
from threshold.passkeys.hotpath import AuditRow, insert_audit
from threshold.passkeys.limits import options_wait
from threshold.passkeys.pending import Ceremonies, CeremonyKind, TakenCeremony, open_pending
from threshold.policy.access import policy_for
from threshold.sessions.actions import new_signed_in_session
from threshold.sessions.models import Session
from threshold.sessions.store import SID, SIGN_IN_APP, SIGN_IN_APP_CLIENT, SIGNED_IN_AT
from threshold.sso.models import Application, AppSignIn
from threshold.sso.sessions import SessionFacts, subject_of
from threshold.sso.validator import FACTS, PKCE_VALUE, may_use, per_request
from threshold.sso.views import (
    authenticates_twice,
    hint_claims,
    issue_code,
    nonce_max_length,
    oauth_error,
    oauth_failed,
    oauth_json,
    oauth_wrong_method,
    oauthlib_core,
    repeated_parameter,
)
from threshold.web.bodies import refuses_bodies_with
from threshold.web.http import answers_failures_with, audit_origin, client_ip, parse_json
from threshold.web.methods import answers_wrong_methods_with

_FORM = "application/x-www-form-urlencoded"
# Parameters this provider does not support (as at /authorize), and the error each gets.
_UNSUPPORTED_PARAMETERS = {
    "request": "request_not_supported",
    "request_uri": "request_uri_not_supported",
    "registration": "registration_not_supported",
}
# What the audit log says of the endpoint's rows.
_ENDPOINT = "authorize_challenge"


class HintMismatch(errors.AppSignInError):
    """The passkey is of someone other than the person the app's id_token_hint names."""

    code = "id_token_hint_mismatch"


class _Refused(Exception):
    """An answer other than a code: ``error`` (§5.2.2) with ``description``, ``status``; the
    audit log's ``reason`` (the rule), unless the sign-in's action audited it already."""

    def __init__(
        self,
        error: str,
        description: str,
        *,
        status: int = 400,
        reason: str = "",
        audited: bool = True,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status
        self.reason = reason or error
        self.audited = audited
        self.retry_after = retry_after


def _failure(request: HttpRequest, unavailable: bool) -> HttpResponse:
    """A failure under the view (the database): OAuth's JSON (``oauth_failed``), without
    the CORS ``oauth_failure`` adds for a browser app's origin; a 503 says when to retry."""
    response = oauth_failed(unavailable)
    if unavailable:
        response["Retry-After"] = "1"
    return response


def _body_refused(request: HttpRequest) -> HttpResponse:
    """A form body Django will not parse (over 64 KiB, too many fields, not UTF-8)."""
    record_capped(Action.SSO_REFUSED, audit_origin(request), reason="invalid_request",
                  endpoint=_ENDPOINT)  # fmt: skip
    return oauth_error("invalid_request", "The request body cannot be read.", 400)


@answers_failures_with(_failure)
@answers_wrong_methods_with(oauth_wrong_method)
@refuses_bodies_with(_body_refused)
@csrf_exempt
@require_POST
def authorize_challenge(request: HttpRequest) -> HttpResponse:
    with per_request():
        try:
            params = _params(request)
            if (
                "auth_session" in params
                and "client_id" not in params
                and "HTTP_AUTHORIZATION" not in request.META
            ):
                # The draft's §5.1: client_id is required "if the client is not
                # authenticating with the authorization server and if no auth_session is
                # included": it is the client the auth_session was issued to. A confidential
                # app still authenticates, with its secret in the form.
                params["client_id"] = _asked_in(params["auth_session"]).client_id
            core = oauthlib_core()
            oauth_request = _authenticated_client(core, request, params)
            application: Application = oauth_request.client
            if not application.first_party:
                raise _Refused(
                    "unauthorized_client",
                    "This app may not sign people in inside itself: use /authorize.",
                    reason="not_first_party",
                )
            if "auth_session" in params:
                return _finish(request, core, params, application, oauth_request)
            return _challenge(request, params, application, oauth_request)
        except _Refused as refused:
            if refused.audited:
                record_capped(
                    Action.SSO_REFUSED,
                    audit_origin(request),
                    reason=refused.reason,
                    app=as_given(_params_for_audit(request).get("client_id", "")),
                    endpoint=_ENDPOINT,
                )
            response = oauth_error(refused.error, refused.description, refused.status)
            if refused.status == 401:  # noqa: PLR2004
                response["WWW-Authenticate"] = 'Basic realm="Threshold", error="invalid_client"'
            if refused.retry_after is not None:
                response["Retry-After"] = str(refused.retry_after)
            return response


def _params_for_audit(request: HttpRequest) -> dict[str, str]:
    """The form's single values, for the audit log of a refusal (whatever its shape)."""
    try:
        return {name: value for name, value in request.POST.items() if isinstance(value, str)}
    except Exception:  # noqa: BLE001 - only for the audit log's client_id
        return {}


def _params(request: HttpRequest) -> dict[str, str]:
    """The form's parameters, each once (RFC 6749 §3.1: "Request and response parameters MUST
    NOT be included more than once"), as text without control characters (the JSON of
    ``passkey_response`` may have whitespace)."""
    if request.content_type != _FORM:
        raise _Refused("invalid_request", f"Send the parameters as {_FORM}.")
    repeated = repeated_parameter(request)
    if repeated is not None:
        raise _Refused(
            "invalid_request", f"{as_given(repeated, 40)} is repeated.", reason="repeated_parameter"
        )
    if authenticates_twice(request):
        raise _Refused(
            "invalid_request",
            "Authenticate the client once: HTTP Basic or client_secret, not both.",
            reason="client_authentication_twice",
        )
    params: dict[str, str] = {}
    for name, values in request.POST.lists():
        value = values[0]
        if not is_text(name) or not is_text(value) or "\x00" in value:
            raise _Refused("invalid_request", "Not text.", reason="control_characters")
        if name != "passkey_response" and has_ascii_control(value):
            raise _Refused("invalid_request", "Control characters.", reason="control_characters")
        params[name] = value
    return params


def _authenticated_client(core: Any, request: HttpRequest, params: dict[str, str]) -> OAuthRequest:
    """The app, authenticated as ``/token`` authenticates it (RFC 6749 §3.2.1, oauthlib's
    ``authenticate_client`` / ``authenticate_client_id`` through Threshold's validator): a
    confidential app with its secret (HTTP Basic or the form), a public one by its client_id.
    Else 401 ``invalid_client``."""
    validator = oauth2_settings.OAUTH2_VALIDATOR_CLASS()
    oauth_request = OAuthRequest(
        request.build_absolute_uri(request.path),
        http_method="POST",
        body=urlencode(list(params.items())),
        headers=core.extract_headers(request),
    )
    client_id = params.get("client_id", "")
    if validator.client_authentication_required(oauth_request):
        authenticated = validator.authenticate_client(oauth_request)
    else:
        authenticated = bool(client_id) and validator.authenticate_client_id(
            client_id, oauth_request
        )
    if not authenticated or not isinstance(oauth_request.client, Application):
        raise _Refused(
            "invalid_client", "Client authentication failed.", status=401, reason="invalid_client"
        )
    oauth_request.client_id = oauth_request.client.client_id
    return oauth_request


# --- The first request: the challenge --------------------------------------------------------


def _challenge(
    request: HttpRequest,
    params: dict[str, str],
    application: Application,
    oauth_request: OAuthRequest,
) -> HttpResponse:
    """§5.2.2 ``insufficient_authorization``: the passkey options, and the ``auth_session``
    that carries the ceremony and this authorization request. Writes nothing."""
    wait = options_wait(client_ip(request))
    if wait:
        # The sign-in page's options and the apps' challenges share one allowance per network.
        raise _Refused(
            "slow_down",
            "Too many sign-ins from this network: try again in a moment.",
            status=429,
            audited=False,
            retry_after=math.ceil(wait),
        )
    for parameter, unsupported in _UNSUPPORTED_PARAMETERS.items():
        if parameter in params:
            raise _Refused(unsupported, f"{parameter} is not supported.")
    # The draft (§5.1) makes response_type REQUIRED, and only the code flow is served here.
    # Its absence is accepted as "code": the draft's own example requests, and the clients
    # written from them, leave it out (docs/operations.md).
    if params.get("response_type", "code") != "code":
        raise _Refused("unsupported_response_type", "Only response_type=code is supported.")
    validator = oauth2_settings.OAUTH2_VALIDATOR_CLASS()
    scopes = scope_to_list(params.get("scope") or "") or list(
        validator.get_default_scopes(application.client_id, oauth_request)
    )
    if not validator.validate_scopes(application.client_id, scopes, application, oauth_request):
        raise _Refused("invalid_scope", "A scope this app may not ask for.")
    if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
        raise _Refused(
            "invalid_request",
            "PKCE with S256 is required.",
            reason="pkce_plain" if params.get("code_challenge") else "pkce_missing",
        )
    if not PKCE_VALUE.fullmatch(params["code_challenge"]):
        raise _Refused("invalid_request", "Bad code_challenge.", reason="pkce_challenge_invalid")
    nonce = params.get("nonce", "")
    if len(nonce) > nonce_max_length():
        raise _Refused("invalid_request", "The nonce is too long.", reason="nonce_too_long")
    # What /authorize would show the person a page for (views._authorize): consent. Not
    # ``offline_access``: a first-party app's administrator granted it (the module's docstring).
    prompt = set(params.get("prompt", "").split())
    if application.require_consent or "consent" in prompt:
        raise _Refused(
            "redirect_to_web",
            "This needs the person's consent: use /authorize in the browser.",
            status=403,  # draft §5.2.2.1
            reason="consent_required",
        )
    wanted = [value for value in params.get("acr_values", "").split() if value in set(Acr)]
    subject, username = _hinted(params)
    ceremonies = Ceremonies()
    policy = policy_for(request)
    options = do_begin_sign_in(
        ceremonies,
        username=username,
        policy=policy,
        kind=CeremonyKind.APP_SIGN_IN,
        context={
            "client_id": application.client_id,
            "scopes": scopes,
            "code_challenge": params["code_challenge"],
            "nonce": nonce,
            "acr": wanted,
            "subject": subject,
        },
    )
    # Discoverable, without an id_token_hint: no credential list (Credential Manager and
    # AuthenticationServices offer the person's passkeys for the RP ID).
    if not options.get("allowCredentials"):
        options.pop("allowCredentials", None)
    auth_session, _expires_at = ceremonies.issued[CeremonyKind.APP_SIGN_IN]
    return oauth_json(
        {
            "error": "insufficient_authorization",
            "error_description": "Sign in with a passkey: send its response with auth_session.",
            "auth_session": auth_session,
            "passkey_options": options,
        },
        403,  # draft §5.2.2.1: insufficient_authorization is answered 403
    )


def _hinted(params: dict[str, str]) -> tuple[str, str | None]:
    """An ``id_token_hint``, verified as /authorize verifies it (``views.hint_claims``): the
    ``sub`` the sign-in must be (the second request refuses anyone else's passkey) and, when
    the sign-in it was issued in names them, that person's username, whose passkeys alone are
    offered (``allowCredentials``). ``("", None)`` without a hint; one that is not our ID
    token is ``invalid_request``, as at /authorize."""
    hint = params.get("id_token_hint")
    if not hint:
        return "", None
    claims = hint_claims(hint)
    subject = claims.get("sub") if claims is not None else None
    if not isinstance(subject, str) or not subject:
        raise _Refused("invalid_request", "Bad id_token_hint.", reason="id_token_hint_invalid")
    sid = claims.get("sid") if claims is not None else None
    sign_in = (
        AppSignIn.objects.filter(sid=sid).select_related("user").first()
        if isinstance(sid, str) and sid
        else None
    )
    if sign_in is None or subject_of(sign_in.user) != subject:
        return subject, None  # nobody to offer passkeys of: the second request still checks
    return subject, sign_in.user.username


# --- The second request: the passkey's response, and the code --------------------------------


@dataclass(frozen=True)
class _AuthorizationRequest:
    """What the first request asked for, as its ``auth_session`` carries it."""

    client_id: str
    scopes: list[str]
    code_challenge: str
    nonce: str
    acr: list[Acr]
    subject: str  # the id_token_hint's sub, or ""

    @classmethod
    def of(cls, taken: TakenCeremony) -> _AuthorizationRequest:
        context = taken.context
        try:
            scopes, acr = context["scopes"], context["acr"]
            found = cls(
                client_id=str(context["client_id"]),
                scopes=[str(scope) for scope in scopes],
                code_challenge=str(context["code_challenge"]),
                nonce=str(context["nonce"]),
                acr=[Acr(value) for value in acr],
                subject=str(context.get("subject") or ""),
            )
        except (KeyError, TypeError, ValueError):
            raise _Refused("invalid_session", "The auth_session is not valid.") from None
        return found


def _asked_in(token: str) -> _AuthorizationRequest:
    """The ``auth_session``, checked (signature, kind, not expired), not used up yet: else
    ``invalid_session``, nothing stored."""
    try:
        taken = open_pending(
            Ceremonies({CeremonyKind.APP_SIGN_IN: token}), CeremonyKind.APP_SIGN_IN
        )
    except errors.ChallengeMissing:
        raise _Refused("invalid_session", "The auth_session is not valid.") from None
    if taken.expires_at.timestamp() <= clock.now():
        raise _Refused(
            "invalid_session", "The auth_session has expired.", reason="auth_session_expired"
        )
    return _AuthorizationRequest.of(taken)


def _credential(params: dict[str, str]) -> dict[str, Any]:
    """``passkey_response``: the credential's ``toJSON()`` (AuthenticationResponseJSON)."""
    raw = params.get("passkey_response")
    if not raw:
        raise _Refused("invalid_request", "passkey_response is missing.")
    try:
        credential = parse_json(raw.encode("utf-8"))
    except errors.MalformedRequest:
        raise _Refused("invalid_request", "passkey_response is not JSON.") from None
    if not isinstance(credential, dict):
        raise _Refused("invalid_request", "passkey_response is not a JSON object.")
    return credential


def _origin_of(credential: dict[str, Any]) -> str:
    """The origin the platform put in clientDataJSON, for the audit log ("" if unreadable)."""
    try:
        return str(ceremony.parse_authentication_response(credential).client_data.origin)[:200]
    except errors.ThresholdError:
        return ""


def _finish(
    request: HttpRequest,
    core: Any,
    params: dict[str, str],
    application: Application,
    oauth_request: OAuthRequest,
) -> HttpResponse:
    asked = _asked_in(params["auth_session"])
    if asked.client_id != application.client_id:
        raise _Refused(
            "invalid_session",
            "The auth_session was issued to another client.",
            reason="auth_session_client_mismatch",
        )
    credential = _credential(params)
    origin = audit_origin(request)
    sid = secrets.token_urlsafe(24)

    def session_for(signed_in: SignedIn) -> Session:
        # Once the signature verified, before the session is written: the app's own rules.
        # A refusal here is the sign-in's (audited with its reason, the challenge used up).
        if asked.subject and subject_of(signed_in.user) != asked.subject:
            # Answered as any failed verification: it does not tell whose passkey it was.
            raise HintMismatch("not the person the id_token_hint names")
        if not may_use(application, signed_in.user):
            raise errors.AppNotAssigned(application.client_id)
        acr = signed_in.assurance.acr
        if asked.acr and not any(acr is not None and acr in SATISFIES[w] for w in asked.acr):
            raise errors.AcrUnmet(f"{acr or 'none'} for {' '.join(asked.acr)}")
        return new_signed_in_session(
            signed_in.user,
            origin,
            signed_in.assurance,
            user_verified=signed_in.user_verified,
            credential=signed_in.passkey_id,
            extra={
                SID: sid,
                SIGN_IN_APP: application.name,
                SIGN_IN_APP_CLIENT: application.client_id,
            },
        )

    refusal: errors.ThresholdError | None = None
    try:
        # The sign-in, its session, the code and its AppSignIn: one transaction. A refused
        # sign-in commits what the action keeps of it (the used challenge, the audit row).
        with transaction.atomic():
            try:
                signed_in = do_finish_sign_in(
                    Ceremonies({CeremonyKind.APP_SIGN_IN: params["auth_session"]}),
                    credential,
                    origin,
                    policy=policy_for(request),
                    session_for=session_for,
                    kind=CeremonyKind.APP_SIGN_IN,
                )
            except errors.ThresholdError as error:
                refusal = error
            else:
                code = _issue(
                    request,
                    core,
                    oauth_request=oauth_request,
                    application=application,
                    asked=asked,
                    signed_in=signed_in,
                    sid=sid,
                )
                _audit_authorized(origin, application, asked, signed_in, credential)
    except OAuthToolkitError as error:
        raise _Refused(error.oauthlib_error.error, error.oauthlib_error.description or "") from None
    except IntegrityError:
        # The app was removed meanwhile (another server's kept copy, sso/appcache.py).
        raise _Refused(
            "invalid_client", "Client authentication failed.", status=401, reason="app_removed"
        ) from None
    if refusal is not None:
        raise _refusal_of(refusal, application)
    return oauth_json({"authorization_code": code})


def _refusal_of(error: errors.ThresholdError, application: Application) -> _Refused:
    """How a refused sign-in is answered; the action audited it with its reason."""
    if isinstance(error, errors.ChallengeMissing | errors.ChallengeExpired):
        # Used before (a replay), or expired while it was being sent.
        return _Refused("invalid_session", "The auth_session is not valid.", audited=False)
    if isinstance(error, errors.AppNotAssigned):
        entry = catalog.CATALOG["app_not_allowed"]
        return _Refused("access_denied", entry.message, audited=False)
    if isinstance(error, errors.AcrUnmet):
        return _Refused(
            "unmet_authentication_requirements",
            "This passkey does not meet the acr_values asked for.",
            audited=False,
        )
    # Whatever failed (the signature, the origin, the account, the policy): one answer.
    entry = catalog.entry_for(errors.CeremonyError(), Surface.AUTHENTICATION)
    return _Refused("access_denied", f"{entry.title}: {entry.message}", audited=False)


def _issue(
    request: HttpRequest,
    core: Any,
    *,
    oauth_request: OAuthRequest,
    application: Application,
    asked: _AuthorizationRequest,
    signed_in: SignedIn,
    sid: str,
) -> str:
    """A code through DOT's grant, as /authorize issues one (``views.issue_code``): no
    redirect URI was named (``AppSignIn.redirect_uri_named`` False), so ``/token`` takes the
    code without one whatever the app's registered URIs are (the validator's
    ``get_default_redirect_uri``). The grant keeps the app's first registered URI, if any:
    DOT's ``default_redirect_uri`` raises for an app with several."""
    session = signed_in.session
    assert session is not None  # noqa: S101 - session_for always gives one
    data = session.get_decoded()
    facts = SessionFacts(
        sid=sid,
        auth_time=int(data[SIGNED_IN_AT]),
        amr=[str(value) for value in signed_in.assurance.amr],
        acr="" if signed_in.assurance.acr is None else str(signed_in.assurance.acr),
    )
    oauth_request.response_type = "code"
    oauth_request.redirect_uri = next(iter(application.redirect_uris.split()), "")
    oauth_request.using_default_redirect_uri = True
    oauth_request.code_challenge = asked.code_challenge
    oauth_request.code_challenge_method = "S256"
    oauth_request.nonce = asked.nonce or None
    oauth_request.claims = None
    oauth_request.state = None
    credentials = {
        "request": oauth_request,
        "redirect_uri": oauth_request.redirect_uri,
        FACTS: facts,
    }
    params = dict(issue_code(core, request, asked.scopes, credentials, user=signed_in.user))
    return params["code"]


def _audit_authorized(
    origin: Origin,
    application: Application,
    asked: _AuthorizationRequest,
    signed_in: SignedIn,
    credential: dict[str, Any],
) -> None:
    """``sso.authorized``, as /authorize records it, naming the route and the ceremony's
    origin: an app's (configured) or a browser's, which is accepted too."""
    ceremony_origin = _origin_of(credential)
    insert_audit(
        [
            AuditRow(
                at=clock.now_datetime(),
                action=Action.SSO_AUTHORIZED,
                origin=origin,
                actor=signed_in.user,
                subject=signed_in.user,
                detail={
                    "app": application.client_id,
                    "scopes": asked.scopes,
                    "acr": "" if signed_in.assurance.acr is None else str(signed_in.assurance.acr),
                    "endpoint": _ENDPOINT,
                    "ceremony_origin": ceremony_origin,
                    "app_origin": ceremony_origin in settings.THRESHOLD.rp.app_origins,
                },
            )
        ]
    )
