"""Recovery links: an administrator's one-time, short-lived link to create a new passkey.

The same page and endpoints as an enrollment link (``/enroll/<token>``), with
recovery's stricter rules: user verification always, a lifetime in minutes,
every other session ended on use, and the person told by email.
"""

from __future__ import annotations

import re
import secrets

import pyotp
import pytest
from django.core import mail

from tests.integration.conftest import (
    INVITE_UNUSABLE,
    NOT_VERIFIED,
    ORIGIN,
    SESSION_EXPIRED,
    Browser,
    Person,
    assert_failed,
    assert_ok,
    audit_trail,
    enroll,
    invite,
    last_event,
    sign_in,
    token_of,
    without_csrf,
)
from tests.support.authenticator import SoftAuthenticator
from threshold.accounts.actions import do_lock_user
from threshold.accounts.models import User
from threshold.audit.actions import Origin
from threshold.audit.models import AuditEvent
from threshold.core import errors
from threshold.core.encoding import b64url_encode
from threshold.core.policy import Policy
from threshold.enrollment.actions import do_issue_recovery
from threshold.enrollment.models import EnrollmentInvite
from threshold.fallback.actions import do_set_up_fallback
from threshold.fallback.models import RecoveryCode, TotpDevice
from threshold.passkeys.models import Passkey
from threshold.policy.actions import do_update_policy
from threshold.sessions.models import Session

pytestmark = pytest.mark.django_db

SYNCED_NOT_ALLOWED = "Synced Passkeys Not Allowed"
CHROME_ON_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)


def recover(user: User, **kwargs) -> tuple[EnrollmentInvite, str]:
    """A recovery link issued on the command line, without email: (invite, token)."""
    kwargs.setdefault("send_email", False)
    issued = do_issue_recovery(user, Origin.cli(), **kwargs)
    assert issued.user == user
    assert issued.user_created is False
    return issued.invite, token_of(issued.link)


def signed_in(person: Person) -> Browser:
    browser = Browser()
    assert_ok(sign_in(browser, person.authenticator))
    return browser


def test_recovery_link_adds_a_passkey_signs_in_and_ends_every_other_session(
    ada, clock, django_capture_on_commit_callbacks
):
    laptop, intruder = signed_in(ada), signed_in(ada)
    with django_capture_on_commit_callbacks(execute=True):
        recovery, token = recover(ada.user, send_email=True)
    assert recovery.purpose == "recovery"
    assert recovery.expires_at.timestamp() == pytest.approx(clock.now + 3600, abs=1e-3)
    [notice] = mail.outbox
    assert notice.to == ["ada@example.com"]
    assert notice.subject == "Account recovery for Threshold"
    assert "Hello Ada Lovelace" in notice.body
    assert "issued a one-time link to recover your Threshold account" in notice.body
    assert "It is not in this email" in notice.body
    assert token not in notice.body
    assert "contact your IT team" in notice.body

    phone = Browser(HTTP_USER_AGENT=CHROME_ON_WINDOWS)
    page = phone.get(f"/enroll/{token}")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Recover your account" in html
    assert "Create a new passkey" in html
    assert "Welcome, Ada Lovelace" not in html
    assert page["Referrer-Policy"] == "no-referrer"

    options = assert_ok(phone.post_json(f"/enroll/{token}/options"))["publicKey"]
    assert options["authenticatorSelection"]["userVerification"] == "required"
    # Existing passkeys are kept, and the new one must be another authenticator.
    assert [c["id"] for c in options["excludeCredentials"]] == [
        b64url_encode(ada.authenticator.credentials[0].credential_id)
    ]
    new_authenticator = SoftAuthenticator()
    credential = new_authenticator.create(options, ORIGIN)
    with django_capture_on_commit_callbacks(execute=True):
        body = assert_ok(phone.post_json(f"/enroll/{token}/result", credential))
    assert body["redirect"] == "/?enrolled=1"

    assert phone.is_signed_in()
    assert not laptop.is_signed_in()
    assert not intruder.is_signed_in()
    assert list(Session.objects.filter(user=ada.user).values_list("session_key", flat=True)) == [
        phone.session_key
    ]
    assert Passkey.objects.filter(user=ada.user).count() == 2
    assert EnrollmentInvite.objects.get(pk=recovery.pk).used_at is not None

    trail = audit_trail()
    assert trail[-2:] == [("recovery.used", ""), ("passkey.registered", "")]
    issued, used = last_event("recovery.issued"), last_event("recovery.used")
    assert issued.via == "cli"
    assert issued.subject == ada.user
    assert issued.detail["invite_id"] == recovery.pk
    assert issued.detail["link_emailed"] is False
    assert used.via == "web"
    assert used.actor == ada.user
    assert used.subject == ada.user
    # The laptop, the intruder, and the browser Ada first enrolled in.
    assert used.detail == {"invite_id": recovery.pk, "sessions_ended": 3, "fallback_removed": False}
    registered = last_event("passkey.registered")
    assert registered.detail["purpose"] == "recovery"
    assert issued.pk < used.pk < registered.pk
    assert not AuditEvent.objects.filter(action="invite.used", pk__gt=issued.pk).exists()

    # One email about the use, not also the generic "a passkey was added".
    [_, recovered] = mail.outbox
    assert recovered.to == ["ada@example.com"]
    assert recovered.subject == "Your Threshold account was recovered with a new passkey"
    assert "was recovered with a one-time recovery link" in recovered.body
    assert "From: Chrome on Windows, IP address 203.0.113.7" in recovered.body
    assert "Everywhere else you were signed in has been signed out" in recovered.body
    assert "http://localhost:8000/settings#security-methods" in recovered.body
    assert "If it wasn't you, contact your IT team right away" in recovered.body

    # Both passkeys sign in: the old ones are kept until the person removes them.
    assert_ok(sign_in(Browser(), new_authenticator))
    assert_ok(sign_in(Browser(), ada.authenticator))


def test_a_recovery_counts_as_verifying_it_is_you(ada, browser):
    """A recovery always verifies the person (UV): removing the lost passkeys, just after,
    asks no second "Verify it's you"."""
    _, token = recover(ada.user)
    assert_ok(enroll(browser, token, SoftAuthenticator()))
    lost = Passkey.objects.filter(user=ada.user).order_by("id").first()
    assert browser.get(f"/settings/security-methods/{lost.pk}/remove").status_code == 200


def test_recovery_requires_user_verification_even_when_the_policy_only_prefers_it(ada, browser):
    do_update_policy(Policy(user_verification="preferred"), Origin.cli())
    recovery, token = recover(ada.user)
    options = assert_ok(browser.post_json(f"/enroll/{token}/options"))["publicKey"]
    assert options["authenticatorSelection"]["userVerification"] == "required"
    credential = SoftAuthenticator().create(options, ORIGIN, flags=0x01)  # presence only
    assert_failed(browser.post_json(f"/enroll/{token}/result", credential), 400, NOT_VERIFIED)
    assert last_event("passkey.registration_failed").reason == "user_not_verified"
    assert Passkey.objects.filter(user=ada.user).count() == 1
    assert EnrollmentInvite.objects.get(pk=recovery.pk).used_at is None
    assert not browser.is_signed_in()
    assert not AuditEvent.objects.filter(action="recovery.used").exists()

    # An enrollment link keeps following the policy.
    _, enrollment_token = invite("bob@example.com", "Bob Builder")
    options = assert_ok(Browser().post_json(f"/enroll/{enrollment_token}/options"))["publicKey"]
    assert options["authenticatorSelection"]["userVerification"] == "preferred"


def test_recovery_follows_the_registration_policy(ada, browser):
    do_update_policy(Policy(block_synced_passkeys=True), Origin.cli())
    recovery, token = recover(ada.user)
    synced = SoftAuthenticator(backup_eligible=True, backup_state=True)
    assert_failed(enroll(browser, token, synced), 400, SYNCED_NOT_ALLOWED)
    assert last_event("passkey.registration_failed").reason == "synced_passkey_blocked"
    assert Passkey.objects.filter(user=ada.user).count() == 1
    assert EnrollmentInvite.objects.get(pk=recovery.pk).used_at is None
    # The refusal ended nobody's session and used up nothing: a device-bound passkey works.
    assert_ok(enroll(browser, token, SoftAuthenticator()))


def test_a_failed_recovery_ends_no_session(ada, browser):
    laptop = signed_in(ada)
    _, token = recover(ada.user)
    options = assert_ok(browser.post_json(f"/enroll/{token}/options"))["publicKey"]
    credential = SoftAuthenticator().create(options, "https://evil.example")
    assert_failed(
        browser.post_json(f"/enroll/{token}/result", credential),
        400,
        "Failed to register the device for passkey",
    )
    assert laptop.is_signed_in()
    assert not AuditEvent.objects.filter(action="recovery.used").exists()


def test_recovery_link_expires_after_the_policys_lifetime(ada, browser, clock):
    do_update_policy(Policy(recovery_link_lifetime_minutes=15), Origin.cli())
    recovery, token = recover(ada.user)
    assert recovery.expires_at.timestamp() == pytest.approx(clock.now + 900, abs=1e-3)
    clock.advance(15 * 60 - 30)
    assert browser.get(f"/enroll/{token}").status_code == 200
    clock.advance(60)
    page = browser.get(f"/enroll/{token}")
    assert page.status_code == 404
    assert INVITE_UNUSABLE in page.content.decode()
    assert_failed(browser.post_json(f"/enroll/{token}/options"), 400, INVITE_UNUSABLE)
    rejected = last_event("invite.rejected")
    assert rejected.detail == {"why": "expired", "purpose": "recovery"}
    assert rejected.subject == ada.user
    assert Passkey.objects.filter(user=ada.user).count() == 1


def test_recovery_link_that_expires_during_the_ceremony_stores_nothing(ada, browser, clock):
    laptop = signed_in(ada)
    _, token = recover(ada.user)
    clock.advance(60 * 60 - 30)
    options = assert_ok(browser.post_json(f"/enroll/{token}/options"))["publicKey"]
    clock.advance(40)
    credential = SoftAuthenticator().create(options, ORIGIN)
    assert_failed(browser.post_json(f"/enroll/{token}/result", credential), 400, INVITE_UNUSABLE)
    assert last_event("passkey.registration_failed").reason == "invite_unusable"
    assert Passkey.objects.filter(user=ada.user).count() == 1
    assert not browser.is_signed_in()
    assert Session.objects.filter(session_key=laptop.session_key).exists()


def test_recovery_link_works_once(ada, browser):
    _recovery, token = recover(ada.user)
    assert_ok(enroll(browser, token, SoftAuthenticator()))
    again = Browser()
    page = again.get(f"/enroll/{token}")
    assert page.status_code == 404
    assert INVITE_UNUSABLE in page.content.decode()
    assert_failed(again.post_json(f"/enroll/{token}/options"), 400, INVITE_UNUSABLE)
    assert last_event("invite.rejected").detail == {"why": "used", "purpose": "recovery"}
    assert Passkey.objects.filter(user=ada.user).count() == 2


def test_garbled_recovery_links_get_the_enrollment_links_page(ada, clock):
    _, token = recover(ada.user)
    _, used_enrollment_token = invite("bob@example.com", "Bob Builder")
    assert_ok(enroll(Browser(), used_enrollment_token, SoftAuthenticator()))
    tokens = {
        "too short": token[:20],
        "too long": token + "A",
        "bad characters": token[:-1] + "*",
        "one character changed": token[:-1] + ("A" if token[-1] != "A" else "B"),
        "random but well-formed": secrets.token_urlsafe(32),
        "empty-ish": "-",
    }
    pages, answers = set(), set()
    for name, garbled in tokens.items():
        visitor = Browser()
        page = visitor.get(f"/enroll/{garbled}")
        assert page.status_code == 404, name
        assert INVITE_UNUSABLE in page.content.decode(), name
        pages.add(without_csrf(page.content))
        answer = visitor.post_json(f"/enroll/{garbled}/options")
        assert_failed(answer, 400, INVITE_UNUSABLE)
        answers.add(answer.content)
        result = visitor.post_json(f"/enroll/{garbled}/result", {})
        assert_failed(result, 400, SESSION_EXPIRED)  # no ceremony was begun
    # An expired recovery link reads exactly like a garbled one, and like a used enrollment link.
    clock.advance(3601)
    visitor = Browser()
    pages.add(without_csrf(visitor.get(f"/enroll/{token}").content))
    answers.add(visitor.post_json(f"/enroll/{token}/options").content)
    visitor = Browser()
    pages.add(without_csrf(visitor.get(f"/enroll/{used_enrollment_token}").content))
    assert len(pages) == 1
    assert len(answers) == 1
    whys = [e.detail["why"] for e in AuditEvent.objects.filter(action="invite.rejected")]
    assert set(whys) == {"unknown", "expired", "used"}
    assert Passkey.objects.filter(user=ada.user).count() == 1
    assert not AuditEvent.objects.filter(action="recovery.used").exists()


def test_a_newer_recovery_link_revokes_the_earlier_one(ada, browser):
    first, first_token = recover(ada.user)
    _second, second_token = recover(ada.user)
    assert EnrollmentInvite.objects.get(pk=first.pk).revoked_at is not None
    assert browser.get(f"/enroll/{first_token}").status_code == 404
    assert last_event("invite.rejected").detail == {"why": "revoked", "purpose": "recovery"}
    assert_ok(enroll(browser, second_token, SoftAuthenticator()))


def test_recovery_and_enrollment_links_revoke_each_other(db):
    # Someone invited who has not enrolled yet, and was sent a recovery link too.
    created, _ = invite("bob@example.com", "Bob Builder")
    _, recovery_token = recover(created.user)
    _, enrollment_token = invite("bob@example.com", "Bob Builder")
    assert Browser().get(f"/enroll/{recovery_token}").status_code == 404
    _, recovery_token = recover(created.user)
    assert Browser().get(f"/enroll/{enrollment_token}").status_code == 404
    assert Browser().get(f"/enroll/{recovery_token}").status_code == 200


def test_a_recovery_ceremony_cannot_finish_on_another_link(ada, browser):
    _, recovery_token = recover(ada.user)
    _, bob_token = invite("bob@example.com", "Bob Builder")
    options = assert_ok(browser.post_json(f"/enroll/{recovery_token}/options"))["publicKey"]
    credential = SoftAuthenticator().create(options, ORIGIN)
    response = browser.post_json(f"/enroll/{bob_token}/result", credential)
    assert response.status_code == 400
    assert not Passkey.objects.filter(user__username="bob@example.com").exists()
    assert Passkey.objects.filter(user=ada.user).count() == 1
    assert (
        not EnrollmentInvite.objects.filter(used_at__isnull=False)
        .exclude(pk=ada.invite.pk)
        .exists()
    )
    assert not browser.is_signed_in()


def test_no_second_enrollment_link_for_someone_who_can_sign_in(ada):
    """It would be a weaker recovery: a week long, emailed, ending no session."""
    with pytest.raises(errors.AlreadyEnrolled):
        invite("ada@example.com", "Ada Lovelace")
    assert not EnrollmentInvite.objects.filter(user=ada.user, used_at=None).exists()


def test_no_recovery_link_for_a_locked_or_deactivated_account(ada, db):
    do_lock_user(ada.user, Origin.cli(), "laptop stolen")
    with pytest.raises(errors.AccountLocked):
        recover(ada.user)
    bob = User.objects.create_user("bob@example.com", email="bob@example.com")
    User.objects.filter(pk=bob.pk).update(is_active=False)
    with pytest.raises(errors.AccountDisabled):
        recover(bob)
    assert not EnrollmentInvite.objects.filter(purpose="recovery").exists()
    assert not AuditEvent.objects.filter(action="recovery.issued").exists()


def test_locking_revokes_a_recovery_link(ada, browser):
    recovery, token = recover(ada.user)
    do_lock_user(ada.user, Origin.cli())
    assert EnrollmentInvite.objects.get(pk=recovery.pk).revoked_at is not None
    assert browser.get(f"/enroll/{token}").status_code == 404
    assert last_event("invite.rejected").detail == {"why": "revoked", "purpose": "recovery"}


def test_a_recovery_link_stops_working_once_the_account_is_locked(ada, browser):
    _, token = recover(ada.user)
    # A lock that did not go through do_lock_user (say, set in the database) still counts.
    User.objects.filter(pk=ada.user.pk).update(locked_at=ada.user.created_at)
    page = browser.get(f"/enroll/{token}")
    assert page.status_code == 404
    assert INVITE_UNUSABLE in page.content.decode()
    assert last_event("invite.rejected").detail == {"why": "account_locked", "purpose": "recovery"}


def test_locking_during_a_recovery_ceremony_refuses_it(ada, browser):
    _, token = recover(ada.user)
    options = assert_ok(browser.post_json(f"/enroll/{token}/options"))["publicKey"]
    do_lock_user(ada.user, Origin.cli(), "reported stolen")
    credential = SoftAuthenticator().create(options, ORIGIN)
    assert_failed(browser.post_json(f"/enroll/{token}/result", credential), 400, INVITE_UNUSABLE)
    assert Passkey.objects.filter(user=ada.user).count() == 1
    assert not browser.is_signed_in()


def test_the_lock_holds_even_if_the_link_was_not_revoked(ada, browser):
    recovery, token = recover(ada.user)
    options = assert_ok(browser.post_json(f"/enroll/{token}/options"))["publicKey"]
    User.objects.filter(pk=ada.user.pk).update(locked_at=ada.user.created_at)
    credential = SoftAuthenticator().create(options, ORIGIN)
    assert_failed(browser.post_json(f"/enroll/{token}/result", credential), 400, INVITE_UNUSABLE)
    failure = last_event("passkey.registration_failed")
    assert failure.reason == "invite_unusable"
    assert "locked" in failure.detail["detail"]
    assert EnrollmentInvite.objects.get(pk=recovery.pk).used_at is None
    assert Passkey.objects.filter(user=ada.user).count() == 1


def test_the_link_itself_is_emailed_only_when_asked(ada, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        issued = do_issue_recovery(ada.user, Origin.cli(), email_link=True)
    [message] = mail.outbox
    assert message.subject == "Recover your Threshold account"
    assert issued.link in message.body
    assert "Create a new passkey" in message.body
    assert last_event("recovery.issued").detail["link_emailed"] is True


def test_no_email_for_a_person_without_an_address(db, django_capture_on_commit_callbacks):
    user = User.objects.create_user("noemail")
    with django_capture_on_commit_callbacks(execute=True):
        do_issue_recovery(user, Origin.cli(), email_link=True)
    assert mail.outbox == []
    assert last_event("recovery.issued").detail["link_emailed"] is False


def test_a_recovery_may_add_one_passkey_beyond_the_limit(ada, browser):
    do_update_policy(Policy(passkey_limit=1), Origin.cli())
    _, token = recover(ada.user)
    assert_ok(enroll(browser, token, SoftAuthenticator()))
    assert Passkey.objects.filter(user=ada.user).count() == 2


# --- What the recovery page says before the person starts ---------------------------------------


def test_the_recovery_page_says_it_deletes_the_password_app_and_recovery_codes(ada, browser):
    do_update_policy(Policy(allow_password_fallback=True), Origin.cli())
    do_set_up_fallback(
        ada.user, "correct horse battery staple", pyotp.random_base32(), 0, Origin.cli()
    )
    _, token = recover(ada.user)
    html = browser.get(f"/enroll/{token}").content.decode()
    said = re.search(r'<li id="recovery-removes">(.*?)</li>', html, re.S)
    assert said, html
    assert said.group(1) == (
        "Creating it also deletes your password, authenticator app and recovery codes: you can "
        "set up a password and authenticator app again under Settings, Security Methods."
    )
    # And it does.
    assert_ok(enroll(browser, token, SoftAuthenticator()))
    ada.user.refresh_from_db()
    assert not ada.user.has_usable_password()
    assert not TotpDevice.objects.filter(user=ada.user).exists()
    assert not RecoveryCode.objects.filter(user=ada.user).exists()


def test_the_recovery_page_names_only_what_the_person_has(ada, browser):
    _, token = recover(ada.user)
    html = browser.get(f"/enroll/{token}").content.decode()
    assert "recovery-removes" not in html
    assert "Creating it signs you out everywhere else you are signed in." in html

    ada.user.set_password("correct horse battery staple")
    ada.user.save()
    do_update_policy(Policy(allow_password_fallback=False), Origin.cli())
    _, token = recover(ada.user)
    html = browser.get(f"/enroll/{token}").content.decode()
    assert re.search(
        r'<li id="recovery-removes">Creating it also deletes your password\.</li>', html
    )


# --- What the email says afterwards --------------------------------------------------------------


def test_the_recovered_email_names_a_password_it_removed(
    ada, browser, django_capture_on_commit_callbacks
):
    """A password without an app (set by an administrator, or an app removed): the recovery
    removes it, and the email says so, as it says the password, app and codes together."""
    ada.user.set_password("correct horse battery staple")
    ada.user.save()
    _, token = recover(ada.user)
    with django_capture_on_commit_callbacks(execute=True):
        assert_ok(enroll(browser, token, SoftAuthenticator()))
    ada.user.refresh_from_db()
    assert not ada.user.has_usable_password()
    body = mail.outbox[-1].body
    assert "Your password was removed too: set it up again\nunder Settings" in body, body
    assert "authenticator app" not in body
    used = AuditEvent.objects.filter(action="recovery.used").latest("pk")
    assert used.detail["fallback_removed"] is True


def test_the_recovered_email_says_nothing_was_removed_when_nothing_was(
    ada, browser, django_capture_on_commit_callbacks
):
    _, token = recover(ada.user)
    with django_capture_on_commit_callbacks(execute=True):
        assert_ok(enroll(browser, token, SoftAuthenticator()))
    assert "removed too" not in mail.outbox[-1].body
