""" "Add Account to Another Device" from a device with screen lock confirmation (seed 000: on
the device already set up, a phone included, "select the account and select Add Account to
Another Device"): the person confirms asking for a setup code with the screen lock, a WebAuthn
assertion the server checks (``setup-codes/options``, then ``setup-codes`` with ``assertion``),
never the device's word for it. Real keys sign real requests (tests/support/device.py) and a
software authenticator is the phone's screen lock (tests/support/authenticator.py); only the
clock is pinned."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import (
    NOT_VERIFIED,
    ORIGIN,
    SESSION_EXPIRED,
    Person,
    assert_failed,
    assert_ok,
    last_event,
)
from tests.integration.test_device_app import (
    answer,
    api,
    api_raw,
    new_device,
    redeem,
    set_up_device,
)
from tests.integration.test_verify_web_app import (
    APPROVAL_OPTIONS,
    enable_screen_lock,
    push_waiting,
    stored,
)
from tests.support.authenticator import SoftAuthenticator
from tests.support.device import SoftDevice
from threshold.audit.actions import Origin
from threshold.audit.models import AuditEvent
from threshold.core.encoding import b64url_encode
from threshold.core.policy import Policy
from threshold.devices.models import DeviceEnrollment
from threshold.policy.actions import do_update_policy
from threshold.web.qr import qr_data_uri

pytestmark = pytest.mark.django_db

SETUP_CODES = "/api/device/v1/setup-codes"
OPTIONS = "/api/device/v1/setup-codes/options"
CONFIRM = "/api/device/v1/setup-codes/confirm"


def phone_with_screen_lock(person: Person) -> tuple[SoftDevice, SoftAuthenticator]:
    """A device set up from Settings that enabled screen lock confirmation, as the phone web
    app always does before its home screen; and its screen lock."""
    device = set_up_device(person)
    screen_lock = SoftAuthenticator()
    enable_screen_lock(device, screen_lock)
    return device, screen_lock


def screen_lock_assertion(device: SoftDevice, screen_lock: SoftAuthenticator, **get: Any):
    options = assert_ok(api(device, OPTIONS))["options"]
    return screen_lock.get(options, ORIGIN, **get)


def issued_by(device: SoftDevice) -> int:
    return DeviceEnrollment.objects.filter(created_by__public_id=device.device_id).count()


def refusals_at_setup_codes(device: SoftDevice) -> list[str]:
    """The reasons of the screen lock refusals audited for ``device`` at ``setup-codes``."""
    return [
        event.reason
        for event in AuditEvent.objects.filter(action="device.request_refused").order_by("id")
        if event.detail.get("device") == device.device_id
        and event.detail.get("path") == "setup-codes"
    ]


# --- The screen lock confirms it ------------------------------------------------------------------


def test_a_screen_lock_assertion_issues_a_setup_code_the_new_device_enrolls_with(
    ada, clock, django_capture_on_commit_callbacks
):
    phone, screen_lock = phone_with_screen_lock(ada)
    options = assert_ok(api(phone, OPTIONS))["options"]
    # The phone's own screen lock credential, with user verification: no passkey list.
    assert options["userVerification"] == "required"
    [allowed] = options["allowCredentials"]
    assert allowed["id"] == b64url_encode(screen_lock.credentials[0].credential_id)
    assertion = screen_lock.get(options, ORIGIN)
    issued = assert_ok(api(phone, SETUP_CODES, {"assertion": assertion}))
    # What the phone shows: the setup code, when it expires, the QR code and the link it holds.
    code = issued["setup_code"]
    assert issued["expires_at"] == pytest.approx(clock.now + 600)
    assert issued["setup_link"] == f"{ORIGIN}/verify/#setup={code.replace('-', '')}"
    assert issued["qr_code"].startswith("data:image/svg+xml")
    assert issued["qr_code"] == qr_data_uri(issued["setup_link"])
    assert stored(phone).screen_lock_sign_count == screen_lock.credentials[0].sign_count
    assert last_event("device.setup_code_issued").detail["from_device"] == phone.device_id

    # The new device redeems it from the QR code's link; the returned code is typed on the
    # phone (a wrong one first), and needs no second assertion.
    laptop = new_device()
    returned = redeem(laptop, issued["setup_link"], name="Ada's laptop")["returned_code"]
    wrong = "000000" if returned != "000000" else "111111"
    refused = api(
        phone, CONFIRM, {"enrollment_id": issued["enrollment_id"], "returned_code": wrong}
    )
    assert assert_failed(refused, 400, "Incorrect code")["error"]["code"] == (
        "returned_code_invalid"
    )
    confirm = {"enrollment_id": issued["enrollment_id"], "returned_code": returned}
    with django_capture_on_commit_callbacks(execute=True):
        done = assert_ok(api(phone, CONFIRM, confirm))
    assert done == {
        "status": "ok",
        "errorMessage": "",
        "state": "done",
        "device_name": "Ada's laptop",
    }
    assert assert_ok(api(laptop, "/api/device/v1/enrollment"))["state"] == "done"
    assert assert_ok(api(laptop, "/api/device/v1/account"))["username"] == "ada@example.com"
    assert last_event("device.added").detail["from_device"] == phone.device_id

    # The ceremony worked once: the same assertion issues nothing more.
    again = api(phone, SETUP_CODES, {"assertion": assertion})
    assert_failed(again, 400, NOT_VERIFIED)
    assert refusals_at_setup_codes(phone) == ["challenge_missing"]
    assert issued_by(phone) == 1


def test_a_device_without_screen_lock_still_gives_its_word(ada, clock):
    """The desktop app verifies its PIN itself: ``user_verified: true``, as before; the answer
    carries the link and the QR code too."""
    laptop = set_up_device(ada)
    assert_failed(api(laptop, SETUP_CODES, {}), 400, NOT_VERIFIED)
    # An assertion is no PIN: without the device's word, nothing is issued.
    assert_failed(api(laptop, SETUP_CODES, {"assertion": {}}), 400, NOT_VERIFIED)
    assert issued_by(laptop) == 0
    # No screen lock credential: no options for one.
    assert_failed(api(laptop, OPTIONS), 400, SESSION_EXPIRED)
    issued = assert_ok(api(laptop, SETUP_CODES, {"user_verified": True}))
    assert issued["setup_link"] == f"{ORIGIN}/verify/#setup={issued['setup_code'].replace('-', '')}"
    assert issued_by(laptop) == 1


# --- Refused --------------------------------------------------------------------------------------


def test_a_screen_lock_devices_word_issues_nothing(ada, clock):
    phone, screen_lock = phone_with_screen_lock(ada)
    assert_failed(api(phone, SETUP_CODES, {"user_verified": True}), 400, NOT_VERIFIED)
    # Also with a ceremony waiting: the word is not an assertion, and uses the ceremony up.
    options = assert_ok(api(phone, OPTIONS))["options"]
    assert_failed(api(phone, SETUP_CODES, {"user_verified": True}), 400, NOT_VERIFIED)
    late = screen_lock.get(options, ORIGIN)
    assert_failed(api(phone, SETUP_CODES, {"assertion": late}), 400, NOT_VERIFIED)
    assert issued_by(phone) == 0
    # No ceremony waiting; no assertion; the ceremony that attempt used up.
    assert refusals_at_setup_codes(phone) == [
        "challenge_missing",
        "malformed_response",
        "challenge_missing",
    ]


def test_bad_assertions_are_refused_audited_and_issue_nothing(ada, clock):
    phone, screen_lock = phone_with_screen_lock(ada)

    # Without user verification.
    no_uv = screen_lock_assertion(phone, screen_lock, user_verified=False)
    assert_failed(api(phone, SETUP_CODES, {"assertion": no_uv}), 400, NOT_VERIFIED)
    assert refusals_at_setup_codes(phone)[-1] == "user_not_verified"

    # Another authenticator's credential, answering the phone's options.
    options = assert_ok(api(phone, OPTIONS))["options"]
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
    assert_failed(api(phone, SETUP_CODES, {"assertion": forged}), 400, NOT_VERIFIED)

    # A tampered signature.
    tampered = screen_lock_assertion(phone, screen_lock, tamper_signature=True)
    assert_failed(api(phone, SETUP_CODES, {"assertion": tampered}), 400, NOT_VERIFIED)

    # An assertion for options a newer request replaced.
    replaced = screen_lock_assertion(phone, screen_lock)
    assert_ok(api(phone, OPTIONS))
    assert_failed(api(phone, SETUP_CODES, {"assertion": replaced}), 400, NOT_VERIFIED)

    # An approval's ceremony is no setup code's: its assertion issues nothing...
    _, push_id, number = push_waiting(phone)
    approval_options = assert_ok(api(phone, APPROVAL_OPTIONS, {"id": push_id}))["options"]
    for_approval = screen_lock.get(approval_options, ORIGIN)
    assert_failed(api(phone, SETUP_CODES, {"assertion": for_approval}), 400, NOT_VERIFIED)
    assert refusals_at_setup_codes(phone)[-1] == "challenge_missing"
    # ... and a setup code's assertion approves no push.
    for_setup_code = screen_lock_assertion(phone, screen_lock)
    approve = {"decision": "approve", "number": str(number), "assertion": for_setup_code}
    assert_failed(answer(phone, push_id, **approve), 400, NOT_VERIFIED)
    assert last_event("device.request_refused").detail["path"] == "approvals/answer"
    assert last_event("device.request_refused").reason == "challenge_missing"

    assert issued_by(phone) == 0
    # Each refusal audited once, with the check that failed.
    assert refusals_at_setup_codes(phone) == [
        "user_not_verified",
        "credential_not_allowed",
        "signature_invalid",
        "challenge_mismatch",
        "challenge_missing",
    ]
    # A refusal tells the device only that the person was not verified.
    refused = api(phone, SETUP_CODES, {"assertion": forged})
    assert assert_failed(refused, 400, NOT_VERIFIED)["error"]["code"] == "not_verified"


def test_a_replayed_request_issues_nothing_more(ada, clock):
    phone, screen_lock = phone_with_screen_lock(ada)
    compact = phone.sign(SETUP_CODES, {"assertion": screen_lock_assertion(phone, screen_lock)})
    assert_ok(api_raw(SETUP_CODES, compact))
    assert_failed(api_raw(SETUP_CODES, compact), 400, SESSION_EXPIRED)
    assert issued_by(phone) == 1


def test_the_policy_still_decides_after_the_screen_lock(ada, clock):
    """A good assertion does not get round the policy: no device app, no setup code."""
    phone, screen_lock = phone_with_screen_lock(ada)
    assertion = screen_lock_assertion(phone, screen_lock)
    do_update_policy(Policy(allow_device_app_sign_in=False), Origin.cli())
    response = api(phone, SETUP_CODES, {"assertion": assertion})
    assert response.status_code == 403, response.content[:300]
    assert issued_by(phone) == 0


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"assertion": None},
        {"assertion": "x"},
        {"assertion": 7},
        {"assertion": []},
        {"assertion": {}},
        {"assertion": {"id": "AAAA", "type": "public-key", "response": "x"}},
        {"assertion": {"id": 5, "rawId": [], "type": "public-key", "response": {}}},
        {"assertion": {"response": {"clientDataJSON": "!!", "authenticatorData": None}}},
        {"assertion": {"a": {"b": {"c": ["d" * 1000]}}}},
    ],
)
def test_bad_input_is_refused_with_a_4xx(ada, clock, body):
    phone, _ = phone_with_screen_lock(ada)
    assert_ok(api(phone, OPTIONS, {"anything": ["ignored"]}))
    response = api(phone, SETUP_CODES, body)
    assert_failed(response, 400, NOT_VERIFIED)
    assert issued_by(phone) == 0
    assert refusals_at_setup_codes(phone) == ["malformed_response"]


def test_options_are_for_the_device_that_asks(ada, clock):
    """A ceremony begun by one device is not another's: each waits on its own device."""
    phone, screen_lock = phone_with_screen_lock(ada)
    other, other_lock = phone_with_screen_lock(ada)
    assertion = screen_lock_assertion(phone, screen_lock)
    assert_ok(api(other, OPTIONS))
    assert_failed(api(other, SETUP_CODES, {"assertion": assertion}), 400, NOT_VERIFIED)
    assert issued_by(other) == 0
    # Each device's own assertion works for it.
    assert_ok(api(phone, SETUP_CODES, {"assertion": assertion}))
    assert_ok(api(other, SETUP_CODES, {"assertion": screen_lock_assertion(other, other_lock)}))
