"""Regression tests from an adversarial review of the account-level flows (sessions, links, the
password and authenticator-app fallback). Each ``xfail(strict=True)`` test fails because of a
defect the review confirmed; it starts passing (and so failing the run, strict) once the defect
is fixed, when its mark should go."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.integration.conftest import Browser, invite
from tests.integration.test_fallback import (
    PASSWORD,
    SECRET,
    ada_with_fallback,  # noqa: F401 - a fixture
    code_at,
    post,
    title_in,
)
from threshold.audit import capped
from threshold.audit.actions import Origin
from threshold.audit.models import AuditEvent
from threshold.cli.accesslog import RedactingFormatter
from threshold.enrollment.actions import do_issue_recovery
from threshold.fallback.models import FailureCounter

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parents[2]


# --- The server log -------------------------------------------------------------------------------


@pytest.mark.parametrize("purpose", ["enrollment", "recovery"])
def test_a_refused_request_on_a_links_address_does_not_log_its_token(ada, purpose, caplog):
    if purpose == "enrollment":
        _, token = invite("bob@example.com", "Bob")
    else:
        token = do_issue_recovery(ada.user, Origin.cli(), send_email=False).link.rsplit("/", 1)[1]
    browser = Browser()
    assert browser.get(f"/enroll/{token}").status_code == 200
    caplog.clear()
    # The page's CSRF token went stale (a sign-in in another tab rotates it), or the cookie was
    # blocked: the ceremony's request is refused, and the link still works afterwards.
    response = browser.client.post(
        f"/enroll/{token}/options", "{}", content_type="application/json"
    )
    assert response.status_code == 403
    assert caplog.records, "the refusal is logged"
    assert any(token in record.getMessage() for record in caplog.records)  # as Django says it
    # What the server's log handler writes (settings.LOGGING): redacted.
    [formatter] = [
        handler.formatter
        for handler in logging.getLogger().handlers
        if isinstance(handler.formatter, RedactingFormatter)
    ]
    written = "\n".join(formatter.format(record) for record in caplog.records)
    assert token not in written
    assert "/enroll/[token]/options" in written


# --- Guessing the authenticator app's code --------------------------------------------------------

# NIST SP 800-63B-4 §3.2.2 (which threshold/core/throttle.py cites): at most 100 consecutive
# failed attempts on one account.
MOST_CONSECUTIVE_FAILURES = 100


def test_wrong_codes_stop_being_checked_after_at_most_100_in_a_row(ada_with_fallback, clock):  # noqa: F811
    def wait_out_the_delay() -> None:
        counter = FailureCounter.objects.filter(key__startswith="user:").first()
        if counter is not None and counter.locked_until is not None:
            clock.advance(max(0.0, counter.locked_until.timestamp() - clock.now) + 1)

    def try_code(number: int, code: str | None = None):
        wait_out_the_delay()
        code = code or code_at(clock.now)
        browser = Browser(REMOTE_ADDR=f"198.51.{number // 250}.{number % 250 + 1}")
        assert (
            post(
                browser, "/sign-in/password", username="ada@example.com", password=PASSWORD
            ).status_code
            == 303
        )
        return post(browser, "/sign-in/code", code=code)

    for number in range(MOST_CONSECUTIVE_FAILURES):
        current = {code_at(clock.now, steps) for steps in (-1, 0, 1)}
        wrong = next(f"{n:06d}" for n in range(10) if f"{n:06d}" not in current)
        assert title_in(try_code(number, wrong)) == "Incorrect code"
    # One more, after every delay has passed: the app's code is no longer checked at all.
    response = try_code(MOST_CONSECUTIVE_FAILURES)
    assert response.status_code != 303, "a right code after 100 wrong ones signed in"
    assert title_in(response) == "Too Many Attempts"


# --- The session cookie ---------------------------------------------------------------------------


@pytest.mark.same_on_every_database  # settings read in a process of its own
def test_over_https_the_cookies_cannot_be_planted_by_a_sibling_subdomain(tmp_path):
    env = {
        **os.environ,
        "THRESHOLD_VAR_DIR": str(tmp_path),
        "THRESHOLD_RP_ID": "example.com",
        "THRESHOLD_ORIGINS": "https://login.example.com",
        "THRESHOLD_FIDO_CONFORMANCE": "0",
        "DJANGO_SETTINGS_MODULE": "threshold.settings",
        "PYTHONPATH": str(REPO),
    }
    script = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "from threshold.passkeys.http import CEREMONY_COOKIE as c; "
        "from threshold.devices.views import PUSH_COOKIE as p, STEP_UP_PUSH_COOKIE as u; "
        "from threshold.sessions.middleware import SIGNED_IN_COOKIE as i; "
        "print(json.dumps([s.SESSION_COOKIE_SECURE, s.SESSION_COOKIE_NAME, s.CSRF_COOKIE_NAME, "
        "c.format(kind='authentication'), p, u, i]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout
    secure, *names = json.loads(out.strip().splitlines()[-1])
    assert secure
    # The session and CSRF cookies, a ceremony's, a push's, a step-up push's, "signed in".
    assert names == [
        "__Host-threshold_session",
        "__Host-threshold_csrf",
        "__Host-threshold_ceremony_authentication",
        "__Host-threshold_push",
        "__Host-threshold_step_up_push",
        "__Host-threshold_signed_in",
    ]


def test_of_two_session_cookies_the_last_one_is_used(ada):
    """Why the prefix matters: a browser sends a host-only cookie and a tossed Domain= cookie of
    the same name (the older first, RFC 6265 §5.4), and the later one is the session used."""
    from tests.integration.conftest import SESSION_COOKIE, enrolled_person, sign_in  # noqa: PLC0415

    mallory = enrolled_person("mallory@example.com", "Mallory")
    victim, attacker = Browser(), Browser()
    assert sign_in(victim, ada.authenticator).status_code == 200
    assert sign_in(attacker, mallory.authenticator).status_code == 200
    both = f"{SESSION_COOKIE}={victim.session_key}; {SESSION_COOKIE}={attacker.session_key}"
    page = Browser().client.get("/settings", HTTP_COOKIE=both).content.decode()
    assert "mallory@example.com" in page
    assert "ada@example.com" not in page


# --- Audit rows from anonymous junk ---------------------------------------------------------------


def _junk_link(browser: Browser, number: int) -> None:
    browser.get(f"/enroll/{'x' * 40}{number:03d}")


def _junk_password(browser: Browser, number: int) -> None:
    post(browser, "/sign-in/password", username=f"nobody{number}@example.com", password="x" * 12)


def _junk_result(browser: Browser, number: int) -> None:
    browser.post_json("/sign-in/result", {"id": f"junk{number}"})


@pytest.mark.parametrize(
    "junk", [_junk_link, _junk_password, _junk_result], ids=["link", "password", "result"]
)
def test_junk_that_names_no_one_is_audited_up_to_its_networks_rate(db, clock, junk):
    browser = Browser()
    before = AuditEvent.objects.count()
    for number in range(capped.BURST * 3):
        junk(browser, number)
    written = AuditEvent.objects.count() - before
    assert written <= capped.BURST + 1, f"{written} audit rows for {capped.BURST * 3} requests"


def test_the_wrong_code_that_shuts_the_code_step_tells_the_person_once_and_a_reset_reopens_it(
    ada_with_fallback,  # noqa: F811
    clock,
    django_capture_on_commit_callbacks,
):
    from django.core import mail  # noqa: PLC0415

    from threshold.core import throttle  # noqa: PLC0415
    from threshold.fallback.actions import do_reset_fallback, do_set_up_fallback  # noqa: PLC0415

    ada, _ = ada_with_fallback
    FailureCounter.objects.create(
        key=f"user:{hashlib.sha256(b'ada@example.com').hexdigest()}",
        failures=throttle.MOST_CODE_FAILURES - 1,
        first_failure_at=datetime.fromtimestamp(clock.now, UTC),
        last_failure_at=datetime.fromtimestamp(clock.now, UTC),
    )
    mail.outbox.clear()
    current = {code_at(clock.now, steps) for steps in (-1, 0, 1)}
    wrong = next(f"{n:06d}" for n in range(10) if f"{n:06d}" not in current)
    browser = Browser(REMOTE_ADDR="198.51.100.7")
    assert post(browser, "/sign-in/password", username=ada.user.username, password=PASSWORD)
    with django_capture_on_commit_callbacks(execute=True):
        assert title_in(post(browser, "/sign-in/code", code=wrong)) == "Incorrect code"
    [notice] = mail.outbox
    assert "Password sign-in was turned off" in notice.subject
    clock.advance(2 * 24 * 3600)  # long after: still shut
    again = Browser(REMOTE_ADDR="198.51.100.8")
    assert post(again, "/sign-in/password", username=ada.user.username, password=PASSWORD)
    with django_capture_on_commit_callbacks(execute=True):
        refused = post(again, "/sign-in/code", code=code_at(clock.now))
    assert title_in(refused) == "Too Many Attempts"
    assert len(mail.outbox) == 1
    # An administrator resets the fallback; the person sets it up again: codes count afresh.
    do_reset_fallback(ada.user, Origin.cli(), actor=ada.user)
    do_set_up_fallback(ada.user, PASSWORD, SECRET, 0, Origin.cli())
    clock.advance(60)
    fresh = Browser(REMOTE_ADDR="198.51.100.9")
    assert post(fresh, "/sign-in/password", username=ada.user.username, password=PASSWORD)
    assert post(fresh, "/sign-in/code", code=code_at(clock.now)).status_code == 303


def test_a_signed_in_persons_failed_step_up_is_recorded_whatever_the_networks_rate(ada, clock):
    """Audit rows of refusals that name no one are capped per network; a "Verify it's you"
    has its signed-in person behind it (a stolen session's attempts included): always kept."""
    from tests.integration.conftest import ORIGIN, assert_ok, enrolled_person, sign_in  # noqa: PLC0415

    grace = enrolled_person("grace@example.com", "Grace Hopper")
    browser = Browser()
    assert_ok(sign_in(browser, ada.authenticator))
    clock.advance(301)
    network = capped.throttle.network_of("127.0.0.1")
    while capped.LIMIT.take(network, clock.now) == 0.0:
        pass  # the network's anonymous refusals spent its rate (an office behind one address)
    options = browser.post_json("/settings/verify/options").json()["publicKey"]
    options["allowCredentials"] = []
    answer = browser.post_json("/settings/verify/result", grace.authenticator.get(options, ORIGIN))
    assert answer.status_code == 400
    row = AuditEvent.objects.filter(action="step_up.failed").latest("id")
    assert row.actor_id == ada.user.pk
