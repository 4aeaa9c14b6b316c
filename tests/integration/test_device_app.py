"""Threshold Verify's server side (issue 12): set-up codes, the signed device API, push sign-ins,
Settings' "Threshold Verify" group. Real keys sign real requests (tests/support/device.py); only the
clock is pinned. The desktop app itself runs against `threshold serve` in tests/device/."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.core import mail

import threshold.clock
from tests.integration.conftest import (
    SESSION_EXPIRED,
    Browser,
    Person,
    assert_failed,
    assert_ok,
    enrolled_person,
    last_event,
    sign_in,
)
from tests.integration.test_fallback import post
from tests.support.device import TYPE, SoftDevice
from threshold.accounts.methods import count_usable_sign_in_methods
from threshold.audit.actions import Origin
from threshold.audit.models import AuditEvent
from threshold.core.encoding import b64url_encode
from threshold.core.policy import Policy
from threshold.devices.actions import delete_expired_requests
from threshold.devices.models import Device, DeviceEnrollment, SignInApproval, UsedDeviceRequest
from threshold.policy.actions import do_update_policy, get_policy
from threshold.sessions.models import Session
from threshold.sessions.store import SIGN_IN_ACR, SIGN_IN_AMR

pytestmark = pytest.mark.django_db

DEVICE_NOT_RECOGNIZED = "Device Not Recognized"
CHECK_CLOCK = "Check Your Device\u2019s Clock"
SETUP_CODE_INVALID = "Setup Code Not Valid"
PUSH_PENDING = "Push Already Sent"
TOO_MANY = "Too Many Attempts"
NOT_APPROVED = "Sign-in Not Approved"


def new_device() -> SoftDevice:
    """A device whose clock is the server's (the test's pinned clock)."""
    return SoftDevice(now=threshold.clock.now)


def signed_in(person: Person) -> Browser:
    browser = Browser()
    assert_ok(sign_in(browser, person.authenticator))
    return browser


def api(device: SoftDevice, path: str, body: dict[str, Any] | None = None, **sign: Any):
    """POST a signed request, as Threshold Verify does."""
    compact = device.sign(path, body, **sign)
    return api_raw(path, compact)


def api_raw(path: str, compact: str):
    return Browser().client.post(path, compact, content_type="application/jose")


def show_setup_code(browser: Browser) -> tuple[str, str]:
    """Settings → Threshold Verify → Set up → Show setup code: (the code, the confirm form's
    path)."""
    response = post(browser, "/settings/device-app/set-up")
    assert response.status_code == 200, response.content[:300]
    html = response.content.decode()
    code = re.search(r'<code id="setup-code">([A-Z0-9-]+)</code>', html)
    action = re.search(r'action="(/settings/device-app/set-up/[^"]+)"', html)
    assert code, html
    assert action, html
    # The QR code carries the code in the fragment, which no browser sends to a server.
    assert 'src="data:image/svg+xml' in html
    return code.group(1), action.group(1)


def redeem(device: SoftDevice, code: str, **body: Any) -> dict[str, Any]:
    answer = assert_ok(
        api(
            device,
            "/api/device/v1/enroll",
            {
                "setup_code": code,
                "name": "Ada's laptop",
                "platform": "linux",
                "app_version": "0.1.0",
                "key_protection": "software",
                **body,
            },
            with_jwk=True,
        )
    )
    device.device_id = answer["device_id"]
    return answer


def set_up_device(person: Person, browser: Browser | None = None) -> SoftDevice:
    browser = browser or signed_in(person)
    code, action = show_setup_code(browser)
    device = new_device()
    answer = redeem(device, code)
    response = post(browser, action, returned_code=answer["returned_code"])
    assert response.status_code == 303, response.content[:300]
    return device


def send_push(browser: Browser, username: str):
    return post(browser, "/sign-in/push", username=username)


def pending(device: SoftDevice) -> list[dict[str, Any]]:
    return assert_ok(api(device, "/api/device/v1/approvals/pending"))["approvals"]


def shown_number(browser: Browser) -> int:
    html = browser.get("/sign-in/push/wait").content.decode()
    found = re.search(r'<p class="push-number" id="push-number"[^>]*>(\d\d)</p>', html)
    assert found, html
    return int(found.group(1))


def answer(device: SoftDevice, push_id: str, **body: Any):
    return api(device, "/api/device/v1/approvals/answer", {"id": push_id, **body})


# --- Set-up from Settings -----------------------------------------------------------------------


def test_setting_up_a_device_from_settings(ada, clock, django_capture_on_commit_callbacks):
    browser = signed_in(ada)
    code, action = show_setup_code(browser)
    assert re.fullmatch(r"[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}", code)
    device = new_device()
    redeemed = redeem(device, code)
    assert re.fullmatch(r"\d{6}", redeemed["returned_code"])
    # Not active until the person types the returned code into the same page.
    assert assert_ok(api(device, "/api/device/v1/enrollment"))["state"] == "waiting"
    assert_failed(api(device, "/api/device/v1/approvals/pending"), 401, DEVICE_NOT_RECOGNIZED)
    with django_capture_on_commit_callbacks(execute=True):
        response = post(browser, action, returned_code=redeemed["returned_code"])
    assert response.status_code == 303
    assert response["Location"] == "/settings?done=device-added"
    assert assert_ok(api(device, "/api/device/v1/enrollment"))["state"] == "done"
    stored = Device.objects.get(public_id=device.device_id)
    assert (stored.user, stored.is_active, stored.key_protection) == (ada.user, True, "software")
    assert last_event("device.added").subject == ada.user
    assert "Threshold Verify was set up" in mail.outbox[-1].subject
    settings_page = browser.get("/settings").content.decode()
    assert f'id="device-{device.device_id}"' in settings_page
    assert "Ada&#x27;s laptop" in settings_page or "Ada's laptop" in settings_page
    assert "Software key" in settings_page


def test_three_wrong_returned_codes_cancel_the_set_up(ada, clock):
    browser = signed_in(ada)
    code, action = show_setup_code(browser)
    device = new_device()
    right = redeem(device, code)["returned_code"]
    wrong = f"{(int(right) + 1) % 10**6:06d}"
    for _ in range(2):
        response = post(browser, action, returned_code=wrong)
        assert response.status_code == 400
        assert "Incorrect code" in response.content.decode()
    response = post(browser, action, returned_code=wrong)
    assert response.status_code == 400
    assert SETUP_CODE_INVALID in response.content.decode()
    # Canceled: the right code no longer helps, and the device never becomes active.
    response = post(browser, action, returned_code=right)
    assert SETUP_CODE_INVALID in response.content.decode()
    assert assert_ok(api(device, "/api/device/v1/enrollment"))["state"] == "canceled"
    assert not Device.objects.get(public_id=device.device_id).is_active
    assert last_event("device.enrollment_canceled").reason == "returned_code_incorrect"


def test_a_setup_code_works_once_and_for_ten_minutes(ada, clock):
    browser = signed_in(ada)
    code, _ = show_setup_code(browser)
    redeem(new_device(), code)
    again = api(new_device(), "/api/device/v1/enroll", {"setup_code": code}, with_jwk=True)
    assert_failed(again, 400, SETUP_CODE_INVALID)

    late, _ = show_setup_code(browser)
    clock.advance(601)
    device = SoftDevice(now=lambda: clock.now)
    response = api(device, "/api/device/v1/enroll", {"setup_code": late}, with_jwk=True)
    assert_failed(response, 400, SETUP_CODE_INVALID)
    # Only the first redemption stored a device, and it is not active.
    assert list(Device.objects.filter(user=ada.user).values_list("is_active", flat=True)) == [False]


def test_one_key_is_one_device_across_accounts(ada, clock):
    """A key set up for one person is refused for another, in the catalog's words: nothing
    is stored for it, and the setup code it tried is used up, as every refused one is."""
    device = new_device()
    redeem(device, show_setup_code(signed_in(ada))[0])
    grace = enrolled_person("grace@example.com", "Grace Hopper")
    code, _ = show_setup_code(signed_in(grace))
    body = {"setup_code": code, "platform": "linux", "key_protection": "software"}
    response = api(device, "/api/device/v1/enroll", body, with_jwk=True)
    assert_failed(response, 400, "Session Expired")
    assert response.json()["error"]["code"] == "bad_request"
    assert list(Device.objects.values_list("user__username", flat=True)) == ["ada@example.com"]
    event = last_event("device.enrollment_refused")
    assert (event.subject, event.reason) == (grace.user, "device_request_malformed")
    assert DeviceEnrollment.objects.get(user=grace.user).state == "canceled"


def test_a_setup_code_is_stored_as_an_hmac_only(ada, clock):
    code, _ = show_setup_code(signed_in(ada))
    plain = code.replace("-", "")
    stored = DeviceEnrollment.objects.get(user=ada.user)
    assert plain not in stored.code_hash
    assert len(stored.code_hash) == 64


def test_set_up_needs_a_recent_step_up(ada, clock):
    browser = signed_in(ada)
    clock.advance(301)
    response = post(browser, "/settings/device-app/set-up")
    assert response.status_code in (302, 303)
    assert response["Location"].startswith("/settings/verify")


# --- Signed requests ---------------------------------------------------------------------------


def test_a_replayed_signed_request_is_refused(ada, clock):
    device = set_up_device(ada)
    compact = device.sign("/api/device/v1/approvals/pending")
    assert_ok(api_raw("/api/device/v1/approvals/pending", compact))
    body = assert_failed(api_raw("/api/device/v1/approvals/pending", compact), 400, SESSION_EXPIRED)
    assert body["error"]["code"] == "session_expired"
    assert last_event("device.request_refused").reason == "device_request_replayed"


def test_clock_skew_beyond_two_minutes_is_refused(ada, clock):
    device = set_up_device(ada)
    path = "/api/device/v1/approvals/pending"
    assert_failed(api(device, path, iat=clock.now - 150), 400, CHECK_CLOCK)
    assert_failed(api(device, path, iat=clock.now + 150), 400, CHECK_CLOCK)
    assert_failed(api(device, path, lifetime=600), 400, CHECK_CLOCK)
    # Within the skew, it is fine.
    assert_ok(api(device, path, iat=clock.now - 100, lifetime=110))
    assert last_event("device.request_refused").reason == "device_clock_skew"


def test_a_request_signed_by_another_key_is_refused_with_401(ada, clock):
    device = set_up_device(ada)
    forged = SoftDevice().key
    response = api(device, "/api/device/v1/approvals/pending", key=forged)
    assert_failed(response, 401, DEVICE_NOT_RECOGNIZED)
    assert last_event("device.request_refused").reason == "device_signature_invalid"


def test_unknown_device_and_malformed_requests(ada, clock):
    stranger = SoftDevice(device_id="no-such-device")
    assert_failed(api(stranger, "/api/device/v1/approvals/pending"), 401, DEVICE_NOT_RECOGNIZED)
    for raw in ("", "not a jws", "a.b.c", "\u00e9.b.c"):
        response = Browser().client.post(
            "/api/device/v1/approvals/pending", raw.encode(), content_type="application/jose"
        )
        assert_failed(response, 400, SESSION_EXPIRED)  # bad_request reads "Session Expired"
    device = set_up_device(ada)
    # Signed for one endpoint, sent to another.
    compact = device.sign("/api/device/v1/account")
    assert_failed(api_raw("/api/device/v1/approvals/pending", compact), 400, SESSION_EXPIRED)
    # Another algorithm than ES256: the header says HS256 over an ES256 signature.
    _header, payload, signature = device.sign("/api/device/v1/account").split(".")
    hs256 = b64url_encode(
        json.dumps({"alg": "HS256", "typ": TYPE, "kid": device.device_id}).encode()
    )
    response = api_raw("/api/device/v1/account", f"{hs256}.{payload}.{signature}")
    assert_failed(response, 400, SESSION_EXPIRED)
    assert Browser().client.get("/api/device/v1/account").status_code == 405
    # A well-signed request sent as another type than docs/device-api.md's application/jose.
    for content_type in ("application/json", "text/plain", "application/x-www-form-urlencoded"):
        response = Browser().client.post(
            "/api/device/v1/account",
            device.sign("/api/device/v1/account"),
            content_type=content_type,
        )
        assert_failed(response, 400, SESSION_EXPIRED)
    assert_ok(api(device, "/api/device/v1/account"))


def test_a_removed_device_gets_401(ada, clock, django_capture_on_commit_callbacks):
    browser = signed_in(ada)
    device = set_up_device(ada, browser)
    page = browser.get(f"/settings/device-app/{device.device_id}/remove")
    assert "button danger" in page.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = post(browser, f"/settings/device-app/{device.device_id}/remove")
    assert response.status_code == 303
    assert "A device was removed" in mail.outbox[-1].subject
    assert_failed(api(device, "/api/device/v1/approvals/pending"), 401, DEVICE_NOT_RECOGNIZED)
    assert last_event("device.request_refused").reason == "device_removed"
    assert f'id="device-{device.device_id}"' not in browser.get("/settings").content.decode()


def test_the_app_removes_its_own_account(ada, clock):
    device = set_up_device(ada)
    assert assert_ok(api(device, "/api/device/v1/remove"))["state"] == "removed"
    assert_failed(api(device, "/api/device/v1/account"), 401, DEVICE_NOT_RECOGNIZED)


def test_renaming_a_device(ada, clock):
    browser = signed_in(ada)
    device = set_up_device(ada, browser)
    response = post(browser, f"/settings/device-app/{device.device_id}/rename", nickname="Work Mac")
    assert response.status_code == 303
    assert Device.objects.get(public_id=device.device_id).name == "Work Mac"
    response = post(browser, f"/settings/device-app/{device.device_id}/rename", nickname="<b>")
    assert response.status_code == 400


def device_field(html: str, device_id: str) -> str:
    match = re.search(rf'<input id="device-name-{device_id}"[^>]*>', html)
    assert match, f"no nickname field for device {device_id}"
    return match.group(0)


def test_a_refused_device_nickname_is_kept_and_its_error_tied_to_the_field(ada, clock):
    """As a passkey's (test_security_methods.py): the limit stated, and a refused nickname
    back on Settings as typed, its form open, the field invalid and described by the error."""
    browser = signed_in(ada)
    device = set_up_device(ada, browser)
    key = device.device_id
    before = Device.objects.get(public_id=key).name
    html = browser.get("/settings").content.decode()
    assert f'<p class="hint" id="device-name-{key}-hint">Up to 60 characters.</p>' in html
    field = device_field(html, key)
    assert f'aria-describedby="device-name-{key}-hint"' in field
    assert "aria-invalid" not in field

    response = post(browser, f"/settings/device-app/{key}/rename", nickname="Work <laptop>")
    assert response.status_code == 400
    html = response.content.decode()
    assert re.search(
        rf'<li id="device-{key}" class="method">.*?<details class="rename" open>', html, re.S
    )
    field = device_field(html, key)
    assert 'value="Work &lt;laptop&gt;"' in field
    assert 'aria-invalid="true"' in field
    assert f'aria-describedby="device-name-{key}-error device-name-{key}-hint"' in field
    error = re.search(
        rf'<p class="notice error" id="device-name-{key}-error">(.*?)</p>', html, re.S
    )
    assert error, html
    assert "Name Not Saved" in error.group(1)
    assert "Enter a name that is not empty and not too long" in error.group(1)
    assert "Up to 60 characters." in html
    # Only that device's form: the passkeys' stay closed and as they were.
    assert '<details class="rename" open>' not in html.split('id="device-app"')[0]
    assert Device.objects.get(public_id=key).name == before
    assert not AuditEvent.objects.filter(action="device.renamed").exists()
    # Shown again without control or text-direction characters; never a 500.
    for nickname, shown in (("Key\u202egnp.exe\x00", "Keygnp.exe"), ("", ""), ("x" * 61, "x" * 61)):
        refused = post(browser, f"/settings/device-app/{key}/rename", nickname=nickname)
        assert refused.status_code == 400
        assert f'value="{shown}"' in device_field(refused.content.decode(), key)
    # Corrected: saved.
    response = post(browser, f"/settings/device-app/{key}/rename", nickname="Work laptop")
    assert response["Location"] == "/settings?done=device-renamed#device-app"
    assert Device.objects.get(public_id=key).name == "Work laptop"


def test_another_persons_device_reads_as_missing(ada, clock):
    device = set_up_device(ada)
    grace = enrolled_person("grace@example.com", "Grace Hopper")
    browser = signed_in(grace)
    response = post(browser, f"/settings/device-app/{device.device_id}/remove")
    assert response.status_code == 404
    assert Device.objects.get(public_id=device.device_id).revoked_at is None
    response = post(browser, f"/settings/device-app/{device.device_id}/rename", nickname="Mine")
    assert response.status_code == 404
    assert Device.objects.get(public_id=device.device_id).name != "Mine"


def test_the_last_usable_method_cannot_be_removed(ada, clock):
    browser = signed_in(ada)
    device = set_up_device(ada, browser)
    # Her passkey is no longer allowed: the device is her only usable way in.
    do_update_policy(Policy(aaguid_deny_list=(str(ada.passkey.aaguid),)), Origin.cli())
    assert count_usable_sign_in_methods(ada.user, get_policy()) == 1
    response = post(browser, f"/settings/device-app/{device.device_id}/remove")
    assert response.status_code == 409
    assert Device.objects.get(public_id=device.device_id).revoked_at is None
    assert last_event("device.removal_refused").reason == "last_method"


def test_the_device_limit(ada, clock):
    do_update_policy(Policy(device_limit=1), Origin.cli())
    browser = signed_in(ada)
    set_up_device(ada, browser)
    response = post(browser, "/settings/device-app/set-up")
    assert response.status_code == 400
    assert "Device Limit Reached" in response.content.decode()


# --- Add Account to Another Device --------------------------------------------------------------


def test_add_account_to_another_device(ada, clock, django_capture_on_commit_callbacks):
    first = set_up_device(ada)
    refused = api(first, "/api/device/v1/setup-codes", {})
    assert_failed(refused, 400, "We could not verify you")
    issued = assert_ok(api(first, "/api/device/v1/setup-codes", {"user_verified": True}))
    second = new_device()
    returned = redeem(second, issued["setup_code"], name="Ada's phone")["returned_code"]
    wrong = assert_failed(
        api(
            first,
            "/api/device/v1/setup-codes/confirm",
            {
                "enrollment_id": issued["enrollment_id"],
                "returned_code": "000000" if returned != "000000" else "111111",
            },
        ),
        400,
        "Incorrect code",
    )
    assert wrong["error"]["code"] == "returned_code_invalid"
    with django_capture_on_commit_callbacks(execute=True):
        done = assert_ok(
            api(
                first,
                "/api/device/v1/setup-codes/confirm",
                {"enrollment_id": issued["enrollment_id"], "returned_code": returned},
            )
        )
    assert done["device_name"] == "Ada's phone"
    assert assert_ok(api(second, "/api/device/v1/enrollment"))["state"] == "done"
    assert assert_ok(api(second, "/api/device/v1/account"))["username"] == "ada@example.com"
    assert last_event("device.added").detail["from_device"] == first.device_id
    # Another person's device cannot confirm it.
    grace_device = set_up_device(enrolled_person("grace@example.com", "Grace Hopper"))
    response = api(
        grace_device,
        "/api/device/v1/setup-codes/confirm",
        {"enrollment_id": issued["enrollment_id"], "returned_code": returned},
    )
    assert_failed(response, 400, SETUP_CODE_INVALID)


# --- Push sign-in --------------------------------------------------------------------------------


def test_sign_in_with_a_push(ada, clock, django_capture_on_commit_callbacks):
    device = set_up_device(ada)
    browser = Browser()
    assert 'id="push-button"' in browser.get("/sign-in").content.decode()
    response = send_push(browser, "Ada@Example.com")
    assert response.status_code == 303
    number = shown_number(browser)
    assert 10 <= number <= 99
    [push] = pending(device)
    assert push["browser"]
    assert push["ip"] == "203.0.113.7"
    assert browser.get("/sign-in/push/state").json() == {"state": "pending"}
    # Still waiting: the finish form goes back to the number.
    assert post(browser, "/sign-in/push/finish").status_code == 303
    assert not browser.is_signed_in()
    with django_capture_on_commit_callbacks(execute=True):
        state = answer(
            device, push["id"], decision="approve", number=str(number), user_verified=True
        )
    assert assert_ok(state)["state"] == "approved"
    assert "was approved in Threshold Verify" in mail.outbox[-1].subject
    assert "IP address 203.0.113.7" in mail.outbox[-1].body
    assert browser.get("/sign-in/push/state").json() == {"state": "approved"}
    response = post(browser, "/sign-in/push/finish")
    assert response.status_code == 303
    assert browser.is_signed_in()
    assert Session.objects.filter(user=ada.user, sign_in_method="device_app").count() == 1
    # Multi-factor, never phishing-resistant (RFC 8176 amr; no phr acr): a software key here.
    data = Session.objects.get(session_key=browser.session_key).get_decoded()
    assert (data[SIGN_IN_AMR], data[SIGN_IN_ACR]) == (["pop", "swk", "mfa"], None)
    event = last_event("sign_in.succeeded")
    assert event.detail["method"] == "device_app"
    assert event.detail["phishing_resistant"] is False
    # Used once; and a push sign-in is no step-up for removing a method (only for adding a
    # passkey, as a password and code sign-in: test_push_step_up.py).
    assert post(Browser(), "/sign-in/push/finish").status_code == 400
    response = browser.get(f"/settings/device-app/{device.device_id}/remove")
    assert response["Location"].startswith("/settings/verify")


def test_a_wrong_number_ends_the_push(ada, clock):
    device = set_up_device(ada)
    browser = Browser()
    send_push(browser, "ada@example.com")
    number = shown_number(browser)
    [push] = pending(device)
    wrong = str(number % 90 + 10)
    response = answer(device, push["id"], decision="approve", number=wrong, user_verified=True)
    assert_failed(response, 400, NOT_APPROVED)
    assert browser.get("/sign-in/push/state").json() == {"state": "refused"}
    response = post(browser, "/sign-in/push/finish")
    assert response.status_code == 400
    assert NOT_APPROVED in response.content.decode()
    assert not browser.is_signed_in()
    # Ended: the right number no longer approves it.
    again = answer(device, push["id"], decision="approve", number=str(number), user_verified=True)
    assert_failed(again, 400, SESSION_EXPIRED)
    assert last_event("push.refused").reason == "push_number_wrong"


def test_an_approval_needs_the_persons_verification(ada, clock):
    device = set_up_device(ada)
    browser = Browser()
    send_push(browser, "ada@example.com")
    [push] = pending(device)
    response = answer(device, push["id"], decision="approve", number=str(shown_number(browser)))
    assert_failed(response, 400, "We could not verify you")
    assert browser.get("/sign-in/push/state").json() == {"state": "pending"}


def test_one_push_waits_at_a_time_and_three_per_ten_minutes(ada, clock):
    device = set_up_device(ada)
    browser = Browser()
    send_push(browser, "ada@example.com")
    response = send_push(Browser(), "ada@example.com")
    assert response.status_code == 409
    assert PUSH_PENDING in response.content.decode()
    for _ in range(2):
        [push] = pending(device)
        answer(device, push["id"], decision="approve", number="0", user_verified=True)
        send_push(Browser(), "ada@example.com")
    [push] = pending(device)
    answer(device, push["id"], decision="approve", number="0", user_verified=True)
    response = send_push(Browser(), "ada@example.com")
    assert response.status_code == 429
    assert TOO_MANY in response.content.decode()
    clock.advance(601)
    assert send_push(Browser(), "ada@example.com").status_code == 303


def test_a_push_expires_after_two_minutes(ada, clock):
    device = set_up_device(ada)
    device.now = lambda: clock.now
    browser = Browser()
    send_push(browser, "ada@example.com")
    number = shown_number(browser)
    [push] = pending(device)
    clock.advance(121)
    assert pending(device) == []
    assert browser.get("/sign-in/push/state").json() == {"state": "expired"}
    response = answer(
        device, push["id"], decision="approve", number=str(number), user_verified=True
    )
    assert_failed(response, 400, SESSION_EXPIRED)
    page = browser.get("/sign-in/push/wait")
    assert page.status_code == 400
    assert SESSION_EXPIRED in page.content.decode()
    # No longer waiting: another push may be sent.
    assert send_push(Browser(), "ada@example.com").status_code == 303


def test_i_didnt_do_this_denies_mutes_and_emails(ada, clock, django_capture_on_commit_callbacks):
    device = set_up_device(ada)
    browser = Browser()
    send_push(browser, "ada@example.com")
    [push] = pending(device)
    with django_capture_on_commit_callbacks(execute=True):
        assert assert_ok(answer(device, push["id"], decision="deny"))["state"] == "denied"
    assert "was denied" in mail.outbox[-1].subject
    assert "paused for twenty minutes" in mail.outbox[-1].body
    assert last_event("push.denied").subject == ada.user
    response = post(browser, "/sign-in/push/finish")
    assert NOT_APPROVED in response.content.decode()
    # Muted for twenty minutes: the browser sees a push as ever, the device sees none.
    muted = Browser()
    assert send_push(muted, "ada@example.com").status_code == 303
    assert shown_number(muted)
    assert pending(device) == []
    assert last_event("push.sent").reason == "muted"
    clock.advance(20 * 60 + 1)
    send_push(Browser(), "ada@example.com")
    assert len(pending(device)) == 1


def test_an_unknown_username_reads_like_a_person_without_a_device(ada, clock):
    def journey(username: str) -> tuple[int, str, int, str]:
        browser = Browser()
        response = send_push(browser, username)
        location = response["Location"]
        page = browser.get("/sign-in/push/wait")
        html = re.sub(r"\b\d\d\b", "NN", page.content.decode())
        html = re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", html)
        return response.status_code, location, page.status_code, html

    known = journey("ada@example.com")  # Ada has no device
    unknown = journey("nobody@example.com")
    assert known == unknown
    assert known[0] == 303
    # The limits count the same for both.
    for username in ("ada@example.com", "nobody@example.com"):
        assert send_push(Browser(), username).status_code == 409
    assert SignInApproval.objects.filter(is_delivered=True).count() == 0


def test_the_policy_can_turn_push_sign_in_off(ada, clock):
    set_up_device(ada)
    do_update_policy(Policy(allow_device_app_sign_in=False), Origin.cli())
    browser = Browser()
    assert 'id="push-button"' not in browser.get("/sign-in").content.decode()
    response = send_push(browser, "ada@example.com")
    assert response.status_code == 403
    assert "Device App Sign-in Not Available" in response.content.decode()
    # Devices no longer count towards the last-method rule.
    assert count_usable_sign_in_methods(ada.user, get_policy()) == 1


def test_used_request_ids_are_cleaned_up(ada, clock):
    device = set_up_device(ada)
    device.now = lambda: clock.now
    api(device, "/api/device/v1/account")
    assert UsedDeviceRequest.objects.count() >= 2
    clock.advance(181)
    assert delete_expired_requests() >= 2
    assert UsedDeviceRequest.objects.count() == 0
    # A day on, pushes and set-ups that are over go too; the device and the audit log stay.
    send_push(Browser(), "ada@example.com")
    unfinished_code, _ = show_setup_code(signed_in(ada))
    redeem(new_device(), unfinished_code)
    clock.advance(24 * 3600 + 601)
    delete_expired_requests()
    assert SignInApproval.objects.count() == 0
    assert DeviceEnrollment.objects.count() == 0
    assert list(Device.objects.values_list("public_id", flat=True)) == [device.device_id]
    assert AuditEvent.objects.filter(action="device.added").count() == 1


def test_one_network_sends_at_most_thirty_pushes_in_ten_minutes(ada, clock):
    for number in range(30):
        assert send_push(Browser(), f"someone-{number}@example.com").status_code == 303
    response = send_push(Browser(), "ada@example.com")
    assert response.status_code == 429
    assert TOO_MANY in response.content.decode()
    # Another network is not held back by this one.
    elsewhere = Browser(REMOTE_ADDR="198.51.100.9")
    assert send_push(elsewhere, "ada@example.com").status_code == 303
    # Nor is an address every client shares (a proxy on this machine) ever counted.
    for number in range(31):
        local = Browser(REMOTE_ADDR="127.0.0.1")
        assert send_push(local, f"local-{number}@example.com").status_code == 303
