"""The fallback: a password plus an authenticator-app or recovery code, its set-up, throttling,
and the "Set up a passkey" / "I'll do it later" prompt."""

from __future__ import annotations

import dataclasses
import html
import re
from datetime import timedelta

import pyotp
import pytest
from django.conf import settings
from django.core import mail

import threshold.clock
from tests.integration.conftest import (
    SESSION_EXPIRED,
    VERIFICATION_FAILED,
    Browser,
    Person,
    assert_ok,
    enroll,
    enrolled_person,
    last_event,
    sign_in,
    token_of,
    without_csrf,
)
from tests.support.authenticator import SoftAuthenticator
from threshold.accounts.actions import do_lock_user
from threshold.audit.actions import Origin
from threshold.audit.models import AuditEvent
from threshold.cli.main import main
from threshold.core import throttle, totp
from threshold.core.policy import Policy
from threshold.enrollment.actions import do_issue_recovery
from threshold.fallback import known
from threshold.fallback.actions import do_remove_fallback, do_set_up_fallback
from threshold.fallback.models import FailureCounter, RecoveryCode, TotpDevice
from threshold.passkeys.models import Passkey
from threshold.policy.access import get_policy
from threshold.policy.actions import do_update_policy
from threshold.sessions.models import Session
from threshold.sessions.store import SIGN_IN_ACR, SIGN_IN_AMR

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
INCORRECT = "Incorrect username or password"
INCORRECT_CODE = "Incorrect code"
TOO_MANY = "Too Many Attempts"
NOT_AVAILABLE = "Password Sign-in Not Available"
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def post(browser: Browser, path: str, **fields: str):
    return browser.client.post(path, {"csrfmiddlewaretoken": browser.csrf_token(), **fields})


def code_at(now: float, steps: int = 0) -> str:
    return pyotp.TOTP(SECRET).at(now + steps * totp.STEP_SECONDS)


@pytest.fixture
def ada_with_fallback(ada: Person, clock) -> tuple[Person, list[str]]:
    codes = do_set_up_fallback(ada.user, PASSWORD, SECRET, 0, Origin.cli())
    return ada, codes


def password_step(browser: Browser, username: str = "ada@example.com", password: str = PASSWORD):
    return post(browser, "/sign-in/password", username=username, password=password)


def fallback_sign_in(browser: Browser, code: str, username: str = "ada@example.com"):
    response = password_step(browser, username)
    assert response.status_code == 303, response.content[:400]
    assert response["Location"] == "/sign-in/code"
    return post(browser, "/sign-in/code", code=code)


def title_in(response) -> str:
    found = re.search(r'id="fallback-error">\s*<h2>(.*?)</h2>', response.content.decode())
    return found.group(1).replace("&#x27;", "'") if found else ""


# --- Signing in ----------------------------------------------------------------------------------


def test_password_and_app_code_sign_in(ada_with_fallback, clock):
    browser = Browser()
    response = fallback_sign_in(browser, code_at(clock.now))
    assert response.status_code == 303
    assert response["Location"] == "/sign-in/set-up-passkey"
    assert browser.is_signed_in()
    event = last_event("sign_in.succeeded")
    assert event.detail == {"method": "password+app", "phishing_resistant": False}
    session = Session.objects.get(session_key=browser.session_key)
    assert session.sign_in_method == "password+app"
    data = session.get_decoded()
    assert (data[SIGN_IN_AMR], data[SIGN_IN_ACR]) == (["pwd", "otp", "mfa"], None)
    assert "with a password and authenticator app" in browser.get("/settings").content.decode()


def test_a_code_from_the_previous_step_is_accepted_but_not_older(ada_with_fallback, clock):
    assert fallback_sign_in(Browser(), code_at(clock.now, -1)).status_code == 303
    clock.advance(totp.STEP_SECONDS * 3)
    old = fallback_sign_in(Browser(), code_at(clock.now, -2))
    assert old.status_code == 400
    assert title_in(old) == INCORRECT_CODE


def test_an_app_code_works_once(ada_with_fallback, clock):
    code = code_at(clock.now)
    assert fallback_sign_in(Browser(), code).status_code == 303
    again = fallback_sign_in(Browser(), code)
    assert again.status_code == 400
    assert title_in(again) == INCORRECT_CODE
    assert last_event("sign_in.failed").reason == "code_reused"


def test_a_recovery_code_works_once(ada_with_fallback):
    _, codes = ada_with_fallback
    browser = Browser()
    assert fallback_sign_in(browser, codes[0].upper().replace("-", " ")).status_code == 303
    assert last_event("sign_in.succeeded").detail["method"] == "password+recovery_code"
    data = Session.objects.get(session_key=browser.session_key).get_decoded()
    # A second proof, but not an RFC 6238 one-time password: mfa without otp.
    assert (data[SIGN_IN_AMR], data[SIGN_IN_ACR]) == (["pwd", "mfa"], None)
    again = fallback_sign_in(Browser(), codes[0])
    assert again.status_code == 400
    assert title_in(again) == INCORRECT_CODE
    assert last_event("sign_in.failed").reason == "code_reused"
    assert RecoveryCode.objects.filter(used_at__isnull=True).count() == 9


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "x" * 65, "٠١٢٣٤٥"])
def test_malformed_codes_are_incorrect_codes(ada_with_fallback, code):
    response = fallback_sign_in(Browser(), code)
    assert response.status_code == 400
    assert title_in(response) == INCORRECT_CODE
    assert not Browser().is_signed_in()


def test_unknown_users_and_users_without_the_fallback_read_like_a_wrong_password(
    ada_with_fallback,
):
    enrolled_person("grace@example.com", "Grace Hopper")  # passkey only
    answers = [
        password_step(Browser(), "ada@example.com", "wrong password!"),
        password_step(Browser(), "nobody@example.com", PASSWORD),
        password_step(Browser(), "grace@example.com", PASSWORD),
    ]
    for response in answers:
        assert response.status_code == 400
        assert title_in(response) == INCORRECT
    bodies = {
        without_csrf(r.content).replace("nobody", "X").replace("grace", "X").replace("ada", "X")
        for r in answers
    }
    assert len(bodies) == 1
    reasons = set(
        AuditEvent.objects.filter(action="sign_in.failed").values_list("reason", flat=True)
    )
    assert reasons == {"password_incorrect"}


def test_the_code_step_needs_a_recent_password(ada_with_fallback, clock):
    browser = Browser()
    assert password_step(browser).status_code == 303
    clock.advance(10 * 60 + 1)
    response = post(browser, "/sign-in/code", code=code_at(clock.now))
    assert response.status_code == 400
    assert title_in(response) == SESSION_EXPIRED
    assert not browser.is_signed_in()
    # Without a password first, the code page sends the person back.
    assert title_in(post(Browser(), "/sign-in/code", code="123456")) == SESSION_EXPIRED


def test_a_deactivated_account_cannot_sign_in_with_the_fallback(ada_with_fallback, clock):
    ada, _ = ada_with_fallback
    ada.user.is_active = False
    ada.user.save()
    response = fallback_sign_in(Browser(), code_at(clock.now))
    assert response.status_code == 403
    assert title_in(response) == VERIFICATION_FAILED
    assert last_event("sign_in.failed").reason == "account_disabled"


def test_a_refused_account_keeps_its_recovery_code(ada_with_fallback):
    """The code was right but the account may not sign in: the code is not used up."""
    ada, codes = ada_with_fallback
    ada.user.is_active = False
    ada.user.save()
    assert fallback_sign_in(Browser(), codes[0]).status_code == 403
    assert last_event("sign_in.failed").reason == "account_disabled"
    assert RecoveryCode.objects.filter(user=ada.user, used_at__isnull=True).count() == 10
    ada.user.is_active = True
    ada.user.save()
    assert fallback_sign_in(Browser(), codes[0]).status_code == 303


def test_policy_can_turn_the_fallback_off(ada_with_fallback, clock):
    do_update_policy(Policy(allow_password_fallback=False), Origin.cli())
    page = Browser().get("/sign-in/password")
    assert NOT_AVAILABLE in page.content.decode()
    assert 'type="password"' not in page.content.decode()
    response = password_step(Browser())
    assert response.status_code == 403
    assert title_in(response) == NOT_AVAILABLE


def test_overlong_input_is_a_wrong_password_not_an_error(ada_with_fallback):
    response = password_step(Browser(), "ada@example.com", "x" * 10_000)
    assert response.status_code == 400
    assert title_in(response) == INCORRECT
    response = password_step(Browser(), "a" * 10_000, PASSWORD)
    assert response.status_code == 400
    assert title_in(response) == INCORRECT


# --- Throttling ----------------------------------------------------------------------------------


def test_failures_for_one_username_slow_it_down_then_lock_the_password_path(
    ada_with_fallback, clock
):
    ada, _ = ada_with_fallback
    for _ in range(throttle.FREE_FAILURES):
        assert title_in(password_step(Browser(), password="wrong password!")) == INCORRECT
    # The next attempt must wait; even the right password is not checked.
    refused = password_step(Browser())
    assert refused.status_code == 429
    assert title_in(refused) == TOO_MANY
    clock.advance(1)
    assert title_in(password_step(Browser(), password="wrong password!")) == INCORRECT
    # Up to the lockout threshold (10 by default), waiting out each delay.
    for _ in range(10 - throttle.FREE_FAILURES - 1):
        clock.advance(throttle.MAX_DELAY_SECONDS)
        password_step(Browser(), password="wrong password!")
    clock.advance(throttle.MAX_DELAY_SECONDS)
    assert password_step(Browser()).status_code == 429
    assert last_event("sign_in.failed").reason == "too_many_attempts"
    # The passkey still works: a stranger's guesses cannot lock a person out.
    assert_ok(sign_in(Browser(), ada.authenticator))
    clock.advance(throttle.LOCKOUT_SECONDS + 1)
    assert password_step(Browser()).status_code == 303


def test_a_stranger_cannot_keep_the_persons_password_shut(ada_with_fallback, clock):
    """A wrong password every two minutes for six hours, from one network or from ever new
    addresses: the person's right password, from the browser they signed in with before,
    still signs them in at once, while the stranger's network is slowed, then locked, and the
    guesses from ever new addresses are slowed too (the username-wide wait,
    test_a_new_browser_waits_for_the_guesses_from_many_networks)."""
    ada, _ = ada_with_fallback
    own = Browser()
    assert fallback_sign_in(own, code_at(clock.now)).status_code == 303  # known from now on
    own.client.cookies.pop(settings.SESSION_COOKIE_NAME)  # signed out, cookie jar kept
    answers: dict[str, list[int]] = {"one network": [], "new addresses": []}
    for attempt in range(6 * 30):
        if attempt % 2:
            source, address = "one network", "198.51.100.66"
        else:
            source, address = "new addresses", f"10.0.{attempt // 250}.{attempt % 250}"
        response = password_step(Browser(REMOTE_ADDR=address), password=f"guess {attempt}")
        assert response.status_code == 429 or title_in(response) == INCORRECT
        answers[source].append(response.status_code)
        if attempt % 30 == 29:
            # Right after a stranger's failure: the person does not wait for it.
            assert fallback_sign_in(own, code_at(clock.now)).status_code == 303
            assert last_event("sign_in.succeeded").subject_id == ada.user.pk
            own.client.cookies.pop(settings.SESSION_COOKIE_NAME)
        clock.advance(120)
    # Three free failures, waits that double past the two minutes between tries, the lockout
    # at ten and again at each failure after it: most tries were refused unchecked.
    assert answers["one network"].count(400) < 20
    assert answers["one network"].count(429) > 70
    assert FailureCounter.objects.get(key__startswith="user-net:", failures__gte=10).locked_until
    # Ever new addresses: slowed once the policy's threshold was passed (each of the person's
    # sign-ins starts the count again), never for more than MAX_DELAY_SECONDS.
    assert 0 < answers["new addresses"].count(429) < 15
    assert (
        not FailureCounter.objects.filter(key__startswith="user-any:")
        .exclude(locked_until=None)
        .filter(locked_until__gt=threshold.clock.now_datetime() + timedelta(minutes=16))
        .exists()
    )


def test_a_new_browser_waits_for_the_guesses_from_many_networks(ada_with_fallback, clock):
    """Without the cookie of an earlier sign-in, the username-wide wait applies: the person
    on a new computer waits as the guesser does (minutes at most), and their passkeys do not."""
    for number in range(get_policy().password_lockout_threshold):
        password_step(Browser(REMOTE_ADDR=f"192.0.2.{number + 1}"), password=f"guess {number}")
    assert password_step(Browser(REMOTE_ADDR="203.0.113.9")).status_code == 429
    clock.advance(throttle.MAX_DELAY_SECONDS)
    assert (
        fallback_sign_in(Browser(REMOTE_ADDR="203.0.113.9"), code_at(clock.now)).status_code == 303
    )


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", ""], ids=["loopback", "IPv6", "unknown"])
def test_an_address_every_client_shares_slows_guesses_but_shuts_nothing(
    ada_with_fallback, db, clock, address
):
    """Behind a proxy Threshold is not told about, or on a Unix socket, every client has one
    address: counting by it would let one stranger lock the person out for an hour, or shut the
    password path for everyone after 50 failures. There, failures only slow the username."""
    ada, _ = ada_with_fallback
    for attempt in range(throttle.ADDRESS_FAILURES + 10):
        password_step(Browser(REMOTE_ADDR=address), f"someone{attempt}@example.com", "wrong!")
    for attempt in range(20):
        password_step(Browser(REMOTE_ADDR=address), password=f"guess {attempt}")
        clock.advance(1)
    # Slowed, at most by the longest doubling wait: never the hour's lockout.
    refused = password_step(Browser(REMOTE_ADDR=address))
    assert refused.status_code == 429
    clock.advance(throttle.MAX_DELAY_SECONDS)
    assert fallback_sign_in(Browser(REMOTE_ADDR=address), code_at(clock.now)).status_code == 303
    assert last_event("sign_in.succeeded").subject_id == ada.user.pk
    # Other people were never shut out by the 60 failures for other usernames.
    assert not FailureCounter.objects.filter(key__startswith="net:").exists()


def test_wrong_codes_from_many_networks_are_throttled_per_person(ada_with_fallback, clock):
    # Someone who has the password: new addresses do not buy more guesses at the code.
    for number in range(throttle.FREE_FAILURES):
        browser = Browser(REMOTE_ADDR=f"10.1.0.{number}")
        assert title_in(fallback_sign_in(browser, "000000")) == INCORRECT_CODE
    browser = Browser(REMOTE_ADDR="10.1.0.99")
    assert password_step(browser).status_code == 303
    assert post(browser, "/sign-in/code", code=code_at(clock.now)).status_code == 429
    assert not browser.is_signed_in()


def test_unknown_usernames_are_throttled_alike(db, clock):
    for _ in range(throttle.FREE_FAILURES):
        password_step(Browser(), "nobody@example.com", "wrong password!")
    refused = password_step(Browser(), "nobody@example.com", "wrong password!")
    assert refused.status_code == 429
    assert title_in(refused) == TOO_MANY


def test_wrong_codes_count_too(ada_with_fallback, clock):
    browser = Browser()
    for _ in range(throttle.FREE_FAILURES):
        response = fallback_sign_in(browser, "000000")
        assert title_in(response) == INCORRECT_CODE
    refused = post(browser, "/sign-in/code", code=code_at(clock.now))
    assert refused.status_code == 429
    assert not browser.is_signed_in()


def test_a_success_forgets_the_usernames_failures(ada_with_fallback, clock):
    password_step(Browser(), password="wrong password!")
    password_step(Browser(), password="wrong password!")
    assert fallback_sign_in(Browser(), code_at(clock.now)).status_code == 303
    assert not FailureCounter.objects.filter(key__startswith="user:").exists()


def test_guessing_across_many_accounts_from_one_address_is_throttled(db, clock):
    for number in range(throttle.ADDRESS_FAILURES):
        password_step(Browser(), f"person{number}@example.com", "guess")
    refused = password_step(Browser(), "someone-new@example.com", "guess")
    assert refused.status_code == 429
    assert title_in(refused) == TOO_MANY
    # Another address is not affected, and the window passes.
    other = Browser(REMOTE_ADDR="198.51.100.99")
    assert title_in(password_step(other, "someone-new@example.com", "guess")) == INCORRECT
    clock.advance(throttle.ADDRESS_WINDOW_SECONDS + 1)
    assert title_in(password_step(Browser(), "someone-else@example.com", "guess")) == INCORRECT


# --- Setting it up in Settings -------------------------------------------------------------------


@pytest.fixture
def ada_browser(ada, clock) -> Browser:
    browser = Browser()
    assert_ok(sign_in(browser, ada.authenticator))
    return browser


def shown_secret(browser: Browser) -> str:
    page = browser.get("/settings/fallback/set-up").content.decode()
    assert 'src="data:image/svg+xml' in page
    found = re.search(r'<code id="totp-secret">([A-Z2-7 ]+)</code>', page)
    assert found, page
    return found.group(1).replace(" ", "")


def test_setting_up_the_fallback(ada, ada_browser, clock, django_capture_on_commit_callbacks):
    secret = shown_secret(ada_browser)
    assert shown_secret(ada_browser) == secret  # a reload shows the same key
    code = pyotp.TOTP(secret).at(clock.now)
    with django_capture_on_commit_callbacks(execute=True):
        response = post(
            ada_browser,
            "/settings/fallback/set-up",
            password=PASSWORD,
            confirm_password=PASSWORD,
            code=code,
        )
    assert response.status_code == 200
    codes = re.findall(r"<li><code>([a-z2-7-]{19})</code></li>", response.content.decode())
    assert len(codes) == 10
    ada.user.refresh_from_db()
    assert ada.user.check_password(PASSWORD)
    assert TotpDevice.objects.get(user=ada.user).secret == secret
    assert last_event("fallback.set_up").actor == ada.user
    assert "password and authenticator app were added" in mail.outbox[-1].subject
    settings_page = ada_browser.get("/settings").content.decode()
    assert "10 left" in settings_page
    # The code that confirmed the set-up cannot sign in.
    clock.advance(1)
    assert title_in(fallback_sign_in(Browser(), code)) == INCORRECT_CODE


@pytest.mark.parametrize(
    ("password", "confirm", "code_ok", "problem"),
    [
        ("short", "short", True, "too short"),
        ("password123456", "password123456", True, "too common"),
        (PASSWORD, PASSWORD + "x", True, "not the same"),
        (PASSWORD, PASSWORD, False, "code from your authenticator app is not right"),
        ("", "", True, "Choose a password"),
    ],
)
def test_set_up_problems_are_explained_and_nothing_is_stored(
    ada, ada_browser, clock, password, confirm, code_ok, problem
):
    secret = shown_secret(ada_browser)
    code = pyotp.TOTP(secret).at(clock.now) if code_ok else "000000"
    response = post(
        ada_browser,
        "/settings/fallback/set-up",
        password=password,
        confirm_password=confirm,
        code=code,
    )
    assert response.status_code == 400
    assert problem in response.content.decode()
    assert not TotpDevice.objects.exists()
    ada.user.refresh_from_db()
    assert not ada.user.has_usable_password()


def test_set_up_needs_a_recent_passkey_verification(ada_browser, clock):
    clock.advance(301)
    response = ada_browser.get("/settings/fallback/set-up")
    assert response.status_code == 303
    assert response["Location"].startswith("/settings/verify?next=")


def test_new_recovery_codes_replace_the_old(ada_with_fallback, clock):
    ada, old = ada_with_fallback
    browser = Browser()
    assert_ok(sign_in(browser, ada.authenticator))
    response = post(browser, "/settings/fallback/recovery-codes")
    new = re.findall(r"<li><code>([a-z2-7-]{19})</code></li>", response.content.decode())
    assert len(new) == 10
    assert not set(new) & set(old)
    assert title_in(fallback_sign_in(Browser(), old[1])) == INCORRECT_CODE
    assert fallback_sign_in(Browser(), new[1]).status_code == 303


def test_removing_the_fallback(ada_with_fallback, clock):
    ada, _ = ada_with_fallback
    browser = Browser()
    assert_ok(sign_in(browser, ada.authenticator))
    response = post(browser, "/settings/fallback/remove")
    assert response.status_code == 303
    assert not TotpDevice.objects.exists()
    assert not RecoveryCode.objects.exists()
    ada.user.refresh_from_db()
    assert not ada.user.has_usable_password()
    assert title_in(password_step(Browser())) == INCORRECT


def test_the_fallback_cannot_be_removed_when_it_is_the_last_method(ada_with_fallback, clock):
    ada, _ = ada_with_fallback
    browser = Browser()
    assert_ok(sign_in(browser, ada.authenticator))
    ada.passkey.delete()
    response = post(browser, "/settings/fallback/remove")
    assert response.status_code == 409
    assert TotpDevice.objects.exists()
    assert last_event("fallback.removal_refused").reason == "last_method"


# --- A fallback sign-in and the passkey prompt ---------------------------------------------------


def test_a_fallback_sign_in_may_add_a_passkey_but_not_remove_one(ada_with_fallback, clock):
    ada, _ = ada_with_fallback
    browser = Browser()
    fallback_sign_in(browser, code_at(clock.now))
    assert browser.get("/settings/security-methods/add").status_code == 200
    remove = browser.get(f"/settings/security-methods/{ada.passkey.pk}/remove")
    assert remove.status_code == 303
    assert remove["Location"].startswith("/settings/verify")
    assert browser.get("/settings/fallback/set-up").status_code == 303


def test_the_prompt_asks_someone_with_a_passkey_elsewhere_for_one_on_this_device(
    ada_with_fallback, clock
):
    ada, _ = ada_with_fallback
    browser = Browser()
    fallback_sign_in(browser, code_at(clock.now))
    with_passkey = " ".join(browser.get("/sign-in/set-up-passkey").content.decode().split())
    assert "Set up a passkey on this device too" in with_passkey
    # Not on someone else's.
    assert "On a borrowed or shared device, choose “I’ll do it later”" in html.unescape(
        with_passkey
    )

    Passkey.objects.filter(user=ada.user).delete()
    without = " ".join(browser.get("/sign-in/set-up-passkey").content.decode().split())
    assert "on this device too" not in without
    assert "Next time, sign in with your fingerprint, face or device PIN instead" in without


def prompt_after_sign_in(clock) -> bool:
    clock.advance(totp.STEP_SECONDS)
    response = fallback_sign_in(Browser(), code_at(clock.now))
    assert response.status_code == 303
    return response["Location"] == "/sign-in/set-up-passkey"


def test_ill_do_it_later_hides_the_prompt_for_ten_sign_ins(ada_with_fallback, clock):
    ada, _ = ada_with_fallback
    browser = Browser()
    fallback_sign_in(browser, code_at(clock.now))
    page = browser.get("/sign-in/set-up-passkey").content.decode()
    assert "Set up a passkey" in page
    assert "I&rsquo;ll do it later" in page
    assert post(browser, "/sign-in/set-up-passkey").status_code == 303
    assert last_event("passkey_prompt.snoozed").subject == ada.user

    # Sign-ins 1 to 9 after the snooze (one with a passkey: every kind counts)...
    clock.advance(1)
    assert_ok(sign_in(Browser(), ada.authenticator))
    results = [prompt_after_sign_in(clock) for _ in range(8)]
    assert results == [False] * 8
    # ...and the 10th brings the prompt back.
    assert prompt_after_sign_in(clock)


def test_the_prompt_returns_after_seven_days(ada_with_fallback, clock):
    browser = Browser()
    fallback_sign_in(browser, code_at(clock.now))
    post(browser, "/sign-in/set-up-passkey")
    assert not prompt_after_sign_in(clock)
    clock.advance(7 * 24 * 3600)
    assert prompt_after_sign_in(clock)


def test_the_snooze_numbers_are_policy_settings(ada_with_fallback, clock):
    do_update_policy(Policy(passkey_prompt_snooze_sign_ins=2), Origin.cli())
    browser = Browser()
    fallback_sign_in(browser, code_at(clock.now))
    post(browser, "/sign-in/set-up-passkey")
    assert not prompt_after_sign_in(clock)
    assert prompt_after_sign_in(clock)


# --- Found in review -----------------------------------------------------------------------------


def test_control_characters_in_a_username_are_a_wrong_password(db):
    response = password_step(Browser(), "ada\x00@example.com", PASSWORD)
    assert response.status_code == 400
    assert title_in(response) == INCORRECT
    assert last_event("sign_in.failed").reason == "password_incorrect"


def test_a_pending_password_step_dies_with_a_password_change(ada_with_fallback, clock):
    ada, _ = ada_with_fallback
    browser = Browser()
    assert password_step(browser).status_code == 303
    ada.user.set_password("another long password here")
    ada.user.save()
    response = post(browser, "/sign-in/code", code=code_at(clock.now))
    assert title_in(response) == SESSION_EXPIRED
    assert not browser.is_signed_in()


def test_the_next_code_works_right_after_set_up(ada, clock):
    step = int(clock.now // totp.STEP_SECONDS)
    do_set_up_fallback(ada.user, PASSWORD, SECRET, step, Origin.cli())
    assert title_in(fallback_sign_in(Browser(), code_at(clock.now))) == INCORRECT_CODE
    clock.advance(totp.STEP_SECONDS)
    assert fallback_sign_in(Browser(), code_at(clock.now)).status_code == 303


def test_set_up_without_a_recent_verification_stores_nothing(ada, ada_browser, clock):
    secret = shown_secret(ada_browser)
    clock.advance(301)
    response = post(
        ada_browser,
        "/settings/fallback/set-up",
        password=PASSWORD,
        confirm_password=PASSWORD,
        code=pyotp.TOTP(secret).at(clock.now),
    )
    assert response.status_code == 303
    assert response["Location"].startswith("/settings/verify")
    assert not TotpDevice.objects.exists()


def test_a_set_up_form_sent_twice_says_so_instead_of_failing(ada, ada_browser, clock):
    secret = shown_secret(ada_browser)
    fields = {
        "password": PASSWORD,
        "confirm_password": PASSWORD,
        "code": pyotp.TOTP(secret).at(clock.now),
    }
    assert post(ada_browser, "/settings/fallback/set-up", **fields).status_code == 200
    # The second copy of the form, sent before the first answer came back.
    again = ada_browser.client.post(
        "/settings/fallback/set-up",
        {"csrfmiddlewaretoken": ada_browser.csrf_token(), **fields},
    )
    assert again.status_code == 303
    assert again["Location"] == "/settings?done=fallback-set-up#fallback"
    assert TotpDevice.objects.count() == 1


def test_behind_the_proxy_the_client_is_the_address_it_forwarded(ada_with_fallback, settings):
    settings.THRESHOLD = dataclasses.replace(settings.THRESHOLD, proxy_ssl_header=True)
    browser = Browser(HTTP_X_FORWARDED_FOR="10.9.9.9, 198.51.100.23", REMOTE_ADDR="127.0.0.1")
    password_step(browser, password="wrong password!")
    assert last_event("sign_in.failed").ip == "198.51.100.23"
    # A forged or garbled header falls back to the connection's address.
    password_step(Browser(HTTP_X_FORWARDED_FOR="not an address"), password="wrong password!")
    assert last_event("sign_in.failed").ip == "203.0.113.7"


def test_a_locked_account_cannot_sign_in_with_the_fallback(ada_with_fallback, clock):
    ada, _ = ada_with_fallback
    do_lock_user(ada.user, Origin.cli(), "left the company")
    # The password step reads like any other; the lock shows once both factors are right.
    browser = Browser()
    assert password_step(browser).status_code == 303
    response = post(browser, "/sign-in/code", code=code_at(clock.now))
    assert response.status_code == 403
    assert title_in(response) == "Account Locked"
    assert not browser.is_signed_in()
    assert last_event("sign_in.failed").reason == "account_locked"


def test_a_recovery_resets_the_fallback(ada_with_fallback, clock):
    ada, _ = ada_with_fallback
    created = do_issue_recovery(ada.user, Origin.cli(), send_email=False)
    response = enroll(Browser(), token_of(created.link), SoftAuthenticator())
    assert response.status_code == 200, response.content
    assert not TotpDevice.objects.exists()
    assert not RecoveryCode.objects.exists()
    ada.user.refresh_from_db()
    assert not ada.user.has_usable_password()
    assert last_event("recovery.used").detail["fallback_removed"] is True


def test_cleanup_forgets_old_failure_counters(ada_with_fallback, clock, capsys):
    # The username from this network, from anywhere, and the network.
    password_step(Browser(), password="wrong password!")
    assert FailureCounter.objects.count() == 3
    clock.advance(throttle.FORGET_AFTER_SECONDS + 1)
    assert main(["cleanup"]) == 0
    assert "3 old sign-in failure counters" in capsys.readouterr().out
    assert not FailureCounter.objects.exists()


def test_cleanup_keeps_a_persons_wrong_codes(ada_with_fallback, clock):
    """Wrong codes in a row are counted until a sign-in or a new set-up, however old: a pause
    must not start the hundred again."""
    fallback_sign_in(Browser(), "000000")
    codes = FailureCounter.objects.get(key__startswith="user:")
    assert codes.failures == 1
    clock.advance(throttle.FORGET_AFTER_SECONDS * 30)
    assert main(["cleanup"]) == 0
    assert FailureCounter.objects.get(key__startswith="user:").failures == 1


def test_the_recovery_email_says_the_fallback_was_removed(
    ada_with_fallback, django_capture_on_commit_callbacks
):
    ada, _ = ada_with_fallback
    created = do_issue_recovery(ada.user, Origin.cli(), send_email=False)
    with django_capture_on_commit_callbacks(execute=True):
        assert enroll(Browser(), token_of(created.link), SoftAuthenticator()).status_code == 200
    assert "authenticator app and recovery codes were removed" in mail.outbox[-1].body


def test_setting_up_and_removing_the_fallback_emails_the_person_whoever_does_it(
    ada, clock, django_capture_on_commit_callbacks
):
    """The actions send the notices, not the pages: the command line (and later the admin
    portal) tells the person too."""
    with django_capture_on_commit_callbacks(execute=True):
        do_set_up_fallback(ada.user, PASSWORD, SECRET, 0, Origin.cli())
    with django_capture_on_commit_callbacks(execute=True):
        do_remove_fallback(ada.user, Origin.cli())
    added, removed = mail.outbox
    assert added.subject == "A password and authenticator app were added to your Threshold account"
    assert removed.subject == (
        "A password and authenticator app were removed from your Threshold account"
    )
    assert "From: an administrator, on the server's command line" in removed.body
    # The email names the method it is about: no passkey here.
    assert "passkey" not in added.body
    assert "You can also remove it yourself: under\nSettings, Security Methods, select Remove" in (
        added.body
    )


def test_a_known_browser_is_slowed_by_its_own_wrong_passwords(ada_with_fallback, clock):
    """The known browser's cookie, copied to many networks, is slowed as a stranger is: its
    wrong passwords count against a counter of its own (OWASP's device cookies); and a new
    password ends it."""
    own = Browser()
    assert fallback_sign_in(own, code_at(clock.now)).status_code == 303
    copied = own.client.cookies[known.COOKIE].value
    answers = []
    for number in range(get_policy().password_lockout_threshold + 1):
        guesser = Browser(REMOTE_ADDR=f"2001:db8:5:{number + 1:x}::1")
        guesser.client.cookies[known.COOKIE] = copied
        answers.append(password_step(guesser, password=f"guess {number}").status_code)
    assert answers[-1] == 429
    assert answers.count(400) == get_policy().password_lockout_threshold
    # Strangers without it were never counted against: a new browser is not slowed.
    assert password_step(Browser(REMOTE_ADDR="198.51.100.5")).status_code == 303
