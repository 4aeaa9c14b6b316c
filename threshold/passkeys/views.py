"""Sign-in with a passkey: the JSON half of the ceremony (the page is in web)."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from threshold.core import errors
from threshold.passkeys.actions import do_begin_sign_in, do_finish_sign_in
from threshold.policy.access import policy_for
from threshold.web.flow import SIGN_IN, check_flow
from threshold.web.http import (
    audit_origin,
    ensure_session_key,
    failed,
    ok,
    optional_string,
    read_body,
    read_json_object,
)
from threshold.web.middleware import sign_in


@require_POST
def sign_in_options(request: HttpRequest) -> JsonResponse:
    """Discoverable options for ``{}``, allowCredentials options for ``{"username": ...}``.

    Only for a sign-in page served less than flow_idle_timeout_minutes ago.
    """
    try:
        policy = policy_for(request)
        check_flow(request, SIGN_IN, policy=policy)
        data = read_json_object(request)
        username = optional_string(data, "username")
        options = do_begin_sign_in(
            ensure_session_key(request),
            username=username.strip() if username else None,
            policy=policy,
        )
    except errors.CeremonyError as error:
        return failed(error, "authentication")
    return ok({"publicKey": options})


@require_POST
def sign_in_result(request: HttpRequest) -> JsonResponse:
    outcome = do_finish_sign_in(
        request.session.session_key,
        read_body(request),
        audit_origin(request),
        policy=policy_for(request),
    )
    if outcome.error is not None:
        # The passkey belongs to no account (removed, or never registered
        # here): the page asks the browser to hide it (signalUnknownCredential).
        extra = {"unknownCredential": True} if outcome.unknown_credential else None
        return failed(outcome.error, "authentication", extra)
    sign_in(request, outcome.user, user_verified=outcome.user_verified)
    return ok({"redirect": safe_next(request)})


def safe_next(request: HttpRequest) -> str:
    target = request.GET.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return "/"
