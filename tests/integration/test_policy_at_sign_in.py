"""The organisation policy at sign-in: a passkey today's rules refuse no longer signs in.

A passkey registered under an old policy, the policy tightened, the same passkey
refused at sign-in with the catalog's "Passkey not allowed" and the rule in the
audit row, and admitted again once the policy is relaxed. Then where people see it
(Home, Settings), the last-method rule, which no longer counts it, and ``threshold
policy check``. SQLite and PostgreSQL alike (scripts/with-postgres).
"""

from __future__ import annotations

import dataclasses
import html
import re
import uuid
from typing import Any

import pytest

from tests.integration.conftest import (
    ORIGIN,
    Browser,
    Person,
    assert_failed,
    assert_ok,
    enrolled_person,
    last_event,
    sign_in,
)
from tests.support.authenticator import TEST_AAGUID, SoftAuthenticator
from threshold.audit.actions import Origin
from threshold.cli.main import main
from threshold.core.policy import Policy, Rule
from threshold.fallback.actions import do_set_up_fallback
from threshold.passkeys.models import Passkey
from threshold.policy.access import get_policy
from threshold.policy.actions import do_update_policy

pytestmark = pytest.mark.django_db

PASSKEY_NOT_ALLOWED = "Passkey not allowed"
NOT_ALLOWED_MARK = "Not allowed by your organisation"
ONLY_METHOD = "You Can\u2019t Remove Your Only Sign-in Method"
SOFT_AAGUID = str(uuid.UUID(bytes=TEST_AAGUID))
PASSWORD = "correct horse battery staple"


def set_policy(**changes: Any) -> Policy:
    return do_update_policy(dataclasses.replace(get_policy(), **changes), Origin.cli())


def assert_not_allowed(response, rule: Rule, person: Person, action: str = "sign_in.failed"):
    """Refused in the catalog's words; the audit row names the rule and, the signature being
    right, the person."""
    body = assert_failed(response, 400, PASSKEY_NOT_ALLOWED)
    assert body["error"]["code"] == "passkey_not_allowed"
    assert "recovery link" in body["error"]["message"]
    assert body["error"]["nextSteps"] == ["another_device", "password", "contact_support"]
    event = last_event(action)
    assert event.reason == rule
    assert event.subject == person.user
    assert event.detail["passkey_id"] == person.passkey.pk


# --- The test: refused after the policy changes, admitted once relaxed ------------------


@pytest.mark.parametrize(
    ("authenticator", "tightened", "rule"),
    [
        ({}, {"aaguid_deny_list": (SOFT_AAGUID,)}, Rule.AAGUID_DENIED),
        (
            {"backup_eligible": True, "backup_state": True, "counter_step": 0},
            {"block_synced_passkeys": True},
            Rule.SYNCED,
        ),
        ({}, {"require_trusted_attestation": True}, Rule.ATTESTATION_UNTRUSTED),
    ],
    ids=["aaguid_deny_list", "block_synced_passkeys", "require_trusted_attestation"],
)
def test_a_passkey_the_policy_no_longer_allows_is_refused_at_sign_in_until_relaxed(
    authenticator, tightened, rule, clock
):
    ada = enrolled_person("ada@example.com", "Ada Lovelace", **authenticator)
    browser = Browser()
    assert_ok(sign_in(browser, ada.authenticator))  # allowed under the policy it registered with

    set_policy(**tightened)
    refused = Browser()
    assert_not_allowed(sign_in(refused, ada.authenticator), rule, ada)
    assert not refused.is_signed_in()
    # The signature was right: the counter moved on (a clone would still be caught).
    assert Passkey.objects.get(pk=ada.passkey.pk).sign_count == (
        ada.authenticator.credentials[0].sign_count
    )
    # Username-first, the same.
    assert_not_allowed(sign_in(Browser(), ada.authenticator, "ada@example.com"), rule, ada)

    set_policy(**{name: getattr(Policy(), name) for name in tightened})
    admitted = Browser()
    assert_ok(sign_in(admitted, ada.authenticator))
    assert admitted.is_signed_in()
    assert last_event("sign_in.succeeded").subject == ada.user


def test_an_allow_list_refuses_a_passkey_it_does_not_list(ada, clock):
    set_policy(aaguid_allow_list=(str(uuid.uuid4()),))
    assert_not_allowed(sign_in(Browser(), ada.authenticator), Rule.AAGUID_NOT_ALLOWED, ada)
    assert "not attested" in last_event("sign_in.failed").detail["detail"]


def test_an_algorithm_no_longer_allowed_is_refused(clock):
    grace = enrolled_person("grace@example.com", "Grace Hopper")
    assert grace.passkey.alg == -7
    set_policy(allowed_algorithms=(-8, -257))
    assert_not_allowed(sign_in(Browser(), grace.authenticator), Rule.ALGORITHM, grace)


def test_the_step_up_refuses_it_too(ada, clock):
    browser = Browser()
    assert_ok(sign_in(browser, ada.authenticator))
    set_policy(aaguid_deny_list=(SOFT_AAGUID,))
    options = browser.post_json("/settings/verify/options")
    assert options.status_code == 200
    assertion = ada.authenticator.get(options.json()["publicKey"], ORIGIN)
    response = browser.post_json("/settings/verify/result", assertion)
    assert_not_allowed(response, Rule.AAGUID_DENIED, ada, "step_up.failed")


def set_up_fallback(person: Person) -> None:
    do_set_up_fallback(person.user, PASSWORD, "JBSWY3DPEHPK3PXP", 0, Origin.cli())


def test_the_password_fallback_is_governed_by_its_own_setting_only(ada, clock):
    set_up_fallback(ada)
    set_policy(aaguid_deny_list=(SOFT_AAGUID,), block_synced_passkeys=True)
    browser = Browser()
    password = browser.client.post(
        "/sign-in/password",
        {
            "username": "ada@example.com",
            "password": PASSWORD,
            "csrfmiddlewaretoken": browser.csrf_token(),
        },
    )
    assert password.status_code == 303
    assert password["Location"] == "/sign-in/code"


def test_a_policy_that_refuses_nothing_changes_nothing(ada, clock):
    set_policy(block_synced_passkeys=True, aaguid_deny_list=(str(uuid.uuid4()),))
    assert_ok(sign_in(Browser(), ada.authenticator))


# --- Where people see it ---------------------------------------------------------------------


def two_passkeys(clock) -> tuple[Person, SoftAuthenticator, Browser]:
    """Ada with her device-bound passkey (signed in with it) and a synced one added later."""
    ada = enrolled_person("ada@example.com", "Ada Lovelace")
    browser = Browser()
    assert_ok(sign_in(browser, ada.authenticator))
    synced = SoftAuthenticator(
        aaguid=uuid.UUID("fbfc3007-154e-4ecc-8c0b-6e020557d7bd").bytes,
        backup_eligible=True,
        backup_state=True,
    )
    options = browser.post_json("/settings/security-methods/add/options", {"device": "phone"})
    credential = synced.create(options.json()["publicKey"], ORIGIN)
    assert_ok(browser.post_json("/settings/security-methods/add/result", credential))
    return ada, synced, browser


def marked_passkeys(page: str) -> list[str]:
    """The names of the passkeys a page marks as not allowed."""
    text = html.unescape(page)
    items = re.findall(r'<li[^>]*class="method"[^>]*>(.*?)</li>', text, re.S)
    return [
        re.search(r"<strong>(.*?)</strong>", item).group(1)
        for item in items
        if NOT_ALLOWED_MARK in item
    ]


def test_home_and_settings_mark_the_passkey_the_policy_refuses(clock):
    _ada, _, browser = two_passkeys(clock)
    assert NOT_ALLOWED_MARK not in browser.get("/settings").content.decode()
    set_policy(block_synced_passkeys=True)
    for path in ("/", "/settings"):
        page = browser.get(path).content.decode()
        [marked] = marked_passkeys(page)
        assert marked.startswith("iCloud Keychain"), path
        assert "can no longer sign you in" in page


def test_a_refused_passkey_does_not_count_as_a_way_to_sign_in(clock):
    ada, _synced, browser = two_passkeys(clock)
    device_bound, icloud = ada.user.passkeys.order_by("id")
    set_policy(block_synced_passkeys=True)

    # The device-bound passkey is the only one that can sign in: it stays.
    path = f"/settings/security-methods/{device_bound.pk}/remove"
    page = html.unescape(browser.get(path).content.decode())
    assert ONLY_METHOD in page
    assert "no longer allows your other passkeys" in page
    response = browser.post_form(path)
    assert response.status_code == 409
    assert last_event("passkey.removal_refused").reason == "last_method"
    assert Passkey.objects.filter(pk=device_bound.pk).exists()

    # The refused one can go: removing it changes nothing.
    response = browser.post_form(f"/settings/security-methods/{icloud.pk}/remove")
    assert response.status_code == 303
    assert list(ada.user.passkeys.all()) == [device_bound]


def test_a_refused_last_passkey_can_be_removed(clock):
    ada, _synced, browser = two_passkeys(clock)
    device_bound, icloud = ada.user.passkeys.order_by("id")
    set_policy(block_synced_passkeys=True, aaguid_deny_list=(SOFT_AAGUID,))
    # Neither can sign in (she verified a moment ago, under the old policy).
    for passkey in (icloud, device_bound):
        response = browser.post_form(f"/settings/security-methods/{passkey.pk}/remove")
        assert response.status_code == 303
    assert not ada.user.passkeys.exists()


def test_a_fallback_the_policy_turned_off_does_not_count_either(ada, clock):
    set_up_fallback(ada)
    browser = Browser()
    assert_ok(sign_in(browser, ada.authenticator))
    set_policy(allow_password_fallback=False)

    response = browser.post_form(f"/settings/security-methods/{ada.passkey.pk}/remove")
    assert response.status_code == 409
    assert ONLY_METHOD in html.unescape(response.content.decode())
    # The fallback itself can go: it cannot sign in.
    response = browser.post_form("/settings/fallback/remove")
    assert response.status_code == 303
    assert response["Location"] == "/settings?done=fallback-removed"


# --- threshold policy check ---------------------------------------------------------------------


def test_policy_check_lists_who_a_tightening_would_lock_out(clock, capsys):
    _, _, _ = two_passkeys(clock)
    grace = enrolled_person("grace@example.com", "Grace Hopper")
    assert main(["policy", "check"]) == 0
    assert "allows every registered passkey" in capsys.readouterr().out

    assert main(["policy", "check", "block_synced_passkeys=true"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^ada@example\.com\s+iCloud Keychain.*\s+block_synced_passkeys$", out, re.M)
    assert "grace@example.com" not in out
    assert "No way left" not in out  # Ada keeps her device-bound passkey
    assert get_policy() == Policy()  # nothing saved

    assert main(["policy", "check", f"aaguid_deny_list={SOFT_AAGUID}"]) == 1
    out = capsys.readouterr().out
    assert "No way left to sign in for 1: grace@example.com" in out
    assert grace.passkey.name in out

    assert main(["policy", "check", "passkey_limit=0"]) == 2
    assert "passkey_limit must be a whole number from 1 to 100" in capsys.readouterr().err
