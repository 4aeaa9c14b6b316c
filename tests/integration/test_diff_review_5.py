"""Outside review of three commits: 7f00225 (/authorize asks whether the way a session signed in
still stands), 5e97222 (Threshold Verify on a phone adds the account to another device, confirmed
with its screen lock) and d290e1d (a group's rules may turn the password fallback or the push off).

Covered: every place a session is signed in and what it records (passkey lean and full paths,
enrollment, the fallback, a push, sign-in-again, /authorize-challenge), the check on the full and
lean /authorize paths, prompt=none, sessions whose way in no longer stands, SQLite and PostgreSQL;
the screen-lock ceremony for setup codes (kinds mixed both ways, replay, no user verification,
late, missing, malformed, the device's own word), the setup-code answer and the device limit; the
group's ways in at the password and code steps, recovery codes, step-up, a push sent or approved
before the rule, the device API, the portal's counts against the registry's, its preview and the
administrators' lockout guard, and the audit rows.

Each test below was one defect, a strict xfail until it was fixed; all five are fixed.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import secrets
from typing import Any
from urllib.parse import urlencode

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from tests.integration.conftest import (
    Browser,
    FrozenClock,
    Person,
    enrolled_person,
    sign_in,
)
from tests.support.authenticator import TEST_AAGUID
from tests.support.device import SoftDevice
from threshold.audit.actions import Origin
from threshold.core import totp
from threshold.core.policy import GroupRules
from threshold.devices.actions import do_confirm_returned_code, do_issue_setup_code, do_send_push
from threshold.fallback.actions import do_set_up_fallback
from threshold.groups.actions import do_add_group, do_add_member, do_set_group_rules
from threshold.policy.access import get_policy
from threshold.policy.actions import do_update_policy
from threshold.sso.actions import do_add_app

REDIRECT = "https://app.example.com/callback"
API = "/api/device/v1/"
PASSWORD = "correct horse battery staple 42"
TEST_AAGUID_TEXT = "01020304-0506-0708-0102-030405060708"
assert TEST_AAGUID.hex() == TEST_AAGUID_TEXT.replace("-", "")


# --- Helpers ---------------------------------------------------------------------------------


def _app() -> str:
    return do_add_app("App", Origin.cli(), redirect_uris=[REDIRECT]).application.client_id


def _authorize(browser: Browser, client_id: str, **extra: str):
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": "openid",
        "state": "s",
        "nonce": "n",
        "code_challenge": base64.urlsafe_b64encode(digest).rstrip(b"=").decode(),
        "code_challenge_method": "S256",
        **extra,
    }
    return browser.get("/authorize?" + urlencode(params))


def _set_policy(**changes: Any) -> None:
    do_update_policy(dataclasses.replace(get_policy(), **changes), Origin.cli())


def _in_group(person: Person, **rules: Any) -> None:
    group = do_add_group("Engineering", Origin.cli())
    do_add_member(group, person.user, Origin.cli())
    do_set_group_rules(group, GroupRules("Engineering", **rules), Origin.cli())


def _set_up_fallback(person: Person, clock: FrozenClock) -> None:
    step = int(clock.now // totp.STEP_SECONDS) - 5
    do_set_up_fallback(person.user, PASSWORD, totp.new_secret(), step, Origin.cli())


def _call(device: SoftDevice, endpoint: str, body: dict[str, Any] | None = None, **sign: Any):
    path = API + endpoint
    return Client().post(path, device.sign(path, body, **sign), content_type="application/jose")


def _computer(person: Person, clock: FrozenClock) -> SoftDevice:
    """Threshold Verify on a computer, set up from Settings (its PIN is the device's word)."""
    device = SoftDevice(now=lambda: clock.now)
    binding = "b" * 32
    issued = do_issue_setup_code(person.user, Origin.cli(), get_policy(), session_key=binding)
    body = {
        "setup_code": issued.formatted,
        "name": "Laptop",
        "platform": "linux",
        "app_version": "1.0",
        "key_protection": "software",
    }
    enrolled = _call(device, "enroll", body, with_jwk=True)
    assert enrolled.status_code == 200, enrolled.content
    device.device_id = enrolled.json()["device_id"]
    do_confirm_returned_code(
        person.user,
        issued.enrollment.public_id,
        enrolled.json()["returned_code"],
        Origin.cli(),
        get_policy(),
        session_key=binding,
    )
    return device


# --- 7f00225: /authorize asks whether the session's way in still stands ------------------------


def test_a_sign_in_without_user_verification_stops_standing_once_it_is_required(
    db, clock: FrozenClock
) -> None:
    _set_policy(user_verification="preferred")
    person = enrolled_person("kim@example.com", "Kim Lee", user_verified=False)
    client_id = _app()
    browser = Browser()
    assert sign_in(browser, person.authenticator).status_code == 200
    # Tightened after an incident: from now on every passkey use needs the PIN or biometrics,
    # and a sign-in without them is refused (passkeys/actions.py ``_refused_today``).
    _set_policy(user_verification="required")

    answer = _authorize(browser, client_id, prompt="none")

    assert answer.status_code == 302
    assert "error=login_required" in answer["Location"], answer["Location"]


def test_a_session_that_no_longer_stands_is_sent_to_sign_in_with_a_way_still_allowed(
    ada: Person, clock: FrozenClock
) -> None:
    _set_up_fallback(ada, clock)
    client_id = _app()
    browser = Browser()
    assert sign_in(browser, ada.authenticator).status_code == 200
    # The organisation refuses her passkey's model; the password and app are still allowed.
    _set_policy(aaguid_deny_list=(TEST_AAGUID_TEXT,))

    answer = _authorize(browser, client_id)  # no prompt: the OP may ask the person to sign in

    assert answer.status_code == 302
    location = answer["Location"]
    # OpenID Connect Core §3.1.2.3: without prompt=none the OP authenticates the person
    # interactively; login_required goes to the app only when it cannot. It can here.
    assert not location.startswith(REDIRECT), location


# --- d290e1d: a group turns the password or the push off ------------------------------------------


def test_verify_page_offers_no_password_a_group_turned_off(ada: Person, clock: FrozenClock) -> None:
    _set_up_fallback(ada, clock)
    _in_group(ada, allow_password_fallback=False)
    browser = Browser()
    assert sign_in(browser, ada.authenticator).status_code == 200

    page = browser.get("/settings/verify?next=/settings/security-methods/add")

    assert page.status_code == 200
    assert b"/settings/verify/password" not in page.content


def test_device_api_refuses_a_group_members_device_as_push_not_allowed(
    ada: Person, clock: FrozenClock
) -> None:
    laptop = _computer(ada, clock)
    _in_group(ada, allow_device_app_sign_in=False)

    answer = _call(laptop, "setup-codes", {"user_verified": True})

    # docs/device-api.md: 403 device_app_not_allowed when allow_device_app_sign_in is off,
    # device_key_refused for require_hardware_device_key (which is off here).
    assert answer.status_code == 403, answer.content
    assert answer.json()["error"]["code"] == "device_app_not_allowed"


def test_a_push_takes_the_same_statements_whoever_the_username_is(db, clock: FrozenClock) -> None:
    member = enrolled_person("mel@example.com", "Mel Ortiz")
    enrolled_person("other@example.com", "Other Person")
    _in_group(member, allow_device_app_sign_in=False)
    policy = get_policy()

    counts = {}
    for username in ("nobody@example.com", "other@example.com", "mel@example.com"):
        with CaptureQueriesContext(connection) as statements:
            do_send_push(username, Origin.cli(), policy)
        counts[username] = len(statements.captured_queries)

    # devices/actions.py _undeliverable: "The same two queries whoever the username is ...
    # the time a push takes tells people apart as well as its answer would."
    assert len(set(counts.values())) == 1, counts
