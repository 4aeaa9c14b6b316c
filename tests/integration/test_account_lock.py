"""An administrator's lock: no way of signing in works, passkeys included, until unlocked."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.integration.conftest import (
    CLIENT_IP,
    INVITE_UNUSABLE,
    ORIGIN,
    VERIFICATION_FAILED,
    Browser,
    assert_failed,
    assert_ok,
    begin_sign_in,
    enroll,
    enrolled_person,
    last_event,
    sign_in,
    token_of,
)
from tests.support.authenticator import SoftAuthenticator
from threshold.accounts.actions import do_lock_user, do_unlock_user
from threshold.accounts.models import User
from threshold.audit.actions import Origin
from threshold.audit.models import AuditEvent
from threshold.core import errors
from threshold.enrollment.actions import do_invite, do_issue_recovery
from threshold.enrollment.models import EnrollmentInvite
from threshold.passkeys.actions import do_begin_step_up, do_finish_sign_in
from threshold.passkeys.pending import Ceremonies
from threshold.sessions.models import Session

pytestmark = pytest.mark.django_db

ACCOUNT_LOCKED = "Account Locked"


def signed_in_browser(person) -> Browser:
    browser = Browser()
    assert_ok(sign_in(browser, person.authenticator))
    return browser


def test_locking_ends_every_session_and_is_audited(ada):
    laptop, phone = signed_in_browser(ada), signed_in_browser(ada)
    bob = enrolled_person("bob@example.com", "Bob Builder")
    bobs_browser = signed_in_browser(bob)

    assert do_lock_user(ada.user, Origin.cli(), "  laptop\tstolen  ") is True

    assert not laptop.is_signed_in()
    assert not phone.is_signed_in()
    assert not Session.objects.filter(user=ada.user).exists()
    assert bobs_browser.is_signed_in()  # nobody else's
    user = User.objects.get(pk=ada.user.pk)
    assert user.locked_at is not None
    assert user.locked_reason == "laptop stolen"
    assert user.is_locked
    assert not user.can_sign_in
    assert user.is_active
    event = last_event("user.locked")
    assert event.via == "cli"
    assert event.subject == ada.user
    assert event.actor is None
    # Ada's enrollment browser, the laptop and the phone.
    # The admin portal's convention added what changed, before and after.
    assert event.detail == {
        "lock_reason": "laptop stolen",
        "sessions_ended": 3,
        "links_revoked": 0,
        "before": {"locked": False},
        "after": {"locked": True, "reason": "laptop stolen"},
        **Origin.cli().operator(),  # who ran the command
    }
    assert Session.objects.filter(user=bob.user).exists()


def test_locking_twice_changes_nothing(ada):
    assert do_lock_user(ada.user, Origin.cli(), "first") is True
    assert do_lock_user(ada.user, Origin.cli(), "second") is False
    assert User.objects.get(pk=ada.user.pk).locked_reason == "first"
    assert AuditEvent.objects.filter(action="user.locked").count() == 1


@pytest.mark.parametrize("reason", ["x" * 201, "ticket\u202e123", "bell\x07"])
def test_a_lock_reason_is_one_short_plain_line(ada, reason):
    with pytest.raises(ValueError, match="reason"):
        do_lock_user(ada.user, Origin.cli(), reason)
    assert User.objects.get(pk=ada.user.pk).locked_at is None
    assert not AuditEvent.objects.filter(action="user.locked").exists()


def test_a_locked_person_cannot_sign_in_with_a_passkey(ada):
    do_lock_user(ada.user, Origin.cli(), "reported lost")
    for username in (None, "ada@example.com"):
        browser = Browser()
        body = assert_failed(sign_in(browser, ada.authenticator, username), 403, ACCOUNT_LOCKED)
        assert body["error"]["code"] == "account_locked"
        assert "reported lost" not in str(body)
        event = last_event("sign_in.failed")
        assert event.reason == "account_locked"
        # The signature verified: the person is named.
        assert event.subject == ada.user
        assert event.ip == CLIENT_IP
        assert not browser.is_signed_in()
    assert ada.passkey.last_used_at is None
    assert not AuditEvent.objects.filter(action="sign_in.succeeded").exists()


def test_a_locked_accounts_lock_shows_only_after_the_signature_verified(ada):
    do_lock_user(ada.user, Origin.cli())
    browser = Browser()
    options = begin_sign_in(browser)
    forged = ada.authenticator.get(options, ORIGIN, tamper_signature=True)
    body = assert_failed(browser.post_json("/sign-in/result", forged), 400, VERIFICATION_FAILED)
    assert body["error"]["code"] != "account_locked"
    event = last_event("sign_in.failed")
    assert event.reason == "signature_invalid"
    assert event.subject is None


def test_unlocking_restores_passkey_sign_in(ada):
    do_lock_user(ada.user, Origin.cli(), "on leave")
    assert_failed(sign_in(Browser(), ada.authenticator), 403, ACCOUNT_LOCKED)
    assert do_unlock_user(ada.user, Origin.cli()) is True
    assert do_unlock_user(ada.user, Origin.cli()) is False
    user = User.objects.get(pk=ada.user.pk)
    assert user.locked_at is None
    assert user.locked_reason == ""
    assert user.can_sign_in
    event = last_event("user.unlocked")
    assert event.subject == ada.user
    assert event.detail["lock_reason"] == "on leave"
    assert AuditEvent.objects.filter(action="user.unlocked").count() == 1

    browser = Browser()
    assert_ok(sign_in(browser, ada.authenticator))
    assert browser.is_signed_in()


def test_locking_revokes_unused_links_and_refuses_new_ones(ada):
    created = do_issue_recovery(ada.user, Origin.cli(), send_email=False)
    token = token_of(created.link)
    do_lock_user(ada.user, Origin.cli())
    assert EnrollmentInvite.objects.get(pk=created.invite.pk).revoked_at is not None
    assert last_event("user.locked").detail["links_revoked"] == 1
    page = Browser().get(f"/enroll/{token}")
    assert page.status_code == 404
    assert INVITE_UNUSABLE in page.content.decode()

    with pytest.raises(errors.AccountLocked):
        do_invite("ada@example.com", Origin.cli(), send_email=False)
    with pytest.raises(errors.AccountLocked):
        do_issue_recovery(ada.user, Origin.cli(), send_email=False)
    assert EnrollmentInvite.objects.filter(user=ada.user).count() == 2  # the used and the revoked

    # After unlocking, the revoked link stays revoked; a new one works.
    do_unlock_user(ada.user, Origin.cli())
    assert Browser().get(f"/enroll/{token}").status_code == 404
    new_token = token_of(do_issue_recovery(ada.user, Origin.cli(), send_email=False).link)
    assert_ok(enroll(Browser(), new_token, SoftAuthenticator()))


def test_a_session_of_a_locked_person_ends_at_their_next_request(ada):
    browser = signed_in_browser(ada)
    # A lock that did not delete the session (a sign-in that finished meanwhile, or
    # a lock set in the database) still ends it.
    User.objects.filter(pk=ada.user.pk).update(locked_at=ada.user.created_at)
    assert not browser.is_signed_in()
    event = last_event("session.expired")
    assert event.reason == "account_locked"
    assert event.subject == ada.user
    assert not browser.is_signed_in()
    assert AuditEvent.objects.filter(action="session.expired").count() == 1


def test_the_lock_check_reads_the_user_row_the_request_loads_anyway(ada):
    browser = signed_in_browser(ada)
    with CaptureQueriesContext(connection) as queries:
        assert browser.get("/").status_code == 200
    user_reads = [q["sql"] for q in queries.captured_queries if '"accounts_user"' in q["sql"]]
    assert len(user_reads) == 1, user_reads


def test_a_locked_person_cannot_step_up(ada):
    browser = Ceremonies(session_key="s" * 32)
    options = do_begin_step_up(browser, ada.user)
    do_lock_user(ada.user, Origin.cli())
    assertion = ada.authenticator.get(options, ORIGIN)
    with pytest.raises(errors.ThresholdError) as refused:
        do_finish_sign_in(browser.returned(), assertion, Origin(), step_up_user=ada.user)
    assert isinstance(refused.value, errors.AccountLocked)
    event = last_event("step_up.failed")
    assert event.reason == "account_locked"
    assert event.subject == ada.user
    assert not AuditEvent.objects.filter(action="step_up.succeeded").exists()


def test_step_up_in_a_locked_persons_browser_is_refused(ada):
    browser = signed_in_browser(ada)
    response = browser.post_json("/settings/verify/options")
    assert_ok(response)
    options = response.json()["publicKey"]
    do_lock_user(ada.user, Origin.cli())
    result = browser.post_json("/settings/verify/result", ada.authenticator.get(options, ORIGIN))
    # The lock ended the session: the request is no longer signed in at all.
    assert_failed(result, 401, "Session Expired")
    assert not AuditEvent.objects.filter(action="step_up.succeeded").exists()
    assert not browser.is_signed_in()
