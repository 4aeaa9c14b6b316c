"""Pages: Settings' "Device app" (set up, remove) and the push sign-in at /sign-in/push.

Renaming a device is Settings' own (``selfservice.views.rename_device``): a refused nickname
comes back on Settings as typed, as a passkey's does.

The device API (``api.py``) is what Threshold Verify itself calls; these are the
browser's side of the same set-ups and pushes.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from threshold.accounts.models import User
from threshold.core import catalog, errors
from threshold.core.catalog import Surface
from threshold.devices import webpush
from threshold.devices.actions import (
    IssuedSetupCode,
    PushStatus,
    SentPush,
    access_own_device,
    do_cancel_push,
    do_confirm_returned_code,
    do_end_step_up_push,
    do_finish_push,
    do_finish_step_up_push,
    do_issue_setup_code,
    do_remove_device,
    do_send_push,
    do_send_step_up_push,
    is_last_usable_device,
    push_status,
)
from threshold.policy.access import policy_for
from threshold.sessions.actions import sign_in
from threshold.sessions.stepup import mark_verified, recently_verified, return_to, verify_first
from threshold.sessions.store import SignedInWith
from threshold.web.http import (
    Done,
    audit_origin,
    failed,
    ok,
    optional_string,
    query_value,
    read_json_object,
    safe_next,
    see_other,
    settings_problem,
    url_to,
)
from threshold.web.qr import qr_data_uri

# The browser's push: its ID and the secret only it has, signed, for the push's lifetime.
PUSH_COOKIE = "threshold_push"
_PUSH_SALT = "threshold.devices.push"
_PUSH_COOKIE_AGE = 150  # the push's two minutes, and time to finish


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)  # noqa: S101 - login_required
    return request.user


def setup_link(code: str) -> str:
    """What the QR code holds: the web app's address with the code in the fragment, which
    browsers never send, so no access log ever sees it."""
    return f"{settings.THRESHOLD.public_url}{reverse('devices:verify-app')}#setup={code}"


# --- Settings → Security Methods → Device app ----------------------------------------------------


@require_http_methods(["GET", "POST"])
@never_cache
@login_required
def set_up(request: HttpRequest) -> HttpResponse:
    """GET: what happens next; POST: a setup code, its QR code and the returned-code form.

    The code is shown once, on the answer to the POST: only its HMAC is stored."""
    user = _user(request)
    if not recently_verified(request):
        return verify_first(reverse("devices:set-up"))
    if request.method == "GET":
        return render(request, "devices/set_up.html", {"issued": None})
    try:
        issued = do_issue_setup_code(
            user,
            audit_origin(request),
            policy_for(request),
            session_key=request.session.session_key,
        )
    except errors.ThresholdError as error:
        return settings_problem(request, error)
    return _set_up_page(request, issued.enrollment.public_id, issued)


def _set_up_page(
    request: HttpRequest,
    enrollment_id: str,
    issued: IssuedSetupCode | None = None,
    error: catalog.CatalogEntry | None = None,
    status: int = 200,
) -> HttpResponse:
    context = {
        "issued": issued,
        "enrollment_id": enrollment_id,
        "error": error,
        "server_url": settings.THRESHOLD.public_url,
    }
    if issued is not None:
        link = setup_link(issued.code)
        context["link"] = link
        context["qr"] = qr_data_uri(link)
    return render(request, "devices/set_up.html", context, status=status)


@require_POST
@never_cache
@login_required
def confirm(request: HttpRequest, enrollment_id: str) -> HttpResponse:
    """The 6-digit code the new device shows, typed into the page that showed the setup code."""
    try:
        do_confirm_returned_code(
            _user(request),
            enrollment_id,
            request.POST.get("returned_code", ""),
            audit_origin(request),
            policy_for(request),
            session_key=request.session.session_key,
        )
    except errors.ReturnedCodeIncorrect as wrong:
        entry = catalog.entry_for(wrong, Surface.SETTINGS)
        return _set_up_page(request, enrollment_id, error=entry, status=catalog.status_for(wrong))
    except errors.ThresholdError as error:
        return settings_problem(request, error)
    return see_other(url_to("selfservice:settings", query={"done": Done.DEVICE_ADDED}))


@require_http_methods(["GET", "POST"])
@never_cache
@login_required
def remove(request: HttpRequest, device_id: str) -> HttpResponse:
    """GET asks first; POST removes (after a step-up), never the last usable way in."""
    user = _user(request)
    policy = policy_for(request)
    try:
        device = access_own_device(user, device_id)
    except errors.ThresholdError as error:
        return settings_problem(request, error)
    if not recently_verified(request):
        return verify_first(reverse("devices:remove", args=[device_id]))
    last = is_last_usable_device(user, device, policy)
    if request.method == "POST":
        try:
            do_remove_device(user, device_id, audit_origin(request), policy)
        except errors.LastSignInMethod:
            last = True
        except errors.ThresholdError as error:
            return settings_problem(request, error)
        else:
            return see_other(url_to("selfservice:settings", query={"done": Done.DEVICE_REMOVED}))
    return render(
        request,
        "devices/remove.html",
        {
            "device": device,
            "last": last,
            "last_entry": catalog.CATALOG["last_method"],
        },
        status=409 if last and request.method == "POST" else 200,
    )


# --- Sign-in with a push -----------------------------------------------------------------------


def _push_from_cookie(request: HttpRequest) -> tuple[str, str] | None:
    token = request.COOKIES.get(PUSH_COOKIE, "")
    try:
        value = signing.loads(token, salt=_PUSH_SALT, max_age=_PUSH_COOKIE_AGE)
    except signing.BadSignature:
        return None
    if not (isinstance(value, list) and len(value) == 2):  # noqa: PLR2004 - id and secret
        return None
    return str(value[0]), str(value[1])


def _push_problem(request: HttpRequest, error: errors.ThresholdError) -> HttpResponse:
    return render(
        request,
        "devices/push.html",
        {"error": catalog.entry_for(error, Surface.AUTHENTICATION)},
        status=catalog.status_for(error),
    )


@require_http_methods(["GET", "POST"])
@never_cache
def push(request: HttpRequest) -> HttpResponse:
    """ "Send a push to Threshold Verify": the username, then the number to type on the device."""
    if request.user.is_authenticated:
        return redirect("selfservice:home")
    policy = policy_for(request)
    if not policy.allow_device_app_sign_in:
        return _push_problem(request, errors.DeviceAppNotAllowed())
    if request.method == "GET":
        return render(request, "devices/push.html", {"error": None})
    try:
        # As /sign-in/push/start reads it: at most 150 characters of text, no control
        # characters (PostgreSQL fails on a NUL in a query's text: a 500).
        username = optional_string(request.POST.dict(), "username")
        if not username or not username.strip():
            # The sign-in page's form sends an empty field without JavaScript (novalidate):
            # the catalog's entry beside the field, as webauthn.js shows it.
            return render(
                request,
                "devices/push.html",
                {"error": None, "username_error": catalog.CATALOG["username_required"]},
                status=400,
            )
        sent = do_send_push(username, audit_origin(request), policy)
    except errors.ThresholdError as error:
        return _push_problem(request, error)
    response = see_other(url_to("devices:push-wait", query=_next_query(request)))
    _set_push_cookie(response, sent)
    return response


def _set_push_cookie(response: HttpResponse, sent: SentPush) -> None:
    response.set_cookie(
        PUSH_COOKIE,
        signing.dumps([sent.approval.public_id, sent.browser_secret], salt=_PUSH_SALT),
        max_age=_PUSH_COOKIE_AGE,
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Strict",
    )


@require_POST
@never_cache
def push_start(request: HttpRequest) -> JsonResponse:
    """The sign-in page's "Send a push to Threshold Verify", after the username (webauthn.js):
    ``{"username": ...}`` answers ``{"number": NN}`` and sets the push's cookie, as the form at
    /sign-in/push does; the same answer whoever the username is (``do_send_push``)."""
    try:
        policy = policy_for(request)
        if not policy.allow_device_app_sign_in:
            raise errors.DeviceAppNotAllowed()
        username = optional_string(read_json_object(request), "username")
        if not username or not username.strip():
            raise errors.MalformedRequest("a username")
        sent = do_send_push(username, audit_origin(request), policy)
    except errors.ThresholdError as error:
        return failed(error, Surface.AUTHENTICATION)
    response = ok({"number": sent.approval.number})
    _set_push_cookie(response, sent)
    return response


def _next_query(request: HttpRequest) -> dict[str, str]:
    target = query_value(request, "next")
    return {"next": target} if target else {}


@require_GET
@never_cache
def push_wait(request: HttpRequest) -> HttpResponse:
    """The number to type in Threshold Verify, while the push waits (push.js polls)."""
    found = _push_from_cookie(request)
    state, number = push_status(*found) if found else (PushStatus.EXPIRED, None)
    if state == PushStatus.EXPIRED:
        return _push_problem(request, errors.PushExpired())
    if state == PushStatus.REFUSED:
        return _push_problem(request, errors.PushNumberWrong())
    query = _next_query(request)
    return render(
        request,
        "devices/push_wait.html",
        {
            "number": number,
            "state_url": reverse("devices:push-state"),
            "wait_url": url_to("devices:push-wait", query=query),
            "finish_url": url_to("devices:push-finish", query=query),
            "cancel_url": url_to("devices:push-cancel", query=query),
            "instead_url": url_to("sessions:sign-in", query=query),
            "step_up": False,
        },
    )


@require_POST
@never_cache
def push_cancel(request: HttpRequest) -> HttpResponse:
    """ "Cancel" on the number's page: the push ends (no device shows it any longer), and
    the sign-in page is shown again. The sign-in page's own Cancel (webauthn.js) posts JSON
    and stays where it is: ``{"status": "ok"}``."""
    found = _push_from_cookie(request)
    if found is not None:
        do_cancel_push(*found, audit_origin(request))
    response: HttpResponse
    if request.content_type == "application/json":
        response = ok()
    else:
        response = see_other(url_to("sessions:sign-in", query=_next_query(request)))
    response.delete_cookie(PUSH_COOKIE, samesite="Strict")
    return response


@require_GET
@never_cache
def push_state(request: HttpRequest) -> JsonResponse:
    """{"state": "pending" | "approved" | "refused" | "expired"} for push.js."""
    found = _push_from_cookie(request)
    state, _ = push_status(*found) if found else (PushStatus.EXPIRED, None)
    return JsonResponse({"state": state})


@require_POST
@never_cache
def push_finish(request: HttpRequest) -> HttpResponse:
    """Sign in with the approved push; a push still waiting goes back to its page. The session
    counts as verified as after a password and code (``mark_verified(phishing_resistant=False)``):
    multi-factor, never phishing-resistant, so a passkey may be added right away ("Set up a
    passkey"), but removing a method or the admin portal still needs a passkey."""
    found = _push_from_cookie(request)
    if found is None:
        return _push_problem(request, errors.PushExpired())
    state, _ = push_status(*found)
    if state == PushStatus.PENDING:
        return see_other(url_to("devices:push-wait", query=_next_query(request)))
    try:
        finished = do_finish_push(*found, audit_origin(request), policy_for(request))
    except errors.ThresholdError as error:
        return _push_problem(request, error)
    sign_in(request, finished.user, finished.assurance, method=SignedInWith.DEVICE_APP)
    mark_verified(request, phishing_resistant=False)
    response = see_other(safe_next(request))
    response.delete_cookie(PUSH_COOKIE, samesite="Strict")
    return response


# --- "Verify it's you" with a push ---------------------------------------------------------

# The signed-in browser's step-up push: a cookie of its own, never the sign-in's.
STEP_UP_PUSH_COOKIE = "threshold_step_up_push"
_STEP_UP_PUSH_SALT = "threshold.devices.step-up-push"


def _step_up_push_from_cookie(request: HttpRequest) -> tuple[str, str] | None:
    token = request.COOKIES.get(STEP_UP_PUSH_COOKIE, "")
    try:
        value = signing.loads(token, salt=_STEP_UP_PUSH_SALT, max_age=_PUSH_COOKIE_AGE)
    except signing.BadSignature:
        return None
    if not (isinstance(value, list) and len(value) == 3):  # noqa: PLR2004 - id, secret, session
        return None
    # Bound to the session that sent it, as a ceremony begun for a signed-in person is.
    if not hmac.compare_digest(str(value[2]), _session_binding(request)):
        return None
    return str(value[0]), str(value[1])


def _session_binding(request: HttpRequest) -> str:
    key = request.session.session_key or ""
    return hashlib.sha256(f"step-up-push:{key}".encode()).hexdigest()


def _step_up_query(request: HttpRequest) -> dict[str, str]:
    return {"next": return_to(request).target}


def _step_up_problem(request: HttpRequest, error: errors.ThresholdError) -> HttpResponse:
    return render(
        request,
        "devices/push.html",
        {
            "error": catalog.entry_for(error, Surface.AUTHENTICATION),
            "again_url": url_to("selfservice:verify", query=_step_up_query(request)),
            "step_up": True,
        },
        status=catalog.status_for(error),
    )


@require_POST
@never_cache
@login_required
def step_up_push(request: HttpRequest) -> HttpResponse:
    """ "Send a push to Threshold Verify" on "Verify it's you": the number's page follows."""
    try:
        sent = do_send_step_up_push(_user(request), audit_origin(request), policy_for(request))
    except errors.ThresholdError as error:
        return _step_up_problem(request, error)
    response = see_other(url_to("devices:step-up-push-wait", query=_step_up_query(request)))
    response.set_cookie(
        STEP_UP_PUSH_COOKIE,
        signing.dumps(
            [sent.approval.public_id, sent.browser_secret, _session_binding(request)],
            salt=_STEP_UP_PUSH_SALT,
        ),
        max_age=_PUSH_COOKIE_AGE,
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Strict",
    )
    return response


@require_GET
@never_cache
@login_required
def step_up_push_wait(request: HttpRequest) -> HttpResponse:
    """The number to type in Threshold Verify, while the step-up's push waits; once it is over
    (push.js comes here), why, audited once (``do_end_step_up_push``), and the push forgotten."""
    found = _step_up_push_from_cookie(request)
    state, number = push_status(*found) if found else (PushStatus.EXPIRED, None)
    if found is None:
        return _step_up_problem(request, errors.PushExpired())
    if state in (PushStatus.EXPIRED, PushStatus.REFUSED):
        error = do_end_step_up_push(*found, _user(request), audit_origin(request))
        response = _step_up_problem(request, error)
        response.delete_cookie(STEP_UP_PUSH_COOKIE, samesite="Strict")
        return response
    query = _step_up_query(request)
    return render(
        request,
        "devices/push_wait.html",
        {
            "number": number,
            "state_url": reverse("devices:step-up-push-state"),
            "wait_url": url_to("devices:step-up-push-wait", query=query),
            "finish_url": url_to("devices:step-up-push-finish", query=query),
            "cancel_url": url_to("devices:step-up-push-cancel", query=query),
            "instead_url": url_to("selfservice:verify", query=query),
            "step_up": True,
        },
    )


@require_GET
@never_cache
def step_up_push_state(request: HttpRequest) -> JsonResponse:
    """{"state": ...} for push.js, as /sign-in/push/state answers."""
    found = _step_up_push_from_cookie(request) if request.user.is_authenticated else None
    state, _ = push_status(*found) if found else (PushStatus.EXPIRED, None)
    return JsonResponse({"state": state})


@require_POST
@never_cache
@login_required
def step_up_push_finish(request: HttpRequest) -> HttpResponse:
    """Verified with the approved push: back where "Verify it's you" was sent from. It counts
    as the password and code do (``mark_verified(phishing_resistant=False)``): a passkey may
    be added, nothing else."""
    # No push in this browser is a failed step-up too (audited), as a passkey's without its
    # ceremony is.
    found = _step_up_push_from_cookie(request) or ("", "")
    state, _ = push_status(*found)
    if state == PushStatus.PENDING:
        return see_other(url_to("devices:step-up-push-wait", query=_step_up_query(request)))
    try:
        do_finish_step_up_push(*found, _user(request), audit_origin(request), policy_for(request))
    except errors.ThresholdError as error:
        return _step_up_problem(request, error)
    mark_verified(request, phishing_resistant=False)
    response = see_other(return_to(request).target)
    response.delete_cookie(STEP_UP_PUSH_COOKIE, samesite="Strict")
    return response


@require_POST
@never_cache
@login_required
def step_up_push_cancel(request: HttpRequest) -> HttpResponse:
    """ "Cancel": the push ends, and "Verify it's you" is shown again."""
    found = _step_up_push_from_cookie(request)
    if found is not None:
        do_cancel_push(*found, audit_origin(request), actor=_user(request))
    response = see_other(url_to("selfservice:verify", query=_step_up_query(request)))
    response.delete_cookie(STEP_UP_PUSH_COOKIE, samesite="Strict")
    return response


# The phone web app's colour: the pages' accent (threshold.css --accent).
THEME_COLOR = "#1a53e6"


@require_GET
def verify_app(request: HttpRequest) -> HttpResponse:
    """Threshold Verify on a phone, an installable web app: where the set-up QR code points.

    The page is the app's shell; verify-app.js does the rest with the device API (the setup
    code rides in the fragment, which the browser never sends here)."""
    # The device API's root, which every endpoint the app calls is under.
    api_base = reverse("devices:api-enroll").removesuffix("enroll")
    # The applicationServerKey the app subscribes with, while the operator has Web Push on.
    push_key = webpush.public_key() if webpush.is_enabled() else ""
    return render(
        request,
        "devices/verify_app.html",
        {"theme_color": THEME_COLOR, "api_base": api_base, "push_key": push_key},
    )


@require_GET
def verify_manifest(request: HttpRequest) -> HttpResponse:
    """The web app manifest: what a phone needs to install /verify/ on its home screen."""
    app = reverse("devices:verify-app")
    manifest = {
        "name": "Threshold Verify",
        "short_name": "Verify",
        "description": "Approve your sign-ins to Threshold from this phone.",
        "id": app,
        "start_url": app,
        "scope": app,
        "display": "standalone",
        "orientation": "portrait",
        "background_color": "#ffffff",
        "theme_color": THEME_COLOR,
        "icons": [
            {
                "src": static(f"threshold/verify/icon-{size}.png"),
                "sizes": f"{size}x{size}",
                "type": "image/png",
                "purpose": "any",
            }
            for size in (192, 512)
        ]
        + [
            {"src": static("threshold/verify/icon.svg"), "sizes": "any", "type": "image/svg+xml"},
        ],
    }
    response = JsonResponse(manifest, content_type="application/manifest+json")
    response["Cache-Control"] = "no-cache"
    return response


@require_GET
def verify_worker(request: HttpRequest) -> HttpResponse:
    """The service worker, served from /verify/ so that its scope is the app's: it keeps the
    app's shell for when the network is away (the device API always goes to the network)."""
    shell = [
        reverse("devices:verify-app"),
        static("threshold/threshold.css"),
        static("threshold/verify-app.js"),
        static("threshold/verify/icon-192.png"),
    ]
    response = render(
        request,
        "devices/service_worker.js",
        {"shell": json.dumps(shell), "version": json.dumps("-".join(shell))},
        content_type="text/javascript",
    )
    # A browser checks for a new worker on every visit; it never keeps an old one.
    response["Cache-Control"] = "no-cache"
    response["Service-Worker-Allowed"] = reverse("devices:verify-app")
    return response
