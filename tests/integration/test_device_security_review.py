"""A security review of Threshold Verify's protocol and its web side: attacks run against the
real views through Django's test client, with real keys signing real requests
(tests/support/device.py) and a software authenticator answering WebAuthn. Only the clock and,
for the Web Push checks, name resolution (the outbound network) are faked.

The first tests reproduce the defects that review found, each fixed since; the others pin
down attacks that held.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.integration.conftest import (
    SESSION_EXPIRED,
    Browser,
    assert_failed,
    assert_ok,
    enrolled_person,
    last_event,
)
from tests.integration.test_concurrent_changes import all_at_once
from tests.integration.test_device_app import (
    answer,
    api,
    api_raw,
    new_device,
    pending,
    redeem,
    send_push,
    set_up_device,
    show_setup_code,
    shown_number,
    signed_in,
)
from tests.integration.test_fallback import post
from tests.integration.test_verify_web_app import enable_screen_lock
from tests.support.authenticator import SoftAuthenticator
from tests.support.device import SoftDevice
from threshold.audit import capped
from threshold.audit.actions import Origin
from threshold.audit.models import AuditEvent
from threshold.core.policy import Policy
from threshold.devices import webpush
from threshold.devices.models import Device, DeviceEnrollment, SignInApproval
from threshold.policy.actions import do_update_policy

pytestmark = pytest.mark.django_db

SETUP_CODES = "/api/device/v1/setup-codes"
CONFIRM = "/api/device/v1/setup-codes/confirm"
ATTACKER_IP = "198.51.100.66"


def attackers_push(
    device: SoftDevice, username: str = "ada@example.com"
) -> tuple[Browser, str, int]:
    """Someone who knows only the username sends a push from their own browser: that browser,
    the push's ID (as the person's device sees it) and the number the attacker is shown."""
    attacker = Browser(REMOTE_ADDR=ATTACKER_IP)
    assert send_push(attacker, username).status_code == 303
    number = shown_number(attacker)
    [push] = pending(device)
    return attacker, push["id"], number


# --- Defects -------------------------------------------------------------------------------------


def test_a_screen_lock_device_key_alone_cannot_add_another_device(ada, clock):
    """With screen lock confirmation on, the device's own word ("user_verified": true) no
    longer counts for an approval (docs/device-api.md), and screen lock cannot be swapped
    "so that someone holding only the device's key cannot swap in an authenticator of their
    own". Was a defect: "Add Account to Another Device" took the device's word, so whoever
    held the key alone (script on the /verify/ origin in the phone's browser, a copied key)
    issued a setup code, redeemed it with a key of their own, confirmed the returned code with
    the phone's key, and the new device approved pushes with "user_verified": true, no
    assertion: the attacker's browser signed in as the person. It now needs the screen lock's
    assertion (``setup-codes/options``, tests/integration/test_verify_add_to_another_device.py)."""
    phone = set_up_device(ada)
    enable_screen_lock(phone, SoftAuthenticator())
    issued = api(phone, SETUP_CODES, {"user_verified": True})
    if issued.status_code == 200:  # today: the attack goes through to a sign-in
        code = issued.json()
        rogue = new_device()
        returned = redeem(rogue, code["setup_code"], name="Rogue")["returned_code"]
        confirm = {"enrollment_id": code["enrollment_id"], "returned_code": returned}
        assert_ok(api(phone, CONFIRM, confirm))
        attacker, push_id, number = attackers_push(rogue)
        approved = answer(
            rogue, push_id, decision="approve", number=str(number), user_verified=True
        )
        assert assert_ok(approved)["state"] == "approved"
        assert post(attacker, "/sign-in/push/finish").status_code == 303
        assert not attacker.is_signed_in(), "the device key alone signed the attacker in"
    assert issued.status_code in (400, 403), issued.content[:300]
    assert not DeviceEnrollment.objects.filter(created_by__public_id=phone.device_id).exists()


def test_a_device_the_policy_lets_no_longer_sign_in_cannot_add_devices(ada, clock):
    """Under require_hardware_device_key a software-key device sees no push and approves none,
    yet it still issues setup codes and confirms returned codes: its key (the weaker kind the
    policy was turned on against) vouches for a new device, which is usable as soon as its own
    key is in any TPM the roots trust (confirmed with swtpm in the review). Settings' own
    set-up needs a passkey verification."""
    software = set_up_device(ada)
    do_update_policy(Policy(require_hardware_device_key=True), Origin.cli())
    attacker = Browser(REMOTE_ADDR=ATTACKER_IP)
    send_push(attacker, "ada@example.com")
    assert pending(software) == []  # the policy already holds it back here
    response = api(software, SETUP_CODES, {"user_verified": True})
    assert response.status_code in (400, 403), response.content[:300]
    assert not DeviceEnrollment.objects.filter(created_by__public_id=software.device_id).exists()


def test_an_approval_by_a_device_removed_meanwhile_signs_no_one_in(ada, clock):
    """The person gets the "approved in Threshold Verify" email for a device that is not theirs
    (or lost) and removes it in Settings at once: the browser that holds the approved push
    still signs in afterwards, for the rest of the push's two minutes."""
    owner = signed_in(ada)
    rogue = set_up_device(ada, owner)
    attacker, push_id, number = attackers_push(rogue)
    assert_ok(answer(rogue, push_id, decision="approve", number=str(number), user_verified=True))
    removed = post(owner, f"/settings/device-app/{rogue.device_id}/remove")
    assert removed.status_code == 303
    assert Device.objects.get(public_id=rogue.device_id).revoked_at is not None
    post(attacker, "/sign-in/push/finish")
    assert not attacker.is_signed_in()


def test_a_wrong_number_is_told_to_the_person(ada, clock, django_capture_on_commit_callbacks):
    """A wrong number means the person approved a push whose number they never saw: the
    strongest sign of push bombing there is. "I didn't do this" emails and mutes; a wrong
    number does neither, so the attacker simply sends the next push."""
    device = set_up_device(ada)
    mail.outbox.clear()
    _, push_id, number = attackers_push(device)
    with django_capture_on_commit_callbacks(execute=True):
        wrong = answer(
            device, push_id, decision="approve", number=str(number % 90 + 10), user_verified=True
        )
    assert_failed(wrong, 400, "Sign-in Not Approved")
    assert mail.outbox, "the person is not told that a push was answered with a wrong number"


def test_forged_requests_naming_a_known_device_are_audited_at_a_capped_rate(ada, clock):
    """The device ID is no secret (Settings' page and its rename/remove URLs, the access log,
    the audit log): a request signed with any key for that ID is refused (401) and audited
    every time, naming the person, with no limit, as each replay of a captured request is.
    A wrong client secret at /token, its closest kin, goes through record_capped."""
    device = set_up_device(ada)
    forger = SoftDevice(device_id=device.device_id)  # the ID, and a key of its own
    before = AuditEvent.objects.filter(action="device.request_refused").count()
    for _ in range(capped.BURST * 3):
        assert api(forger, "/api/device/v1/approvals/pending").status_code == 401
    written = AuditEvent.objects.filter(action="device.request_refused").count() - before
    assert written <= capped.BURST + 1, f"{written} audit rows from one network"


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::a9fe:a9fe",  # NAT64 (RFC 6052) of 169.254.169.254
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    ],
)
def test_a_push_service_name_resolving_to_an_embedded_private_address_is_not_sent_to(
    settings, monkeypatch, address
):
    """On an IPv6-only host behind NAT64 (DNS64), 64:ff9b::/96 reaches IPv4 addresses: a phone
    that names a host resolving there makes Threshold connect to an internal address's port
    443 (blind: TLS still checks the name, and the thread reports nothing back)."""
    settings.THRESHOLD_WEB_PUSH_ALLOW_PRIVATE_HOSTS = False
    resolve = socket.getaddrinfo

    def fake_dns(host: str, port: Any, *args: Any, **kwargs: Any):
        if host == "push.attacker.example":
            return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))]
        return resolve(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_dns)
    assert webpush.resolve("https://push.attacker.example/x")[0] == ""


@pytest.mark.parametrize("host", ["127.1", "0x7f.1", "0177.0.0.1", "127.000.000.001", "10.1"])
def test_an_ip_address_in_shorthand_is_refused_as_a_push_endpoint(host):
    """docs/device-api.md: an endpoint "whose host is an IP address" is refused, nothing
    stored. getaddrinfo reads these as addresses (127.0.0.1, 10.0.0.1); the check before
    each send still stops them, so this is the stored-endpoint check only."""
    assert webpush.endpoint_problem(f"https://{host}/x") != ""


def test_a_push_costs_the_same_queries_whoever_the_username_is(ada, clock):
    """docs/device-api.md: "An unknown username, a person without a device and a muted person
    get the same page, the same number and the same limits: nothing tells them apart." The
    answers are the same; the time is not (about 1 ms on SQLite in the review, 150 samples:
    medians 2.2 ms unknown, 2.9 ms no device, 3.2 ms with a device; more on PostgreSQL,
    where each query is a round trip). Loopback: the per-network limit does not count it."""
    set_up_device(ada)
    counts = {}
    for username in ("ada@example.com", "nobody@example.com"):
        browser = Browser(REMOTE_ADDR="127.0.0.1")
        browser.csrf_token()
        with CaptureQueriesContext(connection) as queries:
            assert_ok(browser.post_json("/sign-in/push/start", {"username": username}))
        counts[username] = len(queries.captured_queries)
    assert counts["ada@example.com"] == counts["nobody@example.com"], counts


# --- Attacks that held ---------------------------------------------------------------------------


def test_another_persons_device_can_neither_approve_nor_deny_a_push(ada, clock):
    device = set_up_device(ada)
    grace_device = set_up_device(enrolled_person("grace@example.com", "Grace Hopper"))
    attacker, push_id, number = attackers_push(device)
    approve = answer(
        grace_device, push_id, decision="approve", number=str(number), user_verified=True
    )
    assert_failed(approve, 400, SESSION_EXPIRED)
    assert_failed(answer(grace_device, push_id, decision="deny"), 400, SESSION_EXPIRED)
    assert SignInApproval.objects.get(public_id=push_id).state == "pending"
    assert attacker.get("/sign-in/push/state").json() == {"state": "pending"}


def test_another_browser_cannot_ride_an_approved_push(ada, clock):
    """The victim's own push, approved: a browser without its cookie sees nothing and signs in
    as no one, and the victim's browser still signs in once."""
    device = set_up_device(ada)
    victim = Browser()
    send_push(victim, "ada@example.com")
    number = shown_number(victim)
    [push] = pending(device)
    assert_ok(
        answer(device, push["id"], decision="approve", number=str(number), user_verified=True)
    )
    rider = Browser(REMOTE_ADDR=ATTACKER_IP)
    assert rider.get("/sign-in/push/state").json() == {"state": "expired"}
    assert post(rider, "/sign-in/push/finish").status_code == 400
    assert not rider.is_signed_in()
    assert post(victim, "/sign-in/push/finish").status_code == 303
    assert victim.is_signed_in()


def test_a_canceled_push_cannot_be_approved(ada, clock):
    device = set_up_device(ada)
    attacker, push_id, number = attackers_push(device)
    post(attacker, "/sign-in/push/cancel")
    late = answer(device, push_id, decision="approve", number=str(number), user_verified=True)
    assert_failed(late, 400, SESSION_EXPIRED)
    assert SignInApproval.objects.get(public_id=push_id).state == "canceled"
    post(attacker, "/sign-in/push/finish")
    assert not attacker.is_signed_in()


@pytest.mark.django_db(transaction=True)
def test_approve_and_deny_from_two_devices_at_once_one_wins(ada, clock):
    owner = signed_in(ada)
    first, second = set_up_device(ada, owner), set_up_device(ada, owner)
    path = "/api/device/v1/approvals/answer"
    for round_ in range(3):
        attacker, push_id, number = attackers_push(first)
        approve = first.sign(
            path,
            {"id": push_id, "decision": "approve", "number": str(number), "user_verified": True},
        )
        deny = second.sign(path, {"id": push_id, "decision": "deny"})
        results = all_at_once([lambda a=approve: api_raw(path, a), lambda d=deny: api_raw(path, d)])
        statuses = sorted(getattr(result, "status_code", 0) for result in results)
        assert statuses == [200, 400], results
        state = SignInApproval.objects.get(public_id=push_id).state
        assert state in ("approved", "denied")
        post(attacker, "/sign-in/push/finish")
        assert attacker.is_signed_in() == (state == "approved"), round_
        clock.advance(21 * 60)  # past the mute and the ten-minute window


def test_the_audit_log_of_a_set_up_and_a_push_sign_in_holds_no_code_or_secret(ada, clock):
    owner = signed_in(ada)
    code, action = show_setup_code(owner)
    device = new_device()
    returned = redeem(device, code)["returned_code"]
    post(owner, action, returned_code=f"{(int(returned) + 1) % 10**6:06d}")
    post(owner, action, returned_code=returned)
    browser = Browser()
    send_push(browser, "ada@example.com")
    number = shown_number(browser)
    [push] = pending(device)
    assert_ok(
        answer(device, push["id"], decision="approve", number=str(number), user_verified=True)
    )
    assert post(browser, "/sign-in/push/finish").status_code == 303
    approval = SignInApproval.objects.get(public_id=push["id"])
    secrets_ = [code, code.replace("-", ""), returned, approval.browser_binding]
    for event in AuditEvent.objects.all():
        text = json.dumps([event.action, event.reason, event.detail])
        assert not [secret for secret in secrets_ if secret in text], text
    for action_name in ("push.sent", "push.approved", "sign_in.succeeded"):
        assert "number" not in last_event(action_name).detail
