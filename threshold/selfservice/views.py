"""Home and Settings: the person's name, their Security Methods and their sessions.

Adding or removing a method needs a recent step-up (``threshold.sessions.stepup``):
a passkey verification with user verification within the policy's window (five
minutes by default), either the sign-in itself or "Verify it's you" on /settings/verify.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from threshold.accounts.actions import do_change_display_name
from threshold.accounts.methods import count_sign_in_methods, settings_groups
from threshold.accounts.models import User
from threshold.core import catalog, errors
from threshold.core.catalog import Surface, status_for
from threshold.core.encoding import b64url_encode
from threshold.core.names import DISPLAY_NAME_MAX_LENGTH, NICKNAME_MAX_LENGTH
from threshold.core.policy import Policy
from threshold.core.vocabulary import Attachment, Hint
from threshold.devices.actions import device_app_refusal, do_rename_device
from threshold.devices.methods import count_usable_devices
from threshold.fallback.actions import fallback_refusal, has_fallback
from threshold.groups.access import rules_of
from threshold.passkeys.access import access_own_passkey, list_passkeys, not_allowed_passkey_ids
from threshold.passkeys.actions import (
    do_begin_registration,
    do_begin_step_up,
    do_finish_registration,
    do_finish_sign_in,
    do_remove_passkey,
    do_rename_passkey,
    is_last_usable_passkey,
)
from threshold.passkeys.http import ceremonies, read_credential
from threshold.passkeys.models import Passkey
from threshold.passkeys.pending import Purpose
from threshold.policy.access import policy_for
from threshold.sessions.access import describe_sign_in_method, list_active_sessions
from threshold.sessions.actions import with_the_session
from threshold.sessions.flow import Flow, check_flow, issue_flow_token
from threshold.sessions.stepup import (
    mark_verified,
    opens_without_a_passkey,
    recently_verified,
    return_to,
    verify_first,
)
from threshold.sessions.store import SIGN_IN_METHOD
from threshold.sso.access import list_my_apps, list_signed_in_apps
from threshold.web.http import (
    SET_UP_CATALOG,
    SIGN_IN_CATALOG,
    Done,
    audit_origin,
    failed,
    json_login_required,
    needs_sign_in,
    ok,
    on_settings,
    optional_string,
    read_json_object,
    see_other,
    sets_up,
    settings_problem,
    url_to,
)

ADDING = Purpose.ADD

# What each choice on "Set up another" asks the browser for (WebAuthn L3 hints).
_DEVICES: dict[str, tuple[Attachment, tuple[Hint, ...]]] = {
    "this-device": (Attachment.PLATFORM, (Hint.CLIENT_DEVICE,)),
    "phone": (Attachment.CROSS_PLATFORM, (Hint.HYBRID,)),
    "security-key": (Attachment.CROSS_PLATFORM, (Hint.SECURITY_KEY,)),
}

# Confirmations shown at the top of Settings after a change (?done=...).
_DONE: dict[str, str] = {
    Done.RENAMED: "Nickname saved.",
    Done.REMOVED: "The passkey was removed.",
    Done.NAME_CHANGED: "Your name was saved.",
    Done.SESSIONS_ENDED: "Your other sessions were signed out.",
    Done.FALLBACK_REMOVED: "Your password and authenticator app were removed.",
    Done.FALLBACK_SET_UP: "Your password and authenticator app are set up. If you did not see "
    "your recovery codes, make new ones.",
    Done.DEVICE_ADDED: "Threshold Verify is set up on your device.",
    Done.DEVICE_RENAMED: "Nickname saved.",
    Done.DEVICE_REMOVED: "The device was removed. Threshold Verify on it no longer works.",
    Done.SIGNED_OUT_OF_APP: "You were signed out of the app.",
}


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)  # noqa: S101 - needs_sign_in
    return request.user


# --- Home --------------------------------------------------------------------------------------


@require_GET
@never_cache
@needs_sign_in()
def home(request: HttpRequest) -> HttpResponse:
    passkeys = list(list_passkeys(_user(request)))
    return render(
        request,
        "selfservice/home.html",
        {
            "passkeys": passkeys,
            "not_allowed": not_allowed_passkey_ids(passkeys, policy_for(request)),
            "just_enrolled": request.GET.get("enrolled") == "1",
            # In the words of Settings' sessions list.
            "signed_in_with": describe_sign_in_method(request.session.get(SIGN_IN_METHOD, "")),
            "my_apps": list(list_my_apps(_user(request))),
        },
    )


# --- Settings ----------------------------------------------------------------------------------


@require_GET
@never_cache
@needs_sign_in()
def settings_page(request: HttpRequest) -> HttpResponse:
    return _render_settings(request)


def _render_settings(
    request: HttpRequest,
    *,
    error: catalog.CatalogEntry | None = None,
    error_passkey_id: int | None = None,
    error_device_id: str = "",
    name_refused: bool = False,
    typed: str = "",
    status: int = 200,
) -> HttpResponse:
    user = _user(request)
    policy = policy_for(request)
    passkeys = list(list_passkeys(user))
    added = _added_passkey(request, passkeys)
    done = _DONE.get(request.GET.get("done", ""))
    sessions = list_active_sessions(user, request.session.session_key)
    rp = settings.THRESHOLD.rp
    context: dict[str, Any] = {
        "added": added,
        "done": done,
        "error": error,
        "error_passkey_id": error_passkey_id,
        "error_device_id": error_device_id,
        "name_refused": name_refused,
        # What the person typed in the refused field, shown again for them to correct.
        "typed": typed,
        "readiness": _readiness(user, passkeys, policy),
        # Security Methods: a group per kind of sign-in method (threshold.accounts.methods).
        "method_groups": settings_groups(user, policy),
        "sessions": sessions,
        "signed_in_apps": list(list_signed_in_apps(user)),
        "offer_sign_out_others": (added is not None or request.GET.get("done") == Done.REMOVED)
        and len(sessions) > 1,
        "nickname_max_length": NICKNAME_MAX_LENGTH,
        "display_name_max_length": DISPLAY_NAME_MAX_LENGTH,
        # For the WebAuthn Signal API (settings.js): password managers hide
        # passkeys no longer listed, and show the person's current name.
        "signals": {
            "rpId": rp.id,
            "userId": b64url_encode(bytes(user.user_handle)),
            "allAcceptedCredentialIds": [b64url_encode(bytes(p.credential_id)) for p in passkeys],
            "name": user.username,
            "displayName": user.display_name,
            "userDetailsChanged": request.GET.get("done") == Done.NAME_CHANGED,
        },
    }
    return render(request, "selfservice/settings.html", context, status=status)


def _added_passkey(request: HttpRequest, passkeys: list[Passkey]) -> Passkey | None:
    """The passkey just set up (?added=ID), to be named; only ever one of the person's own."""
    wanted = request.GET.get("added", "")
    return next((p for p in passkeys if str(p.pk) == wanted), None)


def _readiness(user: User, passkeys: list[Passkey], policy: Policy) -> dict[str, Any]:
    """A recommendation when losing one device or account would lock the person out: another
    passkey, or where the policy allows no more, another way to sign in it offers them."""
    room = len(passkeys) < policy.passkey_limit
    if len(passkeys) == 1 and count_sign_in_methods(user) == 1:
        if room:
            return {"state": "single"}
        other_ways = []
        if device_app_refusal(policy, rules_of(user)) is None:
            other_ways.append("Threshold Verify on another device")
        if fallback_refusal(user, policy) is None:
            other_ways.append("a password and authenticator app")
        return {"state": "single-at-limit", "other_ways": other_ways}
    if room and passkeys and all(p.is_synced for p in passkeys):
        return {"state": "only-synced"}
    return {"state": ""}


@require_POST
@needs_sign_in(back=on_settings)
def change_name(request: HttpRequest) -> HttpResponse:
    try:
        do_change_display_name(_user(request), request.POST.get("full_name"), audit_origin(request))
    except errors.NameInvalid as error:
        return _render_settings(
            request,
            error=catalog.entry_for(error, Surface.SETTINGS),
            name_refused=True,
            typed=_as_typed(request.POST.get("full_name")),
            status=status_for(error),
        )
    return see_other(url_to("selfservice:settings", query={"done": Done.NAME_CHANGED}))


# --- Step-up: "Verify it's you" ----------------------------------------------------------------


@require_GET
@never_cache
@needs_sign_in()
def verify_page(request: HttpRequest) -> HttpResponse:
    back = return_to(request)
    return render(
        request,
        "selfservice/verify.html",
        {
            "catalog": SIGN_IN_CATALOG,
            "entry": catalog.CATALOG["verification_required"],
            "next": back.target,
            # Where they came from: a page of the admin portal, or Settings.
            "back": back,
            "push_url": _push_step_up_url(request, back.target),
            "fallback_url": _fallback_step_up_url(request, back.target),
            # No passkey yet: no passkey ceremony (an empty list would ask for anyone's).
            "has_passkeys": _user(request).passkeys.exists(),
            "window_minutes": max(1, policy_for(request).step_up_max_age_seconds // 60),
            "flow": issue_flow_token(Flow.STEP_UP),
        },
    )


@require_POST
@json_login_required
def verify_options(request: HttpRequest) -> JsonResponse:
    try:
        policy = policy_for(request)
        check_flow(request, Flow.STEP_UP, policy=policy)
        read_json_object(request)
        options = do_begin_step_up(ceremonies(request), _user(request), policy=policy)
    except errors.ThresholdError as error:
        return failed(error, Surface.AUTHENTICATION)
    return ok({"publicKey": options})


@require_POST
@json_login_required
def verify_result(request: HttpRequest) -> JsonResponse:
    try:
        # The step-up and the session's note of it in one transaction (``with_the_session``).
        with_the_session(
            request,
            lambda: do_finish_sign_in(
                ceremonies(request),
                read_credential(request),
                audit_origin(request),
                step_up_user=_user(request),
                policy=policy_for(request),
            ),
            lambda _: mark_verified(request),
        )
    except errors.ThresholdError as error:
        return failed(error, Surface.AUTHENTICATION)
    return ok({"redirect": return_to(request).target})


# --- Set up another ----------------------------------------------------------------------------


@sets_up
@require_GET
@never_cache
@needs_sign_in()
def add_page(request: HttpRequest) -> HttpResponse:
    user = _user(request)
    limit = policy_for(request).passkey_limit
    at_limit = user.passkeys.count() >= limit
    # At the limit, said at once: verifying first would only lead to the same refusal.
    if not at_limit and not recently_verified(request, allow_fallback=True):
        return verify_first(reverse("selfservice:add"))
    return render(
        request,
        "selfservice/add.html",
        {
            "catalog": SET_UP_CATALOG,
            "at_limit": at_limit,
            # Their only way in cannot be removed to make room: a recovery link replaces it.
            "only_way_in": at_limit and count_sign_in_methods(user) == 1,
            "limit_entry": catalog.CATALOG["limit_reached"],
            "passkey_limit": limit,
            "flow": issue_flow_token(Flow.ADD),
        },
    )


@sets_up
@require_POST
@json_login_required
def add_options(request: HttpRequest) -> JsonResponse:
    try:
        data = read_json_object(request)
        device = optional_string(data, "device", 32) or "this-device"
        if device not in _DEVICES:
            raise errors.MalformedRequest(f"device must be one of {', '.join(_DEVICES)}")
        if not recently_verified(request, allow_fallback=True):
            raise errors.StepUpRequired()
        check_flow(request, Flow.ADD)
        attachment, hints = _DEVICES[device]
        options = do_begin_registration(
            ceremonies(request),
            _user(request),
            purpose=ADDING,
            authenticator_attachment=attachment,
            hints=hints,
            policy=policy_for(request),
        )
    except errors.ThresholdError as error:
        return failed(error, Surface.REGISTRATION)
    return ok({"publicKey": options})


@sets_up
@require_POST
@json_login_required
def add_result(request: HttpRequest) -> JsonResponse:
    person = _user(request)
    # Checked again as the passkey is stored, not only when the ceremony began.
    if not recently_verified(request, allow_fallback=True):
        return failed(errors.StepUpRequired(), Surface.REGISTRATION)

    def same_person(user: User, context: dict[str, Any]) -> None:
        # The ceremony is bound to this session; the session to this person.
        if user.pk != person.pk:
            raise errors.ChallengeMissing("the ceremony was begun by another person")

    try:
        passkey = do_finish_registration(
            ceremonies(request),
            read_credential(request),
            audit_origin(request),
            purpose=ADDING,
            before_save=same_person,
        )
    except errors.ThresholdError as error:
        return failed(error, Surface.REGISTRATION)
    # No fragment: Settings opens at its top, on "Your new passkey is ready" with the
    # nickname field focused (settings.js); a #passkey-N would scroll past it.
    return ok({"redirect": url_to("selfservice:settings", query={"added": str(passkey.pk)})})


# --- Rename and remove -------------------------------------------------------------------------

# Longer than any field's maxlength: what a browser can have typed.
_TYPED_MAX_LENGTH = 1000


def _as_typed(value: str | None) -> str:
    """A refused field's value to show again: its printable characters (no controls or
    text-direction marks), no longer than a browser lets anyone type."""
    return "".join(ch for ch in (value or "") if ch.isprintable())[:_TYPED_MAX_LENGTH]


@require_POST
@needs_sign_in(back=on_settings)
def rename(request: HttpRequest, passkey_id: int) -> HttpResponse:
    try:
        passkey = do_rename_passkey(
            _user(request), passkey_id, request.POST.get("nickname"), audit_origin(request)
        )
    except errors.SecurityMethodNotFound as error:
        return settings_problem(request, error)
    except errors.NameInvalid as error:
        return _render_settings(
            request,
            error=catalog.entry_for(error, Surface.SETTINGS),
            error_passkey_id=passkey_id,
            typed=_as_typed(request.POST.get("nickname")),
            status=status_for(error),
        )
    return see_other(
        url_to(
            "selfservice:settings", query={"done": Done.RENAMED}, fragment=f"passkey-{passkey.pk}"
        )
    )


@require_POST
@never_cache
@needs_sign_in(back=on_settings)
def rename_device(request: HttpRequest, device_id: str) -> HttpResponse:
    """A Threshold Verify device's nickname, as a passkey's: refused, Settings again with the
    device's form open, what was typed in it and the error tied to it."""
    try:
        do_rename_device(
            _user(request), device_id, request.POST.get("nickname"), audit_origin(request)
        )
    except errors.NameInvalid as error:
        return _render_settings(
            request,
            error=catalog.entry_for(error, Surface.SETTINGS),
            error_device_id=device_id,
            typed=_as_typed(request.POST.get("nickname")),
            status=status_for(error),
        )
    except errors.ThresholdError as error:
        return settings_problem(request, error)
    return see_other(
        url_to("selfservice:settings", query={"done": Done.DEVICE_RENAMED}, fragment="device-app")
    )


@require_http_methods(["GET", "POST"])
@never_cache
@needs_sign_in()
def remove(request: HttpRequest, passkey_id: int) -> HttpResponse:
    user = _user(request)
    try:
        passkey = access_own_passkey(user, passkey_id)
    except errors.SecurityMethodNotFound as error:
        return settings_problem(request, error)
    if not recently_verified(request):
        return verify_first(reverse("selfservice:remove", args=[passkey.pk]))
    policy = policy_for(request)
    last = is_last_usable_passkey(user, passkey, policy)
    refused: errors.LastSignInMethod | None = None
    if request.method == "POST":
        try:
            do_remove_passkey(user, passkey.pk, audit_origin(request))
        except errors.SecurityMethodNotFound as error:
            return settings_problem(request, error)
        except errors.LastSignInMethod as error:
            last, refused = True, error
        else:
            return see_other(url_to("selfservice:settings", query={"done": Done.REMOVED}))
    return render(
        request,
        "selfservice/remove.html",
        {
            "passkey": passkey,
            "last": last,
            "last_entry": catalog.CATALOG["last_method"],
            # The person's other passkeys are there, but the policy refuses them all.
            "others_not_allowed": last and user.passkeys.exclude(pk=passkey.pk).exists(),
        },
        status=status_for(refused) if refused else 200,
    )


# --- Step-up with Threshold Verify ----------------------------------------------------------------


def _fallback_step_up_url(request: HttpRequest, target: str) -> str:
    """Where "Verify with password and code" posts on "Verify it's you", or "" when it is not
    offered: as the push, only where such a verification opens the page (adding a passkey),
    and for someone who set the fallback up, while the policy and their groups allow it."""
    if not opens_without_a_passkey(target):
        return ""
    user = _user(request)
    if fallback_refusal(user, policy_for(request)) is not None or not has_fallback(user):
        return ""
    return url_to("fallback:step-up", query={"next": target})


def _push_step_up_url(request: HttpRequest, target: str) -> str:
    """Where "Send a push to Threshold Verify" posts on "Verify it's you", or "" when it is
    not offered: only where a push opens the page (adding a passkey, not removing a
    method nor the admin portal: ``stepup.opens_without_a_passkey``), and for someone with
    a device the policy lets sign in (``allow_device_app_sign_in``, and its key)."""
    if not opens_without_a_passkey(target):
        return ""
    if not count_usable_devices(_user(request), policy_for(request)):
        return ""
    return url_to("devices:step-up-push", query={"next": target})
