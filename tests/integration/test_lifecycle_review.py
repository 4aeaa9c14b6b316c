"""An outside review of account lifecycle and revocation: when something about a person changes,
does everything that should stop, stop — at once, on every path — and nothing else?

Walked: deactivation and reactivation (admin portal and `threshold users`), the help desk's
"End sessions", removing a passkey (Settings and the portal), a Threshold Verify device and the
password and app, "Sign out other sessions", "Sign out of this app", RP-initiated logout, a
recovery link used, a new link while an older one is outstanding, and a policy or group change.
For each: every browser session, outstanding authorization codes, access tokens (/userinfo,
/introspect), refresh tokens, back-channel logout, device API requests, pending pushes, links,
the audit trail (actor and subject) and the person's emails; and the opposite, a change that
signs out or breaks sessions it should not touch. There is no way to delete a person or to
change a username or email address, so those were not walked.

Each defect is one test marked xfail(strict=True); the one passing test pins the whole of a
deactivation from the command line and what reactivation does (not) bring back.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.test import Client

from tests.integration.conftest import Browser, Person, assert_ok, enrolled_person, sign_in
from tests.integration.portal_support import post, staff
from tests.support.device import SoftDevice
from threshold.accounts.models import Role, User
from threshold.audit.actions import Action, Origin
from threshold.audit.models import AuditEvent
from threshold.cli.main import main
from threshold.devices.actions import (
    do_confirm_returned_code,
    do_issue_setup_code,
    do_redeem_setup_code,
    do_send_push,
)
from threshold.devices.models import Device
from threshold.enrollment.actions import do_issue_recovery
from threshold.policy.access import get_policy
from threshold.sso.actions import do_add_app
from threshold.sso.models import Application, LogoutDelivery

REDIRECT = "https://wiki.example.com/oidc/callback"
BACKCHANNEL = "https://wiki.example.com/oidc/backchannel-logout"
ENROLL_PATH = "/api/device/v1/enroll"
PENDING_PATH = "/api/device/v1/approvals/pending"


# --- An app, and the calls its server makes ----------------------------------------------------


def add_app(**settings: Any) -> tuple[Application, str]:
    created = do_add_app("Wiki", Origin.cli(), redirect_uris=[REDIRECT], **settings)
    assert created.client_secret is not None
    return created.application, created.client_secret


def authorize(browser: Browser, app: Application) -> tuple[str, str]:
    """The code this browser's session gets for ``app`` (PKCE S256), and its verifier."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    query = urlencode(
        {
            "response_type": "code",
            "client_id": app.client_id,
            "redirect_uri": REDIRECT,
            "scope": "openid email",
            "state": "state",
            "nonce": "nonce",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    response = browser.get(f"/authorize?{query}")
    assert response.status_code == 302, (response.status_code, response.content[:300])
    return parse_qs(urlsplit(response["Location"]).query)["code"][0], verifier


def form(path: str, data: dict[str, str], **extra: Any) -> Any:
    return Client().post(
        path, urlencode(data), content_type="application/x-www-form-urlencoded", **extra
    )


def exchange(app: Application, secret: str, code: str, verifier: str) -> Any:
    return form(
        "/token",
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": app.client_id,
            "client_secret": secret,
            "code_verifier": verifier,
        },
    )


def tokens(browser: Browser, app: Application, secret: str) -> dict[str, str]:
    response = exchange(app, secret, *authorize(browser, app))
    assert response.status_code == 200, response.content
    return dict(response.json())


def refresh(app: Application, secret: str, refresh_token: str) -> Any:
    return form(
        "/token",
        {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": app.client_id,
            "client_secret": secret,
        },
    )


def userinfo(access_token: str) -> Any:
    return Client().get("/userinfo", HTTP_AUTHORIZATION=f"Bearer {access_token}")


def introspect(app: Application, secret: str, access_token: str) -> dict[str, Any]:
    basic = base64.b64encode(f"{app.client_id}:{secret}".encode()).decode()
    response = form("/introspect", {"token": access_token}, HTTP_AUTHORIZATION=f"Basic {basic}")
    assert response.status_code == 200, response.content
    return dict(response.json())


def end_session(browser: Browser, id_token: str) -> Any:
    return browser.get("/end-session?" + urlencode({"id_token_hint": id_token}))


def signed_in_twice(person: Person) -> tuple[Browser, Browser]:
    """The person's laptop and phone, each signed in with their passkey."""
    laptop, phone = Browser(), Browser()
    assert_ok(sign_in(laptop, person.authenticator))
    assert_ok(sign_in(phone, person.authenticator))
    return laptop, phone


# --- A Threshold Verify device -----------------------------------------------------------------


def set_up_device(user: User, name: str) -> SoftDevice:
    """A confirmed Threshold Verify device of ``user``'s (the actions Settings and the device API
    call, with a real P-256 key signing real requests)."""
    policy = get_policy()
    session_key = secrets.token_urlsafe(24)
    issued = do_issue_setup_code(user, Origin.cli(), policy, session_key=session_key)
    device = SoftDevice()
    compact = device.sign(
        ENROLL_PATH,
        {"setup_code": issued.code, "platform": "android", "name": name},
        with_jwk=True,
    )
    redeemed = do_redeem_setup_code(compact, path=ENROLL_PATH, origin=Origin.cli(), policy=policy)
    device.device_id = redeemed.device.public_id
    do_confirm_returned_code(
        user,
        issued.enrollment.public_id,
        redeemed.returned_code,
        Origin.cli(),
        policy,
        session_key=session_key,
    )
    return device


def device_request(device: SoftDevice, path: str) -> Any:
    return Client().post(path, device.sign(path), content_type="application/jose")


# --- What works ----------------------------------------------------------------------------------


def test_deactivation_from_the_command_line_stops_everything_and_reactivation_restores_none(
    ada: Person, capsys: pytest.CaptureFixture[str]
) -> None:
    """Okta and Keycloak: deactivating (disabling) a person ends their sessions and tokens at
    once; reactivating lets them sign in again, never revives what was ended. Someone else's
    sessions and tokens are untouched."""
    app, secret = add_app()
    laptop, phone = signed_in_twice(ada)
    issued = tokens(laptop, app, secret)
    code, verifier = authorize(phone, app)
    device = set_up_device(ada.user, "Pixel 9 Pro")
    do_send_push(ada.user.username, Origin.cli(), get_policy())
    assert device_request(device, PENDING_PATH).json()["approvals"]
    link = do_issue_recovery(ada.user, Origin.cli(), send_email=False).link
    grace = enrolled_person("grace@example.com", "Grace Hopper")
    graces = Browser()
    assert_ok(sign_in(graces, grace.authenticator))
    grace_tokens = tokens(graces, app, secret)

    assert main(["users", "deactivate", ada.user.username]) == 0
    capsys.readouterr()

    assert not laptop.is_signed_in()
    assert not phone.is_signed_in()
    assert exchange(app, secret, code, verifier).status_code == 400
    assert userinfo(issued["access_token"]).status_code == 401
    assert introspect(app, secret, issued["access_token"]) == {"active": False}
    assert refresh(app, secret, issued["refresh_token"]).status_code == 400
    assert device_request(device, PENDING_PATH).status_code != 200
    assert Browser().get(urlsplit(link).path).status_code == 404
    deactivated = AuditEvent.objects.get(action=Action.USER_DEACTIVATED)
    assert deactivated.subject_id == ada.user.pk
    assert deactivated.detail["links_revoked"] == 1
    # Grace is not Ada.
    assert graces.is_signed_in()
    assert userinfo(grace_tokens["access_token"]).status_code == 200
    assert refresh(app, secret, grace_tokens["refresh_token"]).status_code == 200

    assert main(["users", "reactivate", ada.user.username]) == 0
    capsys.readouterr()
    assert not laptop.is_signed_in()
    assert refresh(app, secret, issued["refresh_token"]).status_code == 400
    assert Browser().get(urlsplit(link).path).status_code == 404
    assert device_request(device, PENDING_PATH).status_code == 200
    assert_ok(sign_in(laptop, ada.authenticator))
    assert userinfo(tokens(laptop, app, secret)["access_token"]).status_code == 200


# --- Defects -------------------------------------------------------------------------------------


def test_sign_out_other_sessions_ends_the_codes_they_were_given(ada: Person) -> None:
    app, secret = add_app()
    laptop, phone = signed_in_twice(ada)
    code, verifier = authorize(phone, app)  # the phone's app has not exchanged it yet

    assert laptop.post_form("/settings/sessions/sign-out-others").status_code == 303
    assert not phone.is_signed_in()

    answer = exchange(app, secret, code, verifier)
    assert answer.status_code == 400, answer.content
    assert answer.json()["error"] == "invalid_grant"


def test_logging_out_of_an_app_on_the_phone_keeps_it_on_the_laptop(ada: Person) -> None:
    app, secret = add_app(backchannel_logout_uri=BACKCHANNEL)
    laptop, phone = signed_in_twice(ada)
    on_laptop = tokens(laptop, app, secret)
    on_phone = tokens(phone, app, secret)

    assert end_session(phone, on_phone["id_token"]).status_code == 200
    assert not phone.is_signed_in()
    assert laptop.is_signed_in()
    # The laptop's session was not ended, and the app was told of no other session.
    assert LogoutDelivery.objects.count() == 1

    assert userinfo(on_laptop["access_token"]).status_code == 200
    assert refresh(app, secret, on_laptop["refresh_token"]).status_code == 200


def test_an_id_token_from_another_session_asks_before_signing_this_one_out(ada: Person) -> None:
    app, secret = add_app()
    laptop, phone = signed_in_twice(ada)
    tokens(laptop, app, secret)
    from_the_phone = tokens(phone, app, secret)["id_token"]

    response = end_session(laptop, from_the_phone)

    assert response.status_code == 200
    assert b'name="allow"' in response.content  # the confirmation form
    assert laptop.is_signed_in()


def test_sign_out_of_this_app_tells_the_app(ada: Person) -> None:
    app, secret = add_app(backchannel_logout_uri=BACKCHANNEL)
    laptop = Browser()
    assert_ok(sign_in(laptop, ada.authenticator))
    tokens(laptop, app, secret)

    response = laptop.post_form(f"/settings/apps/{app.pk}/sign-out")
    assert response.status_code == 303
    assert laptop.is_signed_in()  # Threshold's own session stays, as it should

    told = LogoutDelivery.objects.filter(application=app)
    assert told.count() == 1, list(told.values("sid", "reason"))


def test_a_revoked_code_is_not_audited_as_a_replay(
    ada: Person, capsys: pytest.CaptureFixture[str]
) -> None:
    app, secret = add_app()
    phone = Browser()
    assert_ok(sign_in(phone, ada.authenticator))
    code, verifier = authorize(phone, app)
    assert main(["users", "lock", ada.user.username, "--reason", "laptop stolen"]) == 0
    capsys.readouterr()

    assert exchange(app, secret, code, verifier).status_code == 400

    refused = AuditEvent.objects.get(action=Action.SSO_TOKEN_REFUSED)
    assert refused.reason != "code_replayed"


def test_tokens_revoked_by_the_help_desk_name_the_help_desk(ada: Person) -> None:
    app, secret = add_app()
    laptop = Browser()
    assert_ok(sign_in(laptop, ada.authenticator))
    tokens(laptop, app, secret)
    desk, desk_browser = staff("hal@example.com", Role.HELP_DESK)

    assert post(desk_browser, f"/admin/people/{ada.user.pk}/sessions/end").status_code == 303

    revoked = AuditEvent.objects.get(action=Action.SSO_TOKENS_REVOKED)
    assert revoked.subject_id == ada.user.pk
    assert revoked.actor_id == desk.user.pk


def test_the_email_says_the_help_desk_removed_the_passkey(
    ada: Person, django_capture_on_commit_callbacks: Any, mailoutbox: list[Any]
) -> None:
    _desk, desk_browser = staff("hal@example.com", Role.HELP_DESK)
    path = f"/admin/people/{ada.user.pk}/passkeys/{ada.passkey.pk}/remove"

    with django_capture_on_commit_callbacks(execute=True):
        assert post(desk_browser, path).status_code == 303

    [email] = [m for m in mailoutbox if "removed" in m.subject]
    body = email.body.lower()
    assert "help desk" in body or "administrator" in body, email.body
    assert "if this was you" not in body, email.body


def test_the_help_desk_can_see_and_remove_a_lost_phone(
    ada: Person, django_capture_on_commit_callbacks: Any, mailoutbox: list[Any]
) -> None:
    device = set_up_device(ada.user, "Pixel 9 Pro")
    desk, desk_browser = staff("hal@example.com", Role.HELP_DESK)

    page = desk_browser.get(f"/admin/people/{ada.user.pk}")

    assert page.status_code == 200
    assert Device.objects.get(user=ada.user).is_active
    assert "Pixel 9 Pro" in page.content.decode()

    path = f"/admin/people/{ada.user.pk}/devices/{device.device_id}/remove"
    asked = desk_browser.get(path)
    assert asked.status_code == 200
    assert "Pixel 9 Pro" in asked.content.decode()
    assert Device.objects.get(user=ada.user).is_active  # asking removes nothing
    with django_capture_on_commit_callbacks(execute=True):
        assert post(desk_browser, path).status_code == 303

    assert not Device.objects.get(user=ada.user).is_active
    assert device_request(device, PENDING_PATH).status_code == 401
    removed = AuditEvent.objects.get(action=Action.DEVICE_REMOVED)
    assert removed.actor == desk.user
    assert removed.subject == ada.user
    [email] = [m for m in mailoutbox if "removed" in m.subject]
    assert "help desk" in email.body.lower(), email.body
    # Gone: asking again, or for someone else's device, is the same 404.
    assert desk_browser.get(path).status_code == 404
