"""Signing in with a password and a code, the passkey prompt, and setting the fallback up.

Plain HTML forms: no script is needed, and the pages work where WebAuthn does not.
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.password_validation import password_validators_help_texts
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.crypto import constant_time_compare
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from threshold import clock
from threshold.accounts.methods import MethodKind, count_usable_of_kind
from threshold.accounts.models import User
from threshold.core import assurance, catalog, errors, totp
from threshold.core.catalog import Surface, status_for
from threshold.core.names import DISPLAY_NAME_MAX_LENGTH
from threshold.fallback import known
from threshold.fallback.actions import (
    do_check_password,
    do_finish_fallback_sign_in,
    do_regenerate_recovery_codes,
    do_remove_fallback,
    do_set_up_fallback,
    do_snooze_passkey_prompt,
    do_step_up_with_fallback,
    fallback_refusal,
    has_fallback,
    is_last_usable_fallback,
    passkey_prompt_due,
)
from threshold.fallback.forms import SetUpForm, form_text
from threshold.policy.access import policy_for
from threshold.sessions.actions import sign_in, with_the_session
from threshold.sessions.middleware import forget_typed_username, typed_username
from threshold.sessions.stepup import mark_verified, recently_verified, return_to, verify_first
from threshold.sessions.store import SignedInWith
from threshold.web.http import (
    Done,
    audit_origin,
    needs_sign_in,
    on_settings,
    safe_next,
    see_other,
    sets_up,
    settings_problem,
    url_to,
)
from threshold.web.qr import qr_data_uri

# The person whose password was right, waiting for their code (anonymous session),
# and a keyed hash of their password then: a password changed (or the fallback
# set up again) since makes the pending step void.
PENDING_USER = "threshold.fallback.user_id"
PENDING_SINCE = "threshold.fallback.password_at"
PENDING_PASSWORD = "threshold.fallback.password_hash"  # noqa: S105 - a session key
# The authenticator-app secret being set up, until a code from the app confirms it.
PENDING_SECRET = "threshold.fallback.pending_secret"  # noqa: S105 - a session key


def _entry(error: errors.ThresholdError) -> catalog.CatalogEntry:
    return catalog.entry_for(error, Surface.AUTHENTICATION)


# --- Signing in ----------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@never_cache
@sensitive_post_parameters("password")  # kept out of Django's error reports
def password_step(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("selfservice:home")
    policy = policy_for(request)
    # The username typed on the sign-in page, whose "Sign in with a password instead" led
    # here (WCAG 3.3.7: not asked for twice); a POST's own replaces it.
    context: dict[str, Any] = {"username": typed_username(request), "next": safe_next(request)}
    if not policy.allow_password_fallback:
        error: errors.ThresholdError = errors.FallbackNotAllowed()
        context["error"] = _entry(error)
        status = status_for(error) if request.method == "POST" else 200
        return render(request, "fallback/password.html", context, status=status)
    if request.method == "GET":
        return render(request, "fallback/password.html", context)
    username = form_text(request.POST, "username", DISPLAY_NAME_MAX_LENGTH + 50) or ""
    password = form_text(request.POST, "password", settings.THRESHOLD_MAX_PASSWORD_LENGTH)
    context["username"] = username
    try:
        # An absurd password is still a wrong one, checked (and counted) as such. A browser
        # that signed in as this username before is not slowed by strangers' guesses.
        user = do_check_password(
            username,
            password or "",
            audit_origin(request),
            policy,
            browser=known.browser_key(request, username),
        )
    except errors.ThresholdError as error:
        context["error"] = _entry(error)
        return render(request, "fallback/password.html", context, status=status_for(error))
    request.session[PENDING_USER] = user.pk
    request.session[PENDING_SINCE] = clock.now()
    request.session[PENDING_PASSWORD] = user.get_session_auth_hash()
    response = see_other(_with_next(reverse("fallback:code"), request))
    forget_typed_username(response)
    return response


def _with_next(path: str, request: HttpRequest) -> str:
    """``path``, carrying on where the person was going (a checked ``next``)."""
    target = safe_next(request)
    return (
        path if target == reverse("selfservice:home") else f"{path}?{urlencode({'next': target})}"
    )


def _pending_user(request: HttpRequest) -> User | None:
    """The person who gave the right password in this session, if not too long ago."""
    user_id = request.session.get(PENDING_USER)
    since = request.session.get(PENDING_SINCE)
    if not isinstance(user_id, int) or not isinstance(since, int | float):
        return None
    if clock.now() - since > policy_for(request).flow_idle_timeout_minutes * 60:
        return None
    user = User.objects.filter(pk=user_id).first()
    password = request.session.get(PENDING_PASSWORD)
    if user is None or not isinstance(password, str):
        return None
    if not constant_time_compare(password, user.get_session_auth_hash()):
        return None
    return user


# What each way through the fallback proves (threshold.core.assurance): never phishing-resistant.
FALLBACK_ASSURANCE = {
    SignedInWith.PASSWORD_AND_APP: assurance.PASSWORD_AND_APP,
    SignedInWith.PASSWORD_AND_RECOVERY_CODE: assurance.PASSWORD_AND_RECOVERY_CODE,
}


@require_http_methods(["GET", "POST"])
@never_cache
@sensitive_post_parameters("code")  # kept out of Django's error reports
def code_step(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("selfservice:home")
    user = _pending_user(request)
    if user is None:
        # Nobody here gave a password, or it was too long ago: start again.
        return render(
            request,
            "fallback/password.html",
            {"error": catalog.CATALOG["session_expired"], "username": "", "next": "/"},
            status=400 if request.method == "POST" else 200,
        )
    if request.method == "GET":
        return render(request, "fallback/code.html", {})
    policy = policy_for(request)
    prompt_due = False

    def signed_in(method: SignedInWith) -> None:
        nonlocal prompt_due
        for key in (PENDING_USER, PENDING_SINCE, PENDING_PASSWORD):
            request.session.pop(key, None)
        sign_in(request, user, FALLBACK_ASSURANCE[method], method=method)
        mark_verified(request, phishing_resistant=False)
        # Read in the transaction too: nothing that can fail runs once it has committed.
        prompt_due = passkey_prompt_due(user, policy)

    try:
        # The code used up, the attempt released, the audit row and the session: one
        # transaction (``with_the_session``), so that a database failing on the way leaves
        # the code for a retry.
        with_the_session(
            request,
            lambda: do_finish_fallback_sign_in(
                user, form_text(request.POST, "code", 64), audit_origin(request), policy
            ),
            signed_in,
        )
    except errors.AccountError as error:
        # Both factors were right, and the account may not sign in: 403, as for a lock,
        # whatever the category (a deactivated account reads as the generic failure).
        request.session.pop(PENDING_USER, None)
        return render(request, "fallback/code.html", {"error": _entry(error)}, status=403)
    except errors.ThresholdError as error:
        status = status_for(error)
        return render(request, "fallback/code.html", {"error": _entry(error)}, status=status)
    response = (
        see_other(_with_next(reverse("fallback:passkey-prompt"), request))
        if prompt_due
        else see_other(safe_next(request))
    )
    known.remember(request, response, user)
    return response


# --- "Verify it's you" with the password and a code ----------------------------------------------


def _signed_in(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)  # noqa: S101 - needs_sign_in
    return user


def _session_key(request: HttpRequest) -> str:
    """The signed-in session's own key for the throttles (never the session key itself)."""
    return "session:" + hashlib.sha256((request.session.session_key or "").encode()).hexdigest()


def _verify_page(request: HttpRequest, **_: Any) -> str:
    return url_to("selfservice:verify", query={"next": return_to(request).target})


@require_POST
@never_cache
@sensitive_post_parameters("password", "code")  # kept out of Django's error reports
@needs_sign_in(back=_verify_page)
def step_up(request: HttpRequest) -> HttpResponse:
    """ "Verify it's you" with the password and a code (``do_step_up_with_fallback``): as a
    sign-in with them, it opens "Set up another" for the step-up window, nothing else."""
    back = return_to(request)
    policy = policy_for(request)
    try:
        with_the_session(
            request,
            lambda: do_step_up_with_fallback(
                _signed_in(request),
                form_text(request.POST, "password", settings.THRESHOLD_MAX_PASSWORD_LENGTH) or "",
                form_text(request.POST, "code", 64),
                audit_origin(request),
                policy,
                browser=_session_key(request),
            ),
            lambda _: mark_verified(request, phishing_resistant=False),
        )
    except errors.ThresholdError as error:
        context = {
            "error": _entry(error),
            "back": back,
            "fallback_url": url_to("fallback:step-up", query={"next": back.target}),
        }
        return render(request, "fallback/step_up.html", context, status=status_for(error))
    return see_other(back.target)


# --- "Set up a passkey" / "I'll do it later" -----------------------------------------------------


@sets_up
@require_http_methods(["GET", "POST"])
@never_cache
@needs_sign_in()
def passkey_prompt(request: HttpRequest) -> HttpResponse:
    user = request.user
    assert isinstance(user, User)  # noqa: S101 - needs_sign_in
    if request.method == "POST":
        do_snooze_passkey_prompt(user, audit_origin(request))
        return see_other(safe_next(request))
    policy = policy_for(request)
    return render(
        request,
        "fallback/prompt.html",
        {
            "policy": policy,
            "next": safe_next(request),
            # Someone with a passkey elsewhere is here on a device without it.
            "has_passkeys": count_usable_of_kind(user, policy, MethodKind.PASSKEY) > 0,
        },
    )


# --- Settings: set up, new recovery codes, remove ------------------------------------------------


def _settings_user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)  # noqa: S101 - needs_sign_in
    return request.user


@sets_up
@require_http_methods(["GET", "POST"])
@never_cache
@needs_sign_in()
@sensitive_post_parameters("password", "confirm_password", "code")
def set_up(request: HttpRequest) -> HttpResponse:
    user = _settings_user(request)
    refused = _refuse_set_up(request, user)
    if refused is not None:
        return refused
    secret = request.session.get(PENDING_SECRET)
    if not isinstance(secret, str):
        secret = request.session[PENDING_SECRET] = totp.new_secret()
    if request.method == "GET":
        return _set_up_page(request, user, secret)
    form = SetUpForm(user, secret, request.POST, clock.now())
    step = form.confirmed_step
    if not form.is_valid() or step is None:
        return _set_up_page(request, user, secret, form.problems, status=400)

    def kept(_codes: list[str]) -> None:
        # A new password changes the session hash: this session stays signed in,
        # the person's others end (as after any password change).
        update_session_auth_hash(request, user)
        request.session.pop(PENDING_SECRET, None)

    try:
        # With the session in one transaction (``with_the_session``): the recovery codes,
        # shown once, are shown, or nothing was set up.
        codes = with_the_session(
            request,
            lambda: do_set_up_fallback(user, form.password, secret, step, audit_origin(request)),
            kept,
        )
    except errors.MalformedRequest:
        return _already_set_up(request)
    return render(request, "fallback/recovery_codes.html", {"codes": codes, "new": True})


def _refuse_set_up(request: HttpRequest, user: User) -> HttpResponse | None:
    """The answer when the person may not set the fallback up now: the policy does not allow
    it, they have to verify it is them first, or they already have it."""
    refused = fallback_refusal(user, policy_for(request))
    if refused is not None:
        return settings_problem(request, refused)
    if not recently_verified(request):
        return verify_first(reverse("fallback:set-up"))
    if has_fallback(user):
        return _already_set_up(request)
    return None


def _already_set_up(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return see_other(url_to("selfservice:settings", fragment="fallback"))
    # The form was sent twice: the first request set it up, and its page (with
    # the recovery codes) is not the one the browser shows.
    return see_other(
        url_to("selfservice:settings", query={"done": Done.FALLBACK_SET_UP}, fragment="fallback")
    )


def _set_up_page(
    request: HttpRequest,
    user: User,
    secret: str,
    problems: list[str] | None = None,
    status: int = 200,
) -> HttpResponse:
    uri = totp.provisioning_uri(secret, user.username, settings.THRESHOLD.rp.name)
    return render(
        request,
        "fallback/set_up.html",
        {
            "qr": qr_data_uri(uri),
            # Grouped in fours, as apps show keys typed by hand.
            "secret_groups": [secret[i : i + 4] for i in range(0, len(secret), 4)],
            "problems": problems or [],
            "password_rules": password_validators_help_texts(),
            "max_password_length": settings.THRESHOLD_MAX_PASSWORD_LENGTH,
        },
        status=status,
    )


@require_POST
@never_cache
@needs_sign_in(back=on_settings)
def new_recovery_codes(request: HttpRequest) -> HttpResponse:
    user = _settings_user(request)
    if not recently_verified(request):
        return verify_first(url_to("selfservice:settings", fragment="fallback"))
    try:
        codes = do_regenerate_recovery_codes(user, audit_origin(request))
    except errors.SecurityMethodNotFound as error:
        return settings_problem(request, error)
    return render(request, "fallback/recovery_codes.html", {"codes": codes, "new": False})


@require_http_methods(["GET", "POST"])
@never_cache
@needs_sign_in()
def remove(request: HttpRequest) -> HttpResponse:
    """GET asks first (as removing a passkey does); POST removes."""
    user = _settings_user(request)
    if not has_fallback(user):
        return settings_problem(request, errors.SecurityMethodNotFound())
    if not recently_verified(request):
        return verify_first(reverse("fallback:remove"))
    policy = policy_for(request)
    last = is_last_usable_fallback(user, policy)
    refused: errors.LastSignInMethod | None = None
    if request.method == "POST":
        try:
            with_the_session(
                request,
                lambda: do_remove_fallback(user, audit_origin(request)),
                lambda _: update_session_auth_hash(request, user),
            )
        except errors.SecurityMethodNotFound as error:
            return settings_problem(request, error)
        except errors.LastSignInMethod as error:
            last, refused = True, error
        else:
            return see_other(url_to("selfservice:settings", query={"done": Done.FALLBACK_REMOVED}))
    return render(
        request,
        "fallback/remove.html",
        {"last": last, "last_entry": catalog.CATALOG["last_method"]},
        status=status_for(refused) if refused else 200,
    )
