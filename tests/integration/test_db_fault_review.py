"""An outside review of what Threshold does when its database fails under a request that writes.

Every write flow was driven through Django's test client (the lean sign-in through the production
WSGI application, tests/support/wsgi.py) with the database failing at each statement in turn
(``tests.support.faults.database_fails``, the driver's own ``OperationalError``), and once with a
real "database or disk is full" (SQLite's ``PRAGMA max_page_count``): enrollment and recovery
links (options and result), passkey sign-in (the anonymous lean path and a signed-in browser),
"Verify it's you", Settings' "Set up another", rename and remove, signing out and "Sign out other
sessions", the password and app fallback (both steps and its set-up), the admin portal's invite,
lock, deactivate, role, policy and recovery-link actions, Threshold Verify's answer and the push
sign-in's finish, and OpenID Connect's /authorize, /token (code and refresh), /userinfo,
/revoke and "Sign in again".

What holds: every fault is answered 503 with Retry-After in the catalog's words (JSON for the
JSON endpoints, OAuth's ``temporarily_unavailable`` for an app's server), never a 500 or a
traceback; each action's own transaction rolls back whole (no passkey without its audit row, no
rotated refresh token without its successor, no email for a rolled-back change); and a retry
succeeds once the database is back.

What does not: the work a request does *after* its action committed. The session a sign-in
starts is written by Django's session middleware when the response goes out, in a transaction
of its own (the lean passkey sign-in alone writes it in the ceremony's transaction), and
``SessionStore.cycle_key`` deletes the session it replaces at once. A failure there answers
"try again" for a change that already happened and used up what a retry needs. The fallback's
code step is not one transaction either. Each test below is one such defect, fixed since
(``sessions.actions.with_the_session``).

The faults that land after a commit need real commits: these tests use ``transactional_db``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pyotp
import pytest
from django.core import mail
from django.test import Client

from tests.integration.conftest import (
    ORIGIN,
    Browser,
    FrozenClock,
    Person,
    begin_sign_in,
    enrolled_person,
    invite,
    token_of,
)
from tests.support.authenticator import SoftAuthenticator
from tests.support.device import SoftDevice
from tests.support.faults import database_fails
from threshold.audit.actions import Origin
from threshold.core import totp
from threshold.devices.actions import do_confirm_returned_code, do_issue_setup_code
from threshold.devices.models import Device
from threshold.enrollment.actions import do_issue_recovery
from threshold.fallback.actions import do_set_up_fallback
from threshold.fallback.models import TotpDevice
from threshold.fallback.views import PENDING_SECRET
from threshold.passkeys.hotpath import forget_policy
from threshold.passkeys.models import Passkey
from threshold.policy.access import get_policy
from threshold.policy.actions import do_update_policy
from threshold.sessions import flow
from threshold.sessions.store import SessionStore
from threshold.sso.actions import do_add_app
from threshold.sso.models import AppSignIn, LogoutDelivery

SESSION_INSERT = 'INSERT INTO "web_session"'
PASSWORD = "correct horse battery staple 42"
REDIRECT_URI = "https://app.example.com/callback"


# --- Helpers --------------------------------------------------------------------------------


@contextmanager
def first_fails(prefix: str) -> Iterator[list[str]]:
    """The first statement that starts with ``prefix`` fails as a locked database does."""
    with database_fails(at=0, where=lambda sql: sql.lstrip().startswith(prefix)) as seen:
        yield seen


def statement_fails(fragment: str) -> AbstractContextManager[list[str]]:
    """The first statement that names ``fragment`` fails as a locked database does."""
    return database_fails(at=0, where=lambda sql: fragment in sql)


def browser() -> Browser:
    """A person's browser that, as a real one, gets the 503 page instead of the exception."""
    return Browser(raise_request_exception=False)


def signed_in(person: Person) -> Browser:
    visitor = browser()
    credential = person.authenticator.get(begin_sign_in(visitor), ORIGIN)
    assert visitor.post_json("/sign-in/result", credential).status_code == 200
    return visitor


def assert_unavailable(response: Any) -> None:
    """What every fault is answered with: 503, Retry-After."""
    assert response.status_code == 503, (response.status_code, response.content[:300])
    assert response["Retry-After"]


def post_form(visitor: Browser, path: str, **data: str) -> Any:
    return visitor.client.post(path, {**data, "csrfmiddlewaretoken": visitor.csrf_token()})


def allow(**settings: Any) -> None:
    do_update_policy(dataclasses.replace(get_policy(), **settings), Origin.cli())
    forget_policy()


def with_fallback(person: Person) -> list[str]:
    """The password and app set up for ``person``; their recovery codes."""
    allow(allow_password_fallback=True)
    return do_set_up_fallback(person.user, PASSWORD, totp.new_secret(), 1, Origin.cli())


@pytest.fixture
def ada(transactional_db: None) -> Person:
    return enrolled_person("ada@example.com", "Ada Lovelace")


# --- Enrollment and recovery links -----------------------------------------------------------


def _link(purpose: str) -> str:
    """The token of a fresh enrollment link, or of a recovery link for someone enrolled."""
    if purpose == "enrollment":
        _, token = invite("grace@example.com", "Grace Hopper")
        return str(token)
    person = enrolled_person("grace@example.com", "Grace Hopper")
    return token_of(do_issue_recovery(person.user, Origin.cli(), send_email=False).link)


@pytest.mark.parametrize("purpose", ["enrollment", "recovery"])
def test_a_link_answered_try_again_can_be_used_again(transactional_db: None, purpose: str) -> None:
    token = _link(purpose)
    visitor, soft = browser(), SoftAuthenticator()
    options = visitor.post_json(f"/enroll/{token}/options")
    credential = soft.create(options.json()["publicKey"], ORIGIN)

    with first_fails(SESSION_INSERT):
        answer = visitor.post_json(f"/enroll/{token}/result", credential)
    assert_unavailable(answer)
    # "Passkey Unavailable ... You can try again": the person selects Try again.
    again = visitor.post_json(f"/enroll/{token}/options")
    assert again.status_code == 200, again.json()["error"]["title"]  # "This link can’t be used"
    credential = soft.create(again.json()["publicKey"], ORIGIN)
    assert visitor.post_json(f"/enroll/{token}/result", credential).status_code == 200
    assert visitor.is_signed_in()


def test_a_set_up_page_that_cannot_reach_the_database_says_the_set_up_failed(
    transactional_db: None,
) -> None:
    _, token = invite("grace@example.com", "Grace Hopper")
    visitor = browser()
    with database_fails(at=0):
        answer = visitor.post_json(f"/enroll/{token}/options")
    assert_unavailable(answer)
    assert answer.json()["error"]["code"] == "setup_unavailable"


def test_a_passkey_made_before_a_503_can_still_be_saved(transactional_db: None) -> None:
    _, token = invite("grace@example.com", "Grace Hopper")
    visitor, soft = browser(), SoftAuthenticator()
    options = visitor.post_json(f"/enroll/{token}/options")
    credential = soft.create(options.json()["publicKey"], ORIGIN)

    with first_fails('INSERT INTO "passkeys_passkey"'):
        assert_unavailable(visitor.post_json(f"/enroll/{token}/result", credential))
    assert not Passkey.objects.exists()  # rolled back: the server has nothing of it
    # The lean sign-in path keeps its ceremony after a 503; the set-up pages do not.
    answer = visitor.post_json(f"/enroll/{token}/result", credential)
    assert answer.status_code == 200, answer.json()["error"]["title"]  # "Session Expired"


# --- The password and app fallback ----------------------------------------------------------


def _past_the_password(person: Person) -> Browser:
    visitor = browser()
    answer = post_form(
        visitor, "/sign-in/password", username=person.user.username, password=PASSWORD
    )
    assert answer.status_code == 303, answer.status_code
    return visitor


def test_a_recovery_code_answered_try_again_still_signs_in(ada: Person) -> None:
    code = with_fallback(ada)[0]
    visitor = _past_the_password(ada)

    with first_fails('INSERT INTO "audit_auditevent"'):  # the sign-in's audit row
        assert_unavailable(post_form(visitor, "/sign-in/code", code=code))
    answer = post_form(visitor, "/sign-in/code", code=code)
    assert answer.status_code == 303, answer.status_code  # 400: "code already used"
    assert visitor.is_signed_in()


def test_attempts_the_database_failed_do_not_count_as_wrong_passwords(
    ada: Person, clock: FrozenClock
) -> None:
    with_fallback(ada)
    visitor = browser()
    for _ in range(10):  # a person retrying now and then through a long database incident
        clock.advance(16 * 60)  # longer than any delay the throttle asks for
        with statement_fails('FROM "fallback_totpdevice"'):  # after the attempt was counted
            answer = post_form(
                visitor, "/sign-in/password", username=ada.user.username, password=PASSWORD
            )
        assert_unavailable(answer)
    clock.advance(16 * 60)
    answer = post_form(visitor, "/sign-in/password", username=ada.user.username, password=PASSWORD)
    assert answer.status_code == 303, answer.status_code  # 429: locked out for an hour


def test_a_fallback_set_up_answered_try_again_stored_nothing(ada: Person, settings: Any) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    allow(allow_password_fallback=True)
    visitor = signed_in(ada)
    assert visitor.get("/settings/fallback/set-up").status_code == 200
    secret = SessionStore(visitor.session_key)[PENDING_SECRET]
    code = pyotp.TOTP(secret, digits=totp.DIGITS, interval=totp.STEP_SECONDS).now()
    mail.outbox.clear()  # the enrollment's "A passkey was added"

    with first_fails(SESSION_INSERT):
        answer = post_form(
            visitor,
            "/settings/fallback/set-up",
            password=PASSWORD,
            confirm_password=PASSWORD,
            code=code,
        )
    assert_unavailable(answer)  # the page that shows the recovery codes never came
    assert not TotpDevice.objects.filter(user=ada.user).exists()
    assert not mail.outbox  # "A password and authenticator app were added"
    assert visitor.is_signed_in()


# --- Threshold Verify -------------------------------------------------------------------------


def device_api(
    device: SoftDevice, path: str, body: dict[str, Any] | None = None, **sign: Any
) -> Any:
    compact = device.sign(path, body, **sign)
    return Client().post(path, compact, content_type="application/jose")


def with_device(person: Person) -> SoftDevice:
    """Threshold Verify set up on a new device and confirmed for ``person``."""
    allow(allow_device_app_sign_in=True)
    key = "k" * 32  # the Settings session the set-up is bound to
    issued = do_issue_setup_code(person.user, Origin.cli(), get_policy(), session_key=key)
    device = SoftDevice()
    enrolled = device_api(
        device,
        "/api/device/v1/enroll",
        {"setup_code": issued.code, "platform": "linux", "name": "Laptop"},
        with_jwk=True,
    ).json()
    device.device_id = enrolled["device_id"]
    do_confirm_returned_code(
        person.user,
        issued.enrollment.public_id,
        enrolled["returned_code"],
        Origin.cli(),
        get_policy(),
        session_key=key,
    )
    assert Device.objects.get(public_id=device.device_id).is_active
    return device


def _approved_push(person: Person) -> Browser:
    """A push sign-in from a new browser, approved in Threshold Verify with the right number."""
    device = with_device(person)
    visitor = browser()
    number = visitor.post_json("/sign-in/push/start", {"username": person.user.username})
    push = device_api(device, "/api/device/v1/approvals/pending").json()["approvals"][0]
    answer = device_api(
        device,
        "/api/device/v1/approvals/answer",
        {
            "id": push["id"],
            "decision": "approve",
            "number": number.json()["number"],
            "user_verified": True,
        },
    )
    assert answer.status_code == 200, answer.content
    return visitor


def test_an_approved_push_answered_try_again_still_signs_in(ada: Person) -> None:
    visitor = _approved_push(ada)
    with first_fails(SESSION_INSERT):
        assert_unavailable(post_form(visitor, "/sign-in/push/finish"))
    answer = post_form(visitor, "/sign-in/push/finish")
    assert answer.status_code == 303, answer.status_code  # 400 "Session Expired"
    assert visitor.is_signed_in()


# --- Single sign-on ---------------------------------------------------------------------------


def _signed_in_to_an_app(person: Person) -> tuple[Browser, str]:
    """A browser signed in to Threshold and, from it, to an app with back-channel logout;
    the session's ``sid``."""
    app = do_add_app(
        "Wiki",
        Origin.cli(),
        redirect_uris=[REDIRECT_URI],
        backchannel_logout_uri="https://app.example.com/backchannel-logout",
    )
    visitor = signed_in(person)
    verifier = "v" * 64
    query = {
        "response_type": "code",
        "client_id": app.application.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid",
        "state": "s",
        "nonce": "n",
        "code_challenge": hash_challenge(verifier),
        "code_challenge_method": "S256",
    }
    answer = visitor.get("/authorize?" + urlencode(query))
    assert "code" in parse_qs(urlsplit(answer["Location"]).query), answer.status_code
    return visitor, AppSignIn.objects.get(user=person.user).sid


def hash_challenge(verifier: str) -> str:
    """PKCE's S256 code challenge (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_a_failed_sign_in_again_keeps_the_session_or_tells_its_apps(ada: Person) -> None:
    visitor, sid = _signed_in_to_an_app(ada)
    options = visitor.post_json(
        "/authorize/sign-in/options", HTTP_X_THRESHOLD_FLOW=flow.issue_flow_token(flow.Flow.STEP_UP)
    )
    credential = ada.authenticator.get(options.json()["publicKey"], ORIGIN)

    with first_fails(SESSION_INSERT):
        assert_unavailable(visitor.post_json("/authorize/sign-in/result", credential))
    assert visitor.is_signed_in() or LogoutDelivery.objects.filter(sid=sid).exists()
