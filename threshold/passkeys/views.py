"""Sign-in with a passkey: the JSON half of the ceremony (the page is threshold.sessions')."""

from __future__ import annotations

import math

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_POST

from threshold.core import errors
from threshold.core.catalog import Surface
from threshold.passkeys.actions import do_begin_sign_in, do_finish_sign_in
from threshold.passkeys.http import ceremonies, read_credential
from threshold.passkeys.limits import options_wait
from threshold.policy.access import policy_for
from threshold.sessions.actions import sign_in, with_the_session
from threshold.sessions.flow import Flow, check_flow
from threshold.web.http import (
    audit_origin,
    client_ip,
    failed,
    ok,
    optional_string,
    read_json_object,
    safe_next,
)


@require_POST
def sign_in_options(request: HttpRequest) -> JsonResponse:
    """Discoverable options for ``{}``, allowCredentials options for ``{"username": ...}``.

    Only for a sign-in page served less than flow_idle_timeout_minutes ago.
    """
    wait = options_wait(client_ip(request))
    if wait:
        response = failed(
            errors.TooManyRequests(f"options again in {wait:.1f} s"), Surface.AUTHENTICATION
        )
        response["Retry-After"] = str(math.ceil(wait))
        return response
    try:
        policy = policy_for(request)
        check_flow(request, Flow.SIGN_IN, policy=policy)
        data = read_json_object(request)
        username = optional_string(data, "username")
        options = do_begin_sign_in(
            ceremonies(request),
            username=username.strip() if username else None,
            policy=policy,
        )
    except errors.ThresholdError as error:
        return failed(error, Surface.AUTHENTICATION)
    return ok({"publicKey": options})


@require_POST
def sign_in_result(request: HttpRequest) -> JsonResponse:
    try:
        # The sign-in and its session in one transaction (``with_the_session``): a database
        # failing at the session neither leaves a sign-in audited that did not happen nor
        # ends the session this one replaces without a word to its apps.
        with_the_session(
            request,
            lambda: do_finish_sign_in(
                ceremonies(request),
                read_credential(request),
                audit_origin(request),
                policy=policy_for(request),
            ),
            lambda signed_in: sign_in(
                request,
                signed_in.user,
                signed_in.assurance,
                user_verified=signed_in.user_verified,
                credential=signed_in.passkey_id,
            ),
        )
    except errors.ThresholdError as error:
        return sign_in_refused(error)
    return ok({"redirect": safe_next(request)})


def sign_in_refused(error: errors.ThresholdError) -> JsonResponse:
    """A refused sign-in's answer, in the catalog's words."""
    # The passkey the browser chose is not its account's (removed, or never registered
    # here): the page asks the browser to hide it (signalUnknownCredential).
    extra = {"unknownCredential": True} if error.signal_unknown else None
    return failed(error, Surface.AUTHENTICATION, extra)
