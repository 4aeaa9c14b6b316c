""" "Verify it's you" with a push to Threshold Verify (issue 12's device app; the seeds'
"Authenticate using Okta Verify", then "Set up"): for a signed-in person without a passkey at
hand. The push is a sign-in's push in all but its purpose (the number typed on the device,
its PIN or screen lock, the limits, the mute); approved, it counts as the password and code
do: a passkey may be added within the step-up window, nothing else. Real keys sign real
requests (tests/support/device.py); only the clock is pinned."""

from __future__ import annotations

import json
import re

import pytest
from django.core import mail

from tests.integration.conftest import (
    CLIENT_IP,
    ORIGIN,
    Browser,
    assert_ok,
    enrolled_person,
    last_event,
    sign_in,
)
from tests.integration.test_device_app import (
    answer,
    pending,
    send_push,
    set_up_device,
    shown_number,
)
from tests.integration.test_fallback import post
from tests.support.authenticator import SoftAuthenticator
from threshold.accounts.models import Role
from threshold.audit.actions import Origin
from threshold.audit.models import AuditEvent
from threshold.core import errors
from threshold.core.policy import Policy
from threshold.devices.actions import (
    do_finish_push,
    do_finish_step_up_push,
    do_send_push,
    do_send_step_up_push,
)
from threshold.devices.models import SignInApproval
from threshold.devices.views import STEP_UP_PUSH_COOKIE
from threshold.passkeys.models import Passkey
from threshold.policy.actions import do_update_policy

pytestmark = pytest.mark.django_db

ADD = "/settings/security-methods/add"
VERIFY_FOR_ADDING = "/settings/verify?next=%2Fsettings%2Fsecurity-methods%2Fadd"
PUSH_FORM = 'action="/settings/verify/push?next=%2Fsettings%2Fsecurity-methods%2Fadd"'


def signed_in_with_a_push(person, device) -> Browser:
    """Ada signs in on a borrowed computer with a push: no passkey of hers is there."""
    browser = Browser()
    send_push(browser, person.user.username)
    number = shown_number(browser)
    [push] = pending(device)
    assert_ok(
        answer(device, push["id"], decision="approve", number=str(number), user_verified=True)
    )
    assert post(browser, "/sign-in/push/finish").status_code == 303
    assert browser.is_signed_in()
    return browser


def step_up_number(browser: Browser) -> int:
    html = browser.get(f"/settings/verify/push/wait?next={ADD}").content.decode()
    found = re.search(r'<p class="push-number" id="push-number"[^>]*>(\d\d)</p>', html)
    assert found, html
    return int(found.group(1))


def test_a_push_sign_in_adds_a_passkey_after_verifying_with_a_push(
    ada, clock, django_capture_on_commit_callbacks
):
    device = set_up_device(ada)
    clock.advance(301)  # the set-up's own step-up is over
    browser = signed_in_with_a_push(ada, device)
    # "Set up another", once the push sign-in's own verification is over (five minutes).
    clock.advance(301)
    response = browser.get(ADD)
    assert response["Location"] == VERIFY_FOR_ADDING
    page = browser.get(VERIFY_FOR_ADDING).content.decode()
    assert PUSH_FORM in page
    assert "Send a push to Threshold Verify" in page

    response = post(browser, f"/settings/verify/push?next={ADD}")
    assert response.status_code == 303
    assert (
        response["Location"]
        == "/settings/verify/push/wait?next=%2Fsettings%2Fsecurity-methods%2Fadd"
    )
    number = step_up_number(browser)
    # The device is told what it approves.
    [push] = pending(device)
    assert push["purpose"] == "step_up"
    assert last_event("push.sent").detail["purpose"] == "step_up"
    assert browser.get("/settings/verify/push/state").json() == {"state": "pending"}
    with django_capture_on_commit_callbacks(execute=True):
        state = answer(
            device, push["id"], decision="approve", number=str(number), user_verified=True
        )
    assert assert_ok(state)["state"] == "approved"
    assert mail.outbox[-1].subject == (
        "\u201cVerify it\u2019s you\u201d for your Threshold account was approved in "
        "Threshold Verify"
    )
    assert "may add a passkey" in mail.outbox[-1].body
    assert browser.get("/settings/verify/push/state").json() == {"state": "approved"}
    response = post(browser, f"/settings/verify/push/finish?next={ADD}")
    assert response.status_code == 303
    assert response["Location"] == ADD
    event = last_event("step_up.succeeded")
    assert (event.subject, event.detail["method"]) == (ada.user, "device_app")
    assert event.detail["phishing_resistant"] is False
    assert event.detail["device"] == device.device_id

    # Now a passkey can be added, as after a password and code.
    assert browser.get(ADD).status_code == 200
    options = assert_ok(browser.post_json(f"{ADD}/options", {"device": "this-device"}))
    credential = SoftAuthenticator().create(options["publicKey"], ORIGIN)
    assert_ok(browser.post_json(f"{ADD}/result", credential))
    assert Passkey.objects.filter(user=ada.user).count() == 2
    # Nothing else: removing a method, or a device, still needs a passkey.
    passkey = Passkey.objects.filter(user=ada.user).first()
    assert passkey is not None
    response = browser.get(f"/settings/security-methods/{passkey.pk}/remove")
    assert response["Location"].startswith("/settings/verify?")
    assert browser.get(f"/settings/device-app/{device.device_id}/remove")["Location"].startswith(
        "/settings/verify?"
    )
    assert browser.get("/settings/device-app/set-up")["Location"].startswith("/settings/verify?")
    # Used once.
    assert post(browser, f"/settings/verify/push/finish?next={ADD}").status_code == 400
    # And for the step-up's window only.
    clock.advance(301)
    assert browser.get(ADD).status_code == 303


def test_right_after_a_push_sign_in_a_passkey_may_be_added_and_nothing_else(ada, clock):
    """A push sign-in is multi-factor, not phishing-resistant: it counts as a password and
    code sign-in does ("Set up a passkey" right after it), never as a passkey's."""
    device = set_up_device(ada)
    clock.advance(301)  # the set-up's own step-up is over
    ada.user.role = Role.ADMINISTRATOR.value
    ada.user.save(update_fields=["role"])
    browser = signed_in_with_a_push(ada, device)
    assert not AuditEvent.objects.filter(action="step_up.succeeded").exists()
    # "Set up another" opens without "Verify it's you", and adds a passkey.
    assert browser.get(ADD).status_code == 200
    options = assert_ok(browser.post_json(f"{ADD}/options", {"device": "this-device"}))
    credential = SoftAuthenticator().create(options["publicKey"], ORIGIN)
    assert_ok(browser.post_json(f"{ADD}/result", credential))
    assert Passkey.objects.filter(user=ada.user).count() == 2
    # Removing a method, setting up a device and changes in the admin portal need a passkey.
    passkey = Passkey.objects.filter(user=ada.user).first()
    assert passkey is not None
    for path in (
        f"/settings/security-methods/{passkey.pk}/remove",
        f"/settings/device-app/{device.device_id}/remove",
        "/settings/device-app/set-up",
    ):
        assert browser.get(path)["Location"].startswith("/settings/verify?"), path
    response = post(browser, f"/admin/people/{ada.user.pk}/sessions/end")
    assert response["Location"].startswith("/settings/verify?")
    assert Passkey.objects.filter(user=ada.user).count() == 2
    assert browser.is_signed_in()
    # For the step-up window only.
    clock.advance(301)
    assert browser.get(ADD)["Location"] == VERIFY_FOR_ADDING


def test_the_push_is_offered_only_where_it_opens_the_page(ada, clock):
    browser = Browser()
    assert_ok(sign_in(browser, ada.authenticator))
    # No device: nothing to offer.
    assert PUSH_FORM not in browser.get(VERIFY_FOR_ADDING).content.decode()
    device = set_up_device(ada, browser)
    clock.advance(301)
    assert PUSH_FORM in browser.get(VERIFY_FOR_ADDING).content.decode()
    passkey = Passkey.objects.get(user=ada.user)
    for target in (
        f"/settings/security-methods/{passkey.pk}/remove",
        f"/settings/device-app/{device.device_id}/remove",
        "/settings/device-app/set-up",
        "/settings/fallback/remove",
        "/admin/",
        "/settings",
    ):
        page = browser.get(f"/settings/verify?next={target}").content.decode()
        assert 'id="push-step-up"' not in page, target
    # Nor where the policy does not let the device sign in.
    do_update_policy(Policy(require_hardware_device_key=True), Origin.cli())
    assert 'id="push-step-up"' not in browser.get(VERIFY_FOR_ADDING).content.decode()
    do_update_policy(Policy(allow_device_app_sign_in=False), Origin.cli())
    assert 'id="push-step-up"' not in browser.get(VERIFY_FOR_ADDING).content.decode()
    # A push sent all the same is refused, and stores nothing.
    response = post(browser, f"/settings/verify/push?next={ADD}")
    assert response.status_code == 403
    do_update_policy(Policy(require_hardware_device_key=True), Origin.cli())
    response = post(browser, f"/settings/verify/push?next={ADD}")
    assert response.status_code == 401
    assert "Device Not Recognized" in response.content.decode()
    assert not SignInApproval.objects.exists()


def test_a_sign_in_push_is_no_step_up_and_a_step_up_push_signs_nobody_in(ada, clock):
    set_up_device(ada)
    origin, policy = Origin(ip="203.0.113.7"), Policy()
    sign_in_push = do_send_push("ada@example.com", origin, policy)
    SignInApproval.objects.filter(pk=sign_in_push.approval.pk).update(state="approved")
    with pytest.raises(errors.PushExpired):
        do_finish_step_up_push(
            sign_in_push.approval.public_id, sign_in_push.browser_secret, ada.user, origin, policy
        )
    SignInApproval.objects.all().delete()
    step_up = do_send_step_up_push(ada.user, origin, policy)
    SignInApproval.objects.filter(pk=step_up.approval.pk).update(state="approved")
    with pytest.raises(errors.PushExpired):
        do_finish_push(step_up.approval.public_id, step_up.browser_secret, origin, policy)
    # Nor for another person, whose session this is not.
    grace = enrolled_person("grace@example.com", "Grace Hopper")
    with pytest.raises(errors.PushExpired):
        do_finish_step_up_push(
            step_up.approval.public_id, step_up.browser_secret, grace.user, origin, policy
        )
    # Its own person's, once.
    do_finish_step_up_push(
        step_up.approval.public_id, step_up.browser_secret, ada.user, origin, policy
    )
    with pytest.raises(errors.PushExpired):
        do_finish_step_up_push(
            step_up.approval.public_id, step_up.browser_secret, ada.user, origin, policy
        )


def test_a_denied_step_up_push_is_refused_and_mutes_pushes(
    ada, clock, django_capture_on_commit_callbacks
):
    device = set_up_device(ada)
    browser = signed_in_with_a_push(ada, device)
    clock.advance(301)  # the push sign-in's own verification is over
    post(browser, f"/settings/verify/push?next={ADD}")
    [push] = pending(device)
    with django_capture_on_commit_callbacks(execute=True):
        assert_ok(answer(device, push["id"], decision="deny"))
    assert "Someone may be" in mail.outbox[-1].body
    response = post(browser, f"/settings/verify/push/finish?next={ADD}")
    assert_failed_page(response, 400, "Sign-in Not Approved")
    assert browser.get(f"{ADD}")["Location"] == VERIFY_FOR_ADDING


def assert_failed_page(response, status: int, title: str) -> None:
    assert response.status_code == status, response.content[:300]
    assert title in response.content.decode()


def test_cancel_ends_the_push_and_a_new_one_can_be_sent_at_once(ada, clock):
    device = set_up_device(ada)
    # A sign-in's push.
    browser = Browser()
    send_push(browser, "ada@example.com")
    page = browser.get("/sign-in/push/wait").content.decode()
    assert 'action="/sign-in/push/cancel"' in page
    response = post(browser, "/sign-in/push/cancel")
    assert (response.status_code, response["Location"]) == (303, "/sign-in")
    assert pending(device) == []
    assert browser.get("/sign-in/push/state").json() == {"state": "expired"}
    assert post(browser, "/sign-in/push/finish").status_code == 400
    # No longer waiting: another can be sent now, not in two minutes.
    assert send_push(Browser(), "ada@example.com").status_code == 303
    SignInApproval.objects.filter(state="pending").update(state="used")
    clock.advance(601)  # three pushes per ten minutes
    # "Verify it's you"'s push.
    signed_in = signed_in_with_a_push(ada, device)
    post(signed_in, f"/settings/verify/push?next={ADD}")
    page = signed_in.get(f"/settings/verify/push/wait?next={ADD}").content.decode()
    assert 'action="/settings/verify/push/cancel?next=%2Fsettings%2Fsecurity-methods%2Fadd"' in page
    response = post(signed_in, f"/settings/verify/push/cancel?next={ADD}")
    assert (response.status_code, response["Location"]) == (303, VERIFY_FOR_ADDING)
    assert pending(device) == []
    assert SignInApproval.objects.filter(state="canceled").count() == 2


def assert_keeps_secrets(detail: dict, push: SignInApproval) -> None:
    """No value of an audit row's detail is the push's number, and none holds the browser's
    secret. (The number is compared as a value: a two-digit number may well occur inside the
    push's random public ID.)"""
    assert all(value not in (push.number, str(push.number)) for value in detail.values())
    assert push.browser_binding not in json.dumps(detail)


def canceled_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="push.canceled").order_by("id"))


def test_every_cancel_is_audited_with_its_push_and_purpose(ada, clock):
    device = set_up_device(ada)
    # The sign-in's push, from its own page (no JavaScript).
    browser = Browser()
    send_push(browser, "ada@example.com")
    push = SignInApproval.objects.get(state="pending")
    post(browser, "/sign-in/push/cancel")
    [event] = canceled_events()
    assert (event.reason, event.subject, event.actor) == ("canceled_in_browser", ada.user, None)
    assert event.detail == {"push": push.public_id, "purpose": "sign_in", "delivered": True}
    assert event.ip == CLIENT_IP
    # Nothing secret: not the number, not the browser's secret or its hash.
    assert_keeps_secrets(event.detail, push)
    # Cancel again: nothing was waiting, nothing is audited.
    post(browser, "/sign-in/push/cancel")
    assert len(canceled_events()) == 1

    # The sign-in page's own Cancel (JSON), for a username nobody has: the same row, no one's.
    browser = Browser()
    assert_ok(browser.post_json("/sign-in/push/start", {"username": "nobody@example.com"}))
    assert_ok(browser.post_json("/sign-in/push/cancel", {}))
    event = canceled_events()[-1]
    assert (event.reason, event.subject, event.subject_label) == ("canceled_in_browser", None, "")
    assert (event.detail["purpose"], event.detail["delivered"]) == ("sign_in", False)

    # A push that expired before its Cancel ended by itself: no row.
    browser = Browser()
    send_push(browser, "nobody@example.com")
    clock.advance(121)
    post(browser, "/sign-in/push/cancel")
    assert len(canceled_events()) == 2

    # "Verify it's you"'s push: the signed-in person canceled it.
    clock.advance(601)  # three pushes per ten minutes
    signed_in = signed_in_with_a_push(ada, device)
    post(signed_in, f"/settings/verify/push?next={ADD}")
    push = SignInApproval.objects.get(state="pending", purpose="step_up")
    post(signed_in, f"/settings/verify/push/cancel?next={ADD}")
    event = canceled_events()[-1]
    assert (event.reason, event.subject, event.actor) == ("canceled_in_browser", ada.user, ada.user)
    assert event.detail == {"push": push.public_id, "purpose": "step_up", "delivered": True}
    assert len(canceled_events()) == 3


# --- A step-up push that fails is a failed step-up (step_up.failed), as a passkey's is ---------


def step_up_failures() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="step_up.failed").order_by("id"))


def assert_step_up_failed(person, reason: str, push: SignInApproval | None, device=None) -> None:
    """The last step_up.failed row: the person's, the reason's code, the method as the success
    row names it, the push and its device; nothing secret."""
    event = step_up_failures()[-1]
    assert (event.reason, event.actor, event.subject) == (reason, person.user, person.user)
    assert event.detail["method"] == "device_app"
    assert event.detail["push"] == (push.public_id if push else "")
    assert event.detail["device"] == (device.device_id if device else "")
    assert event.ip == CLIENT_IP
    if push is not None:
        assert_keeps_secrets(event.detail, push)


def step_up_push_sent(ada) -> tuple[Browser, object, SignInApproval]:
    """Ada, signed in with her passkey and a device set up, sends "Verify it's you"'s push."""
    browser = Browser()
    assert_ok(sign_in(browser, ada.authenticator))
    device = set_up_device(ada, browser)
    assert post(browser, f"/settings/verify/push?next={ADD}").status_code == 303
    return browser, device, SignInApproval.objects.get(purpose="step_up", state="pending")


@pytest.mark.parametrize(
    ("answered", "reason", "title"),
    [
        ("deny", "push_denied", "Sign-in Not Approved"),
        ("wrong", "push_number_wrong", "Sign-in Not Approved"),
        ("expired", "push_expired", "Session Expired"),
    ],
)
def test_a_step_up_push_that_fails_is_audited_once_where_the_page_tells_it(
    ada, clock, answered, reason, title
):
    """push.js goes back to the waiting page once the push is over: that page tells why and
    writes step_up.failed, once (a reload finds no push, and writes nothing)."""
    browser, device, push = step_up_push_sent(ada)
    if answered == "deny":
        assert_ok(answer(device, push.public_id, decision="deny"))
    elif answered == "wrong":
        wrong = str(push.number % 90 + 10)
        answer(device, push.public_id, decision="approve", number=wrong, user_verified=True)
    else:
        clock.advance(121)
    assert browser.get("/settings/verify/push/state").json()["state"] in ("refused", "expired")
    assert step_up_failures() == []
    response = browser.get(f"/settings/verify/push/wait?next={ADD}")
    assert_failed_page(response, 400, title)
    assert_step_up_failed(ada, reason, push, device if answered != "expired" else None)
    assert browser.get(f"/settings/verify/push/wait?next={ADD}").status_code == 400
    assert len(step_up_failures()) == 1
    assert not AuditEvent.objects.filter(action="step_up.succeeded").exists()


def test_a_step_up_push_that_fails_at_finish_is_audited(ada, clock):
    """Without JavaScript, "I approved it" posts finish: each refused finish is a failed
    step-up, with its reason, as each refused passkey response is."""
    browser, device, push = step_up_push_sent(ada)
    assert_ok(answer(device, push.public_id, decision="deny"))
    response = post(browser, f"/settings/verify/push/finish?next={ADD}")
    assert_failed_page(response, 400, "Sign-in Not Approved")
    assert_step_up_failed(ada, "push_denied", push, device)
    # No push in this browser at all.
    browser.client.cookies.pop("threshold_step_up_push")
    response = post(browser, f"/settings/verify/push/finish?next={ADD}")
    assert_failed_page(response, 400, "Session Expired")
    assert_step_up_failed(ada, "push_expired", None)
    assert len(step_up_failures()) == 2


def test_an_approved_step_up_push_used_twice_fails_the_second_time(ada, clock):
    browser, device, push = step_up_push_sent(ada)
    assert_ok(
        answer(
            device, push.public_id, decision="approve", number=str(push.number), user_verified=True
        )
    )
    cookie = browser.client.cookies["threshold_step_up_push"].value
    assert post(browser, f"/settings/verify/push/finish?next={ADD}").status_code == 303
    assert step_up_failures() == []
    browser.client.cookies["threshold_step_up_push"] = cookie
    assert post(browser, f"/settings/verify/push/finish?next={ADD}").status_code == 400
    assert_step_up_failed(ada, "push_expired", push, device)


def test_a_step_up_push_refused_when_sent_is_audited(ada, clock):
    """A push already waiting, the limits, the policy: refused before any push is stored, and
    audited with the refusal's code."""
    browser, _, _ = step_up_push_sent(ada)
    response = post(browser, f"/settings/verify/push?next={ADD}")
    assert_failed_page(response, 409, "Push Already Sent")
    assert_step_up_failed(ada, "push_pending", None)
    SignInApproval.objects.update(state="canceled")
    assert post(browser, f"/settings/verify/push?next={ADD}").status_code == 303
    SignInApproval.objects.update(state="canceled")
    assert post(browser, f"/settings/verify/push?next={ADD}").status_code == 303
    SignInApproval.objects.update(state="canceled")
    response = post(browser, f"/settings/verify/push?next={ADD}")
    assert response.status_code == 429
    assert_step_up_failed(ada, "push_limit_reached", None)
    do_update_policy(Policy(allow_device_app_sign_in=False), Origin.cli())
    assert post(browser, f"/settings/verify/push?next={ADD}").status_code == 403
    assert_step_up_failed(ada, "device_app_not_allowed", None)
    do_update_policy(Policy(require_hardware_device_key=True), Origin.cli())
    assert post(browser, f"/settings/verify/push?next={ADD}").status_code == 401
    assert_step_up_failed(ada, "device_unknown", None)
    assert len(step_up_failures()) == 4
    assert SignInApproval.objects.count() == 3


def test_a_failed_step_up_push_is_audited_once_and_forgotten(ada, clock):
    """A wrong number: its finish is refused and audited, and the push is forgotten with it,
    so reloading its page afterwards is no push here, not the same failure audited again."""
    device = set_up_device(ada)
    clock.advance(301)
    browser = signed_in_with_a_push(ada, device)
    clock.advance(301)
    assert post(browser, f"/settings/verify/push?next={ADD}").status_code == 303
    number = step_up_number(browser)
    [push] = pending(device)
    wrong = 10 if number != 10 else 11
    answer(device, push["id"], decision="approve", number=str(wrong), user_verified=True)
    refused = post(browser, f"/settings/verify/push/finish?next={ADD}")
    assert refused.status_code >= 400
    assert STEP_UP_PUSH_COOKIE in refused.cookies
    assert refused.cookies[STEP_UP_PUSH_COOKIE].value == ""  # deleted
    failed = AuditEvent.objects.filter(action="step_up.failed", subject=ada.user)
    assert failed.count() == 1
    again = browser.get(f"/settings/verify/push/wait?next={ADD}")
    assert again.status_code >= 400
    assert failed.count() == 1
