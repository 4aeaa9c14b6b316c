"""The enrollment or recovery link: a page that explains passkeys, then creates one."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.text import get_text_list
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from threshold.accounts.methods import MethodKind, count_usable_of_kind
from threshold.core import catalog, errors
from threshold.core.catalog import Surface
from threshold.enrollment.actions import (
    RECOVERY,
    access_invite,
    do_begin_enrollment,
    do_finish_enrollment,
    get_invitee_id,
)
from threshold.enrollment.models import EnrollmentInvite
from threshold.fallback.actions import fallback_refusal, recovery_removes
from threshold.passkeys.actions import passkey_assurance
from threshold.passkeys.http import ceremonies, read_credential
from threshold.passkeys.models import Passkey
from threshold.policy.access import policy_for
from threshold.sessions.actions import sign_in, sign_out, with_the_session
from threshold.sessions.flow import Flow, check_flow, issue_flow_token
from threshold.sessions.middleware import forget_signed_in
from threshold.web.http import (
    SET_UP_CATALOG,
    audit_origin,
    failed,
    ok,
    read_json_object,
    see_other,
    sets_up,
    url_to,
)


def _unusable_link(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "web/problem.html",
        {"entry": catalog.CATALOG["invite_unusable"]},
        status=404,
    )


def _someone_else_signed_in(request: HttpRequest, invite: EnrollmentInvite) -> bool:
    """This browser is signed in as a person other than the link's: using the link would
    sign them out, which they are asked first (``switch_account.html``)."""
    return bool(request.user.is_authenticated and request.user.pk != invite.user_id)


def _refuse_switching_unasked(request: HttpRequest, token: str) -> None:
    """For the ceremony's requests: a browser signed in as someone else since the page was
    served is refused as a stale page; "Start again" reloads it, which asks first. (A link
    that cannot be used is the ceremony's to refuse.)"""
    if not request.user.is_authenticated:
        return
    invitee_id = get_invitee_id(token)
    if invitee_id is not None and invitee_id != request.user.pk:
        raise errors.FlowExpired("signed in as someone else since the link's page was served")


@sets_up
@require_http_methods(["GET", "POST"])
@never_cache
def enroll_page(request: HttpRequest, token: str) -> HttpResponse:
    """The link's page. Signed in as someone else, it first says who is signed in and that
    continuing signs them out; continuing is a POST here, which signs out and comes back."""
    try:
        invite = access_invite(token, audit_origin(request))
    except errors.InviteUnusable:
        return _unusable_link(request)
    recovery = invite.purpose == RECOVERY
    if request.method == "POST":
        if _someone_else_signed_in(request, invite):
            sign_out(request)
        again = see_other(url_to("enrollment:enroll", token))
        forget_signed_in(again)
        return again
    if _someone_else_signed_in(request, invite):
        response = render(
            request,
            "enrollment/switch_account.html",
            {"invitee": invite.user, "token": token, "recovery": recovery},
        )
        # The token is in this page's URL: a Referer gives only the origin. Not no-referrer,
        # with which browsers send "Origin: null" with the form, which the CSRF check refuses.
        response["Referrer-Policy"] = "strict-origin"
        return response
    policy = policy_for(request)

    def keeps(kind: MethodKind) -> int:
        """What a recovery leaves working: those the policy lets the person sign in with."""
        return count_usable_of_kind(invite.user, policy, kind) if recovery else 0

    response = render(
        request,
        "enrollment/enroll.html",
        {
            "invitee": invite.user,
            "token": token,
            "recovery": recovery,
            "recovery_removes": (
                get_text_list(recovery_removes(invite.user), "and") if recovery else ""
            ),
            "fallback_allowed": fallback_refusal(invite.user, policy) is None,
            "keeps_passkeys": keeps(MethodKind.PASSKEY),
            "keeps_devices": keeps(MethodKind.DEVICE_APP),
            "catalog": SET_UP_CATALOG,
            "flow": issue_flow_token(Flow.ENROLLMENT),
        },
    )
    # The token is in this page's URL: never send it on as a Referer.
    response["Referrer-Policy"] = "no-referrer"
    return response


@sets_up
@require_POST
def enroll_options(request: HttpRequest, token: str) -> JsonResponse:
    try:
        read_json_object(request)  # no parameters, but bad bodies are refused like elsewhere
        _refuse_switching_unasked(request, token)
        options = do_begin_enrollment(
            ceremonies(request),
            token,
            audit_origin(request),
            # Only from a page served less than flow_idle_timeout_minutes ago.
            check_page=lambda: check_flow(request, Flow.ENROLLMENT),
            policy=policy_for(request),
        )
    except errors.ThresholdError as error:
        return failed(error, Surface.REGISTRATION)
    return ok({"publicKey": options})


@sets_up
@require_POST
def enroll_result(request: HttpRequest, token: str) -> JsonResponse:
    def signed_in(passkey: Passkey) -> None:
        # A new session key either way; a recovery has ended all the others. The registration
        # verified the person (UV) exactly when the passkey says so: then the new session
        # counts as just verified, and "Verify it's you" does not ask again straight away.
        verified = passkey.uv_initialized
        sign_in(
            request,
            passkey.user,
            passkey_assurance(passkey, user_verified=verified),
            user_verified=verified,
            credential=passkey.pk,
        )

    try:
        _refuse_switching_unasked(request, token)
        # The passkey, the link used up and the new session: one transaction, so that a
        # database failing at the session leaves the link for a retry.
        with_the_session(
            request,
            lambda: do_finish_enrollment(
                ceremonies(request), token, read_credential(request), audit_origin(request)
            ),
            signed_in,
        )
    except errors.ThresholdError as error:
        return failed(error, Surface.REGISTRATION)
    return ok({"redirect": url_to("selfservice:home", query={"enrolled": "1"})})
