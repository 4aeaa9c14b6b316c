"""Threshold Verify on a phone (issue 12, item 6): the web app at /verify/, its manifest and
service worker, and "Enable screen lock confirmation", the device's own WebAuthn credential
that every approval must then assert with user verification. Real keys sign real requests
(tests/support/device.py) and a software authenticator answers the WebAuthn ceremonies
(tests/support/authenticator.py); only the clock is pinned."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.integration.conftest import (
    NOT_VERIFIED,
    ORIGIN,
    SESSION_EXPIRED,
    Browser,
    assert_failed,
    assert_ok,
    last_event,
)
from tests.integration.test_device_app import (
    answer,
    api,
    api_raw,
    pending,
    send_push,
    set_up_device,
    shown_number,
    signed_in,
)
from tests.integration.test_fallback import post
from tests.support.authenticator import SoftAuthenticator
from tests.support.device import SoftDevice
from threshold.devices.models import Device

pytestmark = pytest.mark.django_db

LOCK = "/api/device/v1/screen-lock"
LOCK_OPTIONS = "/api/device/v1/screen-lock/options"
APPROVAL_OPTIONS = "/api/device/v1/approvals/options"
VERIFICATION_FAILED = "Verification failed"


def stored(device: SoftDevice) -> Device:
    return Device.objects.get(public_id=device.device_id)


def enable_screen_lock(device: SoftDevice, phone: SoftAuthenticator) -> dict[str, Any]:
    options = assert_ok(api(device, LOCK_OPTIONS))["options"]
    credential = phone.create(options, ORIGIN)
    assert_ok(api(device, LOCK, {"credential": credential}))
    return options


def push_waiting(device: SoftDevice) -> tuple[Browser, str, int]:
    browser = Browser()
    send_push(browser, "ada@example.com")
    [push] = pending(device)
    return browser, push["id"], shown_number(browser)


def assertion_for(device: SoftDevice, phone: SoftAuthenticator, push_id: str, **get: Any):
    options = assert_ok(api(device, APPROVAL_OPTIONS, {"id": push_id}))["options"]
    return phone.get(options, ORIGIN, **get)


# --- The app's shell: page, manifest, service worker ---------------------------------------------


def test_the_web_app_is_installable(client):
    page = client.get("/verify/")
    assert page.status_code == 200
    html = page.content.decode()
    assert '<link rel="manifest" href="/verify/manifest.webmanifest">' in html
    assert '<meta name="apple-mobile-web-app-capable" content="yes">' in html
    assert 'rel="apple-touch-icon"' in html
    assert '<meta name="theme-color"' in html
    assert "<script>" not in html  # strict CSP: no inline script
    csp = page["Content-Security-Policy"]
    assert "manifest-src 'self'" in csp
    assert "worker-src 'self'" in csp

    manifest = client.get("/verify/manifest.webmanifest")
    assert manifest["Content-Type"] == "application/manifest+json"
    data = json.loads(manifest.content)
    assert data["name"] == "Threshold Verify"
    assert (data["start_url"], data["scope"], data["display"]) == (
        "/verify/",
        "/verify/",
        "standalone",
    )
    sizes = {icon["sizes"] for icon in data["icons"] if icon["type"] == "image/png"}
    assert sizes == {"192x192", "512x512"}

    worker = client.get("/verify/service-worker.js")
    assert worker.status_code == 200
    assert worker["Content-Type"].startswith("text/javascript")
    body = worker.content.decode()
    assert '"/verify/"' in body
    assert "&quot;" not in body  # the shell's list is JavaScript, not escaped HTML


def test_the_set_up_page_links_to_the_web_app_with_the_code_in_the_fragment(ada, clock):
    browser = signed_in(ada)
    html = post(browser, "/settings/device-app/set-up").content.decode()
    assert 'id="setup-link" href="http://localhost:8000/verify/#setup=' in html


# --- Enable screen lock confirmation --------------------------------------------------------------


def test_enabling_screen_lock_stores_a_credential_bound_to_the_device(ada, clock):
    device = set_up_device(ada)
    phone = SoftAuthenticator()
    assert assert_ok(api(device, "/api/device/v1/account"))["screen_lock"] is False
    options = enable_screen_lock(device, phone)
    # User verification required; not discoverable, so no passkey list ever offers it.
    selection = options["authenticatorSelection"]
    assert selection["userVerification"] == "required"
    assert selection["residentKey"] == "discouraged"
    assert stored(device).has_screen_lock
    assert assert_ok(api(device, "/api/device/v1/account"))["screen_lock"] is True
    assert last_event("device.screen_lock_enabled").detail["device"] == device.device_id
    # It is the device app's, not a passkey: the person still has one passkey.
    assert ada.user.passkeys.count() == 1
    # Once only: the device's key alone cannot swap in another authenticator.
    assert_failed(api(device, LOCK_OPTIONS), 400, SESSION_EXPIRED)


def test_bad_screen_lock_registrations_are_refused_and_store_nothing(ada, clock):
    device = set_up_device(ada)
    phone = SoftAuthenticator()
    # No ceremony waiting.
    assert_failed(api(device, LOCK, {"credential": {}}), 400, SESSION_EXPIRED)
    # Not a credential.
    assert_ok(api(device, LOCK_OPTIONS))
    assert_failed(api(device, LOCK, {"credential": "nonsense"}), 400, VERIFICATION_FAILED)
    # The ceremony was used up by that attempt.
    options = assert_ok(api(device, LOCK_OPTIONS))["options"]
    credential = phone.create(options, ORIGIN)
    assert_ok(api(device, LOCK_OPTIONS))  # a fresh ceremony: the earlier challenge is gone
    assert_failed(api(device, LOCK, {"credential": credential}), 400, VERIFICATION_FAILED)
    # Without user verification.
    options = assert_ok(api(device, LOCK_OPTIONS))["options"]
    no_uv = SoftAuthenticator(user_verified=False).create(options, ORIGIN)
    assert_failed(api(device, LOCK, {"credential": no_uv}), 400, NOT_VERIFIED)
    assert not stored(device).has_screen_lock
    assert last_event("device.screen_lock_refused").reason == "user_not_verified"


def test_a_replayed_registration_request_is_refused(ada, clock):
    device = set_up_device(ada)
    options = assert_ok(api(device, LOCK_OPTIONS))["options"]
    credential = SoftAuthenticator().create(options, ORIGIN)
    compact = device.sign(LOCK, {"credential": credential})
    assert_ok(api_raw(LOCK, compact))
    assert_failed(api_raw(LOCK, compact), 400, SESSION_EXPIRED)


# --- Approvals with screen lock confirmation ------------------------------------------------------


def test_an_approval_needs_a_user_verified_assertion_once_screen_lock_is_on(ada, clock):
    device = set_up_device(ada)
    phone = SoftAuthenticator()
    enable_screen_lock(device, phone)
    browser, push_id, number = push_waiting(device)
    # The device's word for it is not enough any more.
    response = answer(device, push_id, decision="approve", number=str(number), user_verified=True)
    assert_failed(response, 400, NOT_VERIFIED)
    # Not an assertion at all.
    response = answer(device, push_id, decision="approve", number=str(number), assertion="x")
    assert_failed(response, 400, NOT_VERIFIED)
    # An assertion without user verification.
    assertion = assertion_for(device, phone, push_id, user_verified=False)
    response = answer(device, push_id, decision="approve", number=str(number), assertion=assertion)
    assert_failed(response, 400, NOT_VERIFIED)
    assert last_event("device.request_refused").reason == "user_not_verified"
    # Another authenticator's assertion.
    options = assert_ok(api(device, APPROVAL_OPTIONS, {"id": push_id}))["options"]
    stranger = SoftAuthenticator()
    stranger.create(
        {
            "rp": {"id": options["rpId"]},
            "user": {"id": "AAAA"},
            "challenge": "AAAA",
            "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
        },
        ORIGIN,
    )
    forged = stranger.get(options, ORIGIN, credential=stranger.credentials[0])
    response = answer(device, push_id, decision="approve", number=str(number), assertion=forged)
    assert_failed(response, 400, NOT_VERIFIED)
    assert browser.get("/sign-in/push/state").json() == {"state": "pending"}
    # A good one: approved, and the browser signs in.
    assertion = assertion_for(device, phone, push_id)
    response = answer(device, push_id, decision="approve", number=str(number), assertion=assertion)
    assert assert_ok(response)["state"] == "approved"
    assert post(browser, "/sign-in/push/finish").status_code == 303
    assert browser.is_signed_in()
    assert stored(device).screen_lock_sign_count == phone.credentials[0].sign_count


def test_a_replayed_assertion_is_refused(ada, clock):
    device = set_up_device(ada)
    phone = SoftAuthenticator()
    enable_screen_lock(device, phone)
    _, push_id, _ = push_waiting(device)
    assertion = assertion_for(device, phone, push_id)
    # The wrong number ends the push; the ceremony is used up with it.
    response = answer(device, push_id, decision="approve", number="00", assertion=assertion)
    assert_failed(response, 400, "Sign-in Not Approved")
    # The same assertion for the next push: its challenge was used.
    clock.advance(1)
    _, next_push, next_number = push_waiting(device)
    assert_ok(api(device, APPROVAL_OPTIONS, {"id": next_push}))
    response = answer(
        device, next_push, decision="approve", number=str(next_number), assertion=assertion
    )
    assert_failed(response, 400, NOT_VERIFIED)


def test_an_assertion_for_one_push_does_not_approve_another(ada, clock):
    device = set_up_device(ada)
    phone = SoftAuthenticator()
    enable_screen_lock(device, phone)
    _, first, _ = push_waiting(device)
    # A wrong number ends the first push (and uses its ceremony up).
    refused = answer(
        device,
        first,
        decision="approve",
        number="00",
        assertion=assertion_for(device, phone, first),
    )
    assert_failed(refused, 400, "Sign-in Not Approved")
    # An assertion made for the first push, kept, offered for the next one.
    kept = assertion_for(device, phone, first)
    _, second, number = push_waiting(device)
    response = answer(device, second, decision="approve", number=str(number), assertion=kept)
    assert_failed(response, 400, NOT_VERIFIED)
    assert last_event("device.request_refused").reason == "challenge_missing"
    # "I didn't do this" needs no assertion: saying no is always possible.
    assert assert_ok(answer(device, second, decision="deny"))["state"] == "denied"


def test_approval_options_need_screen_lock_and_a_push_id(ada, clock):
    device = set_up_device(ada)
    assert_failed(api(device, APPROVAL_OPTIONS, {"id": "x"}), 400, SESSION_EXPIRED)
    enable_screen_lock(device, SoftAuthenticator())
    assert_failed(api(device, APPROVAL_OPTIONS, {"id": ["x"]}), 400, SESSION_EXPIRED)
    # Without screen lock, a device keeps approving with its own verification (the desktop app).
    other = set_up_device(ada)
    _, push_id, number = push_waiting(other)
    response = answer(other, push_id, decision="approve", number=str(number), user_verified=True)
    assert assert_ok(response)["state"] == "approved"


def test_settings_says_whether_each_device_has_screen_lock_confirmation(ada, clock):
    browser = signed_in(ada)
    phone = set_up_device(ada, browser)
    laptop = set_up_device(ada, browser)
    enable_screen_lock(phone, SoftAuthenticator())
    html = browser.get("/settings").content.decode()

    def shown_for(device: SoftDevice) -> str:
        item = re.search(rf'<li id="device-{device.device_id}".*?</li>', html, re.S)
        assert item, html
        found = re.search(r'<span class="screen-lock">([^<]*)</span>', item[0])
        assert found, item[0]
        return found[1]

    assert shown_for(phone) == "Screen lock confirmation on"
    assert shown_for(laptop) == "Screen lock confirmation off"
