"""Outside review: brute force, guessing and abuse limits, probed as an attacker on the internet.

Judged against NIST SP 800-63B-4 §3.2.2 (at most 100 consecutive failed attempts on one
account), the README's words on the lockout, and what Okta, Keycloak (per-user brute-force
detection) and authentik (reputation per IP *and* per username) do. Covered: the password and
authenticator-app fallback and its throttles (per username and network, per network, the
code step's per-person counter and its "shut after 100"), push sign-ins (per-person and
per-network limits, MFA fatigue), the device API's setup codes, and whose limits an attacker
can spend (lockout denial of service). Real requests through Django's test client; only the
clock is pinned (``threshold.clock.now``, the ``clock`` fixture).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pyotp
import pytest

from tests.integration.conftest import Browser, FrozenClock, Person
from tests.support.device import SoftDevice
from threshold.accounts.models import User
from threshold.audit.actions import Origin
from threshold.core import errors, throttle, totp
from threshold.devices.actions import (
    PUSH_NETWORK_LIMIT,
    SETUP_CODE_NETWORK_FAILURES,
    do_confirm_returned_code,
    do_issue_setup_code,
)
from threshold.devices.models import PushState, SignInApproval
from threshold.fallback.actions import do_finish_fallback_sign_in, do_set_up_fallback
from threshold.policy.access import get_policy

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple 42"
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
ADA = "ada@example.com"
DAY = 24 * 60 * 60
ENROLL = "/api/device/v1/enroll"


# --- Set-up -------------------------------------------------------------------------------------


@pytest.fixture
def ada_fallback(ada: Person, clock: FrozenClock) -> Person:
    """Ada with a password and an authenticator app (set up an hour ago, by the action)."""
    step = int((clock.now - 3600) // totp.STEP_SECONDS)
    do_set_up_fallback(ada.user, PASSWORD, SECRET, step, Origin.cli())
    return ada


def app_code(clock: FrozenClock) -> str:
    return pyotp.TOTP(SECRET, digits=totp.DIGITS, interval=totp.STEP_SECONDS).at(clock.now)


def password_step(browser: Browser, username: str, password: str) -> Any:
    return browser.client.post(
        "/sign-in/password",
        {"csrfmiddlewaretoken": browser.csrf_token(), "username": username, "password": password},
    )


def code_step(browser: Browser, code: str) -> Any:
    return browser.client.post(
        "/sign-in/code", {"csrfmiddlewaretoken": browser.csrf_token(), "code": code}
    )


def wrong_recovery_code(number: int) -> str:
    """A well-formed recovery code that is nobody's (16 characters of the alphabet)."""
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    raw = "".join(alphabet[(number >> (5 * i)) % 32] for i in range(16))
    return "-".join(raw[i : i + 4] for i in range(0, 16, 4))


def with_device(person: Person, clock: FrozenClock) -> SoftDevice:
    """Give ``person`` Threshold Verify: a setup code (the action Settings calls), redeemed
    over the device API by a real key, and the returned code typed back."""
    policy = get_policy()
    issued = do_issue_setup_code(person.user, Origin.cli(), policy, session_key="review")
    device = SoftDevice(now=lambda: clock.now)
    compact = device.sign(
        ENROLL,
        {"setup_code": issued.code, "name": "Ada's phone", "platform": "linux"},
        with_jwk=True,
    )
    redeemed = Browser(REMOTE_ADDR="203.0.113.7").client.post(
        ENROLL, compact, content_type="application/jose"
    )
    assert redeemed.status_code == 200, redeemed.content
    answer = redeemed.json()
    do_confirm_returned_code(
        person.user,
        issued.enrollment.public_id,
        answer["returned_code"],
        Origin.cli(),
        policy,
        session_key="review",
    )
    device.device_id = answer["device_id"]
    return device


def start_push(browser: Browser, username: str) -> Any:
    return browser.post_json("/sign-in/push/start", {"username": username})


# --- The fallback's password step ---------------------------------------------------------------


def test_guessing_one_persons_password_from_many_networks_is_limited(
    ada_fallback: Person, clock: FrozenClock
) -> None:
    threshold = get_policy().password_lockout_threshold
    # One wrong password from each of threshold networks: a small botnet, or addresses
    # picked from a few IPv6 /64s.
    for number in range(threshold):
        answer = password_step(Browser(REMOTE_ADDR=f"192.0.2.{number + 1}"), ADA, f"guess {number}")
        assert answer.status_code != 429, number
    # The README: "Consecutive wrong passwords or codes for one username before the password
    # path locks for an hour". The next guess, from yet another network, must be held back.
    answer = password_step(Browser(REMOTE_ADDR="192.0.2.200"), ADA, "guess again")
    assert answer.status_code == 429


def test_rotating_addresses_in_one_ipv6_64_or_forged_forwarded_for_keeps_one_throttle(
    ada_fallback: Person, clock: FrozenClock, settings: Any
) -> None:
    """What holds, pinned where the guesser changes the address it is seen from: every address
    of one IPv6 /64 is one network, and behind the proxy a forged left part of
    X-Forwarded-For changes nothing (the proxy appends the real address, which is counted)."""
    free = throttle.FREE_FAILURES
    answers = [
        password_step(Browser(REMOTE_ADDR=f"2001:db8:7:7::{n + 1:x}"), ADA, f"v6 {n}").status_code
        for n in range(free + 1)
    ]
    assert answers == [400] * free + [429]
    settings.THRESHOLD = replace(settings.THRESHOLD, proxy_ssl_header=True)
    # nginx on this machine appends the client's real address to what the client sent.
    answers = [
        password_step(
            Browser(
                REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=f"192.0.2.{n + 1}, 198.51.100.99"
            ),
            ADA,
            f"x {n}",
        ).status_code
        for n in range(free + 1)
    ]
    assert answers == [400] * free + [429]
    # A client that reaches the server itself cannot choose its address either.
    answers = [
        password_step(
            Browser(REMOTE_ADDR="198.51.100.98", HTTP_X_FORWARDED_FOR=f"192.0.2.{n + 1}"),
            ADA,
            f"d {n}",
        ).status_code
        for n in range(free + 1)
    ]
    assert answers == [400] * free + [429]


# --- The fallback's code step -------------------------------------------------------------------


def test_a_pause_does_not_reset_the_hundred_wrong_codes_limit(
    ada_fallback: Person, clock: FrozenClock
) -> None:
    user = User.objects.get(username=ADA)
    policy = get_policy()
    # Someone who has the password sends 99 wrong codes, from a new network each time (the
    # per-network lock never bites) and waiting out each doubling delay (at most 15 minutes).
    for number in range(99):
        clock.advance(15 * 60 + 1)
        origin = Origin(ip=f"198.51.100.{number + 1}", user_agent="guesser")
        with pytest.raises(errors.SecondFactorIncorrect):
            do_finish_fallback_sign_in(user, wrong_recovery_code(number), origin, policy)
    # A day's pause, then the hundredth wrong code in a row.
    clock.advance(DAY + 1)
    origin = Origin(ip="198.51.100.200", user_agent="guesser")
    with pytest.raises(errors.SecondFactorIncorrect):
        do_finish_fallback_sign_in(user, wrong_recovery_code(99), origin, policy)
    # 100 wrong codes in a row, no success between them: the code step is shut, even for the
    # right code (README: "100 wrong authenticator-app or recovery codes in a row (from any
    # network) shut the code step until the password and app are set up again").
    browser = Browser(REMOTE_ADDR="198.51.100.201")
    assert password_step(browser, ADA, PASSWORD).status_code == 303
    assert code_step(browser, app_code(clock)).status_code == 429


# --- Push sign-ins ------------------------------------------------------------------------------


def test_a_stranger_cannot_use_up_a_persons_pushes(ada: Person, clock: FrozenClock) -> None:
    with_device(ada, clock)
    stranger = Browser(REMOTE_ADDR="198.51.100.66")
    for _ in range(3):
        assert start_push(stranger, ADA).status_code == 200
        assert stranger.post_json("/sign-in/push/cancel").status_code == 200
    # Ada, at her own computer on her own network, wants to sign in with her phone.
    own = Browser(REMOTE_ADDR="203.0.113.7")
    assert start_push(own, ADA).status_code == 200


def test_the_limits_count_pushes_by_the_servers_clock(ada: Person, clock: FrozenClock) -> None:
    """A push's time is the clock the limits read (a fixed one here, an hour past the real
    time): the second push from one browser finds the first waiting, as it did before the
    limits counted a window (a browser test's server, its clock moved on, saw both sent)."""
    with_device(ada, clock)
    clock.advance(3600)
    browser = Browser(REMOTE_ADDR="203.0.113.7")
    assert start_push(browser, ADA).status_code == 200
    again = Browser(REMOTE_ADDR="203.0.113.7")
    assert start_push(again, ADA).status_code == 409


def test_an_office_behind_one_address_can_send_more_than_thirty_pushes(
    ada: Person, clock: FrozenClock
) -> None:
    with_device(ada, clock)
    office = "198.51.100.10"
    colleagues = [
        User.objects.create_user(f"colleague{number}@example.com", full_name=f"Colleague {number}")
        for number in range(PUSH_NETWORK_LIMIT)
    ]
    for colleague in colleagues:
        assert start_push(Browser(REMOTE_ADDR=office), colleague.username).status_code == 200
        # Each colleague approves on their phone and is signed in.
        SignInApproval.objects.filter(state=PushState.PENDING).update(state=PushState.USED)
        clock.advance(10)
    # The 31st person of the office in ten minutes: their first push today.
    assert start_push(Browser(REMOTE_ADDR=office), ADA).status_code == 200


# --- Threshold Verify's setup codes -------------------------------------------------------------


def wrong_setup_code(number: int) -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(alphabet[(number >> (5 * i)) % 32] for i in range(8))


def redeem_from(ip: str, code: str, clock: FrozenClock) -> Any:
    device = SoftDevice(now=lambda: clock.now)
    body: dict[str, Any] = {"setup_code": code, "name": "Guess", "platform": "linux"}
    compact = device.sign(ENROLL, body, with_jwk=True)
    return Browser(REMOTE_ADDR=ip).client.post(ENROLL, compact, content_type="application/jose")


def test_guessers_on_other_networks_do_not_hold_up_a_persons_set_up(
    ada: Person, clock: FrozenClock
) -> None:
    # Twenty networks (one IPv6 /59), each up to its own limit: 200 guesses.
    networks = 20
    for network in range(networks):
        for guess in range(SETUP_CODE_NETWORK_FAILURES):
            answer = redeem_from(
                f"2001:db8:0:{network:x}::{guess + 1}",
                wrong_setup_code(network * 100 + guess),
                clock,
            )
            assert answer.status_code in (400, 429)
    issued = do_issue_setup_code(ada.user, Origin.cli(), get_policy(), session_key="own")
    assert redeem_from("203.0.113.7", issued.code, clock).status_code == 200
