"""Pages: Settings' "Threshold Verify" (set up, remove) and the push sign-in at /sign-in/push.

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
    PUSH_FINISH_GRACE,
    PUSH_LIFETIME,
    FinishedPush,
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
from threshold.sessions.actions import sign_in, with_the_session
from threshold.sessions.stepup import mark_verified, recently_verified, return_to, verify_first
from threshold.sessions.store import SignedInWith
from threshold.web.http import (
    Done,
    audit_origin,
    failed,
    needs_sign_in,
    ok,
    optional_string,
    query_value,
    read_json_object,
    safe_next,
    see_other,
    sets_up,
    settings_problem,
    url_to,
)
from threshold.web.qr import qr_data_uri


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)  # noqa: S101 - needs_sign_in
    return request.user


def setup_link(code: str) -> str:
    """What the QR code holds: the web app's address with the code in the fragment, which
    browsers never send, so no access log ever sees it."""
    return f"{settings.THRESHOLD.public_url}{reverse('devices:verify-app')}#setup={code}"


# --- Settings → Security Methods → Threshold Verify -----------------------------------------------


def _on_set_up(request: HttpRequest, **_: object) -> str:
    """The page the returned-code form is on (``needs_sign_in``)."""
    return reverse("devices:set-up")


@sets_up
@require_http_methods(["GET", "POST"])
@never_cache
@needs_sign_in()
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


@sets_up
@require_POST
@never_cache
@needs_sign_in(back=_on_set_up)
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
@needs_sign_in()
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
            do_remove_device(user, device_id, audit_origin(request))
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


# --- A browser's push: a sign-in's, or "Verify it's you"'s ---------------------------------------

# The browser's push: its ID and the secret only it has, signed, for the push's lifetime;
# "__Host-" over HTTPS, so that a sibling subdomain cannot plant its own push in a browser
# (which its phone would then approve, signing the browser in as someone else).
PUSH_COOKIE = f"{settings.COOKIE_PREFIX}threshold_push"
# The signed-in browser's step-up push: a cookie of its own, never the sign-in's.
STEP_UP_PUSH_COOKIE = f"{settings.COOKIE_PREFIX}threshold_step_up_push"
_PUSH_COOKIE_AGE = int((PUSH_LIFETIME + PUSH_FINISH_GRACE).total_seconds())


class _PushPages:
    """What the pages of a browser's push share (its cookie, the number's page, its state,
    finish and cancel), and what each purpose says for itself: a sign-in's push (/sign-in/push,
    ``_SignInPush``) and "Verify it's you"'s (/settings/verify/push, ``_StepUpPush``)."""

    cookie: str
    salt: str
    # URL names: the number's page, its state (push.js), finish, cancel; "with a passkey instead".
    wait: str
    state: str
    finish: str
    cancel: str
    instead: str
    step_up: bool

    def query(self, request: HttpRequest) -> dict[str, str]:
        """Where the browser goes once the push is done, carried from page to page."""
        raise NotImplementedError

    def problem(self, request: HttpRequest, error: errors.ThresholdError) -> HttpResponse:
        """The push's error page (devices/push.html)."""
        raise NotImplementedError

    def binding(self, request: HttpRequest) -> list[str]:
        """What the cookie holds besides the push's ID and secret, and must hold again."""
        return []

    def from_cookie(self, request: HttpRequest) -> tuple[str, str] | None:
        """The push's ID and the browser's secret, from this browser's cookie."""
        token = request.COOKIES.get(self.cookie, "")
        try:
            value = signing.loads(token, salt=self.salt, max_age=_PUSH_COOKIE_AGE)
        except signing.BadSignature:
            return None
        binding = self.binding(request)
        if not (isinstance(value, list) and len(value) == 2 + len(binding)):
            return None
        if not all(
            hmac.compare_digest(str(held), expected)
            for held, expected in zip(value[2:], binding, strict=True)
        ):
            return None
        return str(value[0]), str(value[1])

    def remember(self, request: HttpRequest, response: HttpResponse, sent: SentPush) -> None:
        response.set_cookie(
            self.cookie,
            signing.dumps(
                [sent.approval.public_id, sent.browser_secret, *self.binding(request)],
                salt=self.salt,
            ),
            max_age=_PUSH_COOKIE_AGE,
            secure=settings.SESSION_COOKIE_SECURE,
            httponly=True,
            samesite="Strict",
        )

    def forget(self, response: HttpResponse) -> None:
        response.delete_cookie(self.cookie, samesite="Strict")

    def over(
        self, request: HttpRequest, found: tuple[str, str] | None, state: PushStatus
    ) -> HttpResponse:
        """The number's page once the push is no longer waiting (expired or refused)."""
        if state == PushStatus.REFUSED:
            return self.problem(request, errors.PushNumberWrong())
        return self.problem(request, errors.PushExpired())

    def finished(self, request: HttpRequest, found: tuple[str, str]) -> str:
        """Use the approved push (or raise its error); where the browser goes next."""
        raise NotImplementedError

    def canceled(self, request: HttpRequest, found: tuple[str, str] | None) -> HttpResponse:
        """End the push, if it still waits; the page that follows "Cancel"."""
        raise NotImplementedError


class _SignInPush(_PushPages):
    cookie = PUSH_COOKIE
    salt = "threshold.devices.push"
    wait = "devices:push-wait"
    state = "devices:push-state"
    finish = "devices:push-finish"
    cancel = "devices:push-cancel"
    instead = "sessions:sign-in"
    step_up = False

    def query(self, request: HttpRequest) -> dict[str, str]:
        target = query_value(request, "next")
        return {"next": target} if target else {}

    def page(self, request: HttpRequest, status: int = 200, **context: object) -> HttpResponse:
        """/sign-in/push: its form, or a push's error; "Start again" and "Sign in with a
        passkey instead" keep ?next=, as the number's page does."""
        query = self.query(request)
        links = {
            "again_url": url_to("devices:push", query=query),
            "instead_url": url_to("sessions:sign-in", query=query),
        }
        return render(request, "devices/push.html", {**links, **context}, status=status)

    def problem(self, request: HttpRequest, error: errors.ThresholdError) -> HttpResponse:
        return self.page(
            request,
            catalog.status_for(error),
            error=catalog.entry_for(error, Surface.AUTHENTICATION),
        )

    def finished(self, request: HttpRequest, found: tuple[str, str]) -> str:
        """Sign in. The session counts as verified as after a password and code
        (``mark_verified(phishing_resistant=False)``): multi-factor, never
        phishing-resistant, so a passkey may be added right away ("Set up a passkey"), but
        removing a method or the admin portal still needs a passkey."""

        def signed_in(finished: FinishedPush) -> None:
            sign_in(
                request,
                finished.user,
                finished.assurance,
                method=SignedInWith.DEVICE_APP,
                credential=finished.device_id,
            )
            mark_verified(request, phishing_resistant=False)

        # The push used up and the session in one transaction (``with_the_session``): a
        # database failing at the session leaves the approved push for "I approved it" again.
        with_the_session(
            request,
            lambda: do_finish_push(*found, audit_origin(request), policy_for(request)),
            signed_in,
        )
        return safe_next(request)

    def canceled(self, request: HttpRequest, found: tuple[str, str] | None) -> HttpResponse:
        """The sign-in page again; the sign-in page's own Cancel (webauthn.js) posts JSON and
        stays where it is: ``{"status": "ok"}``."""
        if found is not None:
            do_cancel_push(*found, audit_origin(request))
        if request.content_type == "application/json":
            return ok()
        return see_other(url_to("sessions:sign-in", query=self.query(request)))


class _StepUpPush(_PushPages):
    cookie = STEP_UP_PUSH_COOKIE
    salt = "threshold.devices.step-up-push"
    wait = "devices:step-up-push-wait"
    state = "devices:step-up-push-state"
    finish = "devices:step-up-push-finish"
    cancel = "devices:step-up-push-cancel"
    instead = "selfservice:verify"
    step_up = True

    def query(self, request: HttpRequest) -> dict[str, str]:
        return {"next": return_to(request).target}

    def problem(self, request: HttpRequest, error: errors.ThresholdError) -> HttpResponse:
        return render(
            request,
            "devices/push.html",
            {
                "error": catalog.entry_for(error, Surface.AUTHENTICATION),
                "again_url": url_to("selfservice:verify", query=self.query(request)),
                "step_up": True,
            },
            status=catalog.status_for(error),
        )

    def binding(self, request: HttpRequest) -> list[str]:
        # Bound to the session that sent it, as a ceremony begun for a signed-in person is.
        key = request.session.session_key or ""
        return [hashlib.sha256(f"step-up-push:{key}".encode()).hexdigest()]

    def from_cookie(self, request: HttpRequest) -> tuple[str, str] | None:
        return super().from_cookie(request) if request.user.is_authenticated else None

    def over(
        self, request: HttpRequest, found: tuple[str, str] | None, state: PushStatus
    ) -> HttpResponse:
        """Why, audited once (``do_end_step_up_push``), and the push forgotten."""
        if found is None:
            return self.problem(request, errors.PushExpired())
        error = do_end_step_up_push(*found, _user(request), audit_origin(request))
        response = self.problem(request, error)
        self.forget(response)
        return response

    def finished(self, request: HttpRequest, found: tuple[str, str]) -> str:
        """Back where "Verify it's you" was sent from. It counts as the password and code do
        (``mark_verified(phishing_resistant=False)``): a passkey may be added, nothing else."""
        # The push used up and the session's note of it in one transaction (``with_the_session``).
        with_the_session(
            request,
            lambda: do_finish_step_up_push(
                *found, _user(request), audit_origin(request), policy_for(request)
            ),
            lambda _: mark_verified(request, phishing_resistant=False),
        )
        return return_to(request).target

    def canceled(self, request: HttpRequest, found: tuple[str, str] | None) -> HttpResponse:
        """ "Verify it's you" again."""
        if found is not None:
            do_cancel_push(*found, audit_origin(request), actor=_user(request))
        return see_other(url_to("selfservice:verify", query=self.query(request)))


SIGN_IN_PUSH = _SignInPush()
STEP_UP_PUSH = _StepUpPush()


def _sent(request: HttpRequest, pages: _PushPages, sent: SentPush) -> HttpResponse:
    """After a push was sent from a form: its number's page, and the browser's cookie."""
    response = see_other(url_to(pages.wait, query=pages.query(request)))
    pages.remember(request, response, sent)
    return response


def _wait(request: HttpRequest, pages: _PushPages) -> HttpResponse:
    """The number to type in Threshold Verify, while the push waits (push.js polls)."""
    found = pages.from_cookie(request)
    state, number = push_status(*found) if found else (PushStatus.EXPIRED, None)
    if state in (PushStatus.EXPIRED, PushStatus.REFUSED):
        return pages.over(request, found, state)
    query = pages.query(request)
    return render(
        request,
        "devices/push_wait.html",
        {
            "number": number,
            "state_url": reverse(pages.state),
            "wait_url": url_to(pages.wait, query=query),
            "finish_url": url_to(pages.finish, query=query),
            "cancel_url": url_to(pages.cancel, query=query),
            "instead_url": url_to(pages.instead, query=query),
            "step_up": pages.step_up,
        },
    )


def _state(request: HttpRequest, pages: _PushPages) -> JsonResponse:
    """{"state": "pending" | "approved" | "refused" | "expired"} for push.js."""
    found = pages.from_cookie(request)
    state, _ = push_status(*found) if found else (PushStatus.EXPIRED, None)
    return JsonResponse({"state": state})


def _finish(request: HttpRequest, pages: _PushPages) -> HttpResponse:
    """Use the approved push; a push still waiting goes back to its page. No push in this
    browser fails as an unknown one does (a step-up's is audited)."""
    found = pages.from_cookie(request) or ("", "")
    state, _ = push_status(*found)
    if state == PushStatus.PENDING:
        return see_other(url_to(pages.wait, query=pages.query(request)))
    try:
        target = pages.finished(request, found)
    except errors.ThresholdError as error:
        # The push is over either way: forgotten, so that a reload or a second "I approved
        # it" is no push here rather than the same failure again (a step-up's audited once).
        response = pages.problem(request, error)
        pages.forget(response)
        return response
    response = see_other(target)
    pages.forget(response)
    return response


def _cancel(request: HttpRequest, pages: _PushPages) -> HttpResponse:
    """ "Cancel": the push ends (no device shows it any longer), and the browser forgets it."""
    response = pages.canceled(request, pages.from_cookie(request))
    pages.forget(response)
    return response


# --- Sign-in with a push -----------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@never_cache
def push(request: HttpRequest) -> HttpResponse:
    """ "Send a push to Threshold Verify": the username, then the number to type on the device."""
    if request.user.is_authenticated:
        return redirect("selfservice:home")
    policy = policy_for(request)
    if not policy.allow_device_app_sign_in:
        return SIGN_IN_PUSH.problem(request, errors.DeviceAppNotAllowed())
    if request.method == "GET":
        return SIGN_IN_PUSH.page(request, error=None)
    try:
        # As /sign-in/push/start reads it: at most 150 characters of text, no control
        # characters (PostgreSQL fails on a NUL in a query's text: a 500).
        username = optional_string(request.POST.dict(), "username")
        if not username or not username.strip():
            # The sign-in page's form sends an empty field without JavaScript (novalidate):
            # the catalog's entry beside the field, as webauthn.js shows it.
            return SIGN_IN_PUSH.page(
                request, 400, error=None, username_error=catalog.CATALOG["username_required"]
            )
        sent = do_send_push(username, audit_origin(request), policy)
    except errors.ThresholdError as error:
        return SIGN_IN_PUSH.problem(request, error)
    return _sent(request, SIGN_IN_PUSH, sent)


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
    SIGN_IN_PUSH.remember(request, response, sent)
    return response


@require_GET
@never_cache
def push_wait(request: HttpRequest) -> HttpResponse:
    return _wait(request, SIGN_IN_PUSH)


@require_POST
@never_cache
def push_cancel(request: HttpRequest) -> HttpResponse:
    return _cancel(request, SIGN_IN_PUSH)


@require_GET
@never_cache
def push_state(request: HttpRequest) -> JsonResponse:
    return _state(request, SIGN_IN_PUSH)


@require_POST
@never_cache
def push_finish(request: HttpRequest) -> HttpResponse:
    return _finish(request, SIGN_IN_PUSH)


# --- "Verify it's you" with a push ---------------------------------------------------------


def _on_verify(request: HttpRequest, **_: object) -> str:
    """ "Verify it's you", where the push was sent from, on its way to the same page
    (``needs_sign_in``)."""
    return url_to("selfservice:verify", query=STEP_UP_PUSH.query(request))


@require_POST
@never_cache
@needs_sign_in(back=_on_verify)
def step_up_push(request: HttpRequest) -> HttpResponse:
    """ "Send a push to Threshold Verify" on "Verify it's you": the number's page follows."""
    try:
        sent = do_send_step_up_push(_user(request), audit_origin(request), policy_for(request))
    except errors.ThresholdError as error:
        return STEP_UP_PUSH.problem(request, error)
    return _sent(request, STEP_UP_PUSH, sent)


@require_GET
@never_cache
@needs_sign_in()
def step_up_push_wait(request: HttpRequest) -> HttpResponse:
    return _wait(request, STEP_UP_PUSH)


@require_GET
@never_cache
def step_up_push_state(request: HttpRequest) -> JsonResponse:
    return _state(request, STEP_UP_PUSH)


@require_POST
@never_cache
@needs_sign_in(back=_on_verify)
def step_up_push_finish(request: HttpRequest) -> HttpResponse:
    return _finish(request, STEP_UP_PUSH)


@require_POST
@never_cache
@needs_sign_in(back=_on_verify)
def step_up_push_cancel(request: HttpRequest) -> HttpResponse:
    return _cancel(request, STEP_UP_PUSH)


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
        {
            "shell": json.dumps(shell),
            "version": json.dumps("-".join(shell)),
            # A message's words when it has none of its own: its purpose's, or any request's.
            "asks": json.dumps(
                {
                    purpose: {"title": payload["title"], "body": payload["body"]}
                    for purpose, payload in webpush.PAYLOADS.items()
                }
            ),
            "any_request": json.dumps(webpush.ANY_REQUEST),
        },
        content_type="text/javascript",
    )
    # A browser checks for a new worker on every visit; it never keeps an old one.
    response["Cache-Control"] = "no-cache"
    response["Service-Worker-Allowed"] = reverse("devices:verify-app")
    return response
