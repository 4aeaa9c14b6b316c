"""Invite link → "Create a passkey" → signed in; and every way a link stops working."""

from __future__ import annotations

import os
import secrets
import uuid

import pytest
from fido2 import cbor
from fido2.cose import CoseKey

from tests.integration.conftest import (
    ALREADY_REGISTERED,
    CLIENT_IP,
    INVITE_UNUSABLE,
    NOT_VERIFIED,
    ORIGIN,
    REGISTRATION_FAILED,
    SESSION_EXPIRED,
    USER_AGENT,
    Browser,
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
from tests.support.authenticator import TEST_AAGUID, SoftAuthenticator, sign
from threshold.accounts.models import User
from threshold.audit.actions import Origin
from threshold.audit.models import AuditEvent
from threshold.core.encoding import b64url_decode, b64url_encode
from threshold.core.policy import Policy
from threshold.enrollment.actions import do_issue_recovery
from threshold.enrollment.models import EnrollmentInvite
from threshold.passkeys.models import Passkey
from threshold.policy.actions import do_update_policy

pytestmark = pytest.mark.django_db


def test_invite_link_enrolls_a_passkey_and_signs_the_person_in(browser, clock):
    created, token = invite("Ada@Example.com", "Ada Lovelace")
    user = created.user
    assert user.username == "ada@example.com"

    page = browser.get(f"/enroll/{token}")
    assert page.status_code == 200
    assert "Welcome, Ada Lovelace" in page.content.decode()
    assert "Create a passkey" in page.content.decode()
    assert page["Referrer-Policy"] == "no-referrer"

    options = assert_ok(browser.post_json(f"/enroll/{token}/options"))["publicKey"]
    assert options["rp"] == {"id": "localhost", "name": "Threshold"}
    assert options["user"] == {
        "id": b64url_encode(bytes(user.user_handle)),
        "name": "ada@example.com",
        "displayName": "Ada Lovelace",
    }
    assert len(b64url_decode(options["challenge"])) >= 16
    assert options["excludeCredentials"] == []
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert options["timeout"] == 300_000
    # The user handle is opaque: never the email address.
    assert b"ada" not in bytes(user.user_handle)

    authenticator = SoftAuthenticator()
    credential = authenticator.create(options, ORIGIN)
    session_before = browser.session_key
    body = assert_ok(browser.post_json(f"/enroll/{token}/result", credential))
    assert body["redirect"] == "/?enrolled=1"
    assert browser.session_key != session_before

    passkey = Passkey.objects.get()
    held = authenticator.credentials[0]
    assert passkey.user == user
    assert bytes(passkey.credential_id) == held.credential_id
    assert passkey.aaguid == uuid.UUID(bytes=TEST_AAGUID)
    assert passkey.alg == -7
    assert passkey.sign_count == 0
    assert passkey.transports == ["internal", "hybrid"]
    assert passkey.backup_eligible is False
    assert passkey.backup_state is False
    assert passkey.uv_initialized is True
    assert passkey.attestation_format == "none"
    assert passkey.attestation_type == "none"
    assert passkey.authenticator_attachment == "platform"
    assert passkey.is_discoverable is True
    assert passkey.is_possibly_cloned is False
    assert passkey.last_used_at is None
    assert passkey.created_at.timestamp() == pytest.approx(clock.now, abs=1e-3)
    # The stored COSE key is the authenticator's public key: it verifies its signatures.
    public_key = CoseKey.parse(cbor.decode(bytes(passkey.public_key)))
    public_key.verify(b"message", sign(-7, held.private_key, b"message"))

    used = EnrollmentInvite.objects.get(pk=created.invite.pk)
    assert used.used_at is not None
    assert used.revoked_at is None
    assert not browser.ceremonies, "the ceremony was used up"

    home = browser.get("/?enrolled=1")
    assert home.status_code == 200
    assert "Welcome, Ada Lovelace" in home.content.decode()
    assert "Your passkey is ready" in home.content.decode()

    assert audit_trail() == [
        ("user.created", ""),
        ("invite.created", ""),
        ("invite.used", ""),
        ("passkey.registered", ""),
    ]
    registered = last_event("passkey.registered")
    assert registered.actor == user
    assert registered.subject == user
    assert registered.subject_label == "ada@example.com"
    assert registered.ip == CLIENT_IP
    assert registered.user_agent == USER_AGENT
    assert registered.via == "web"
    assert registered.detail["passkey_id"] == passkey.pk
    assert registered.detail["purpose"] == "enrollment"
    assert last_event("invite.created").via == "cli"
    assert last_event("invite.used").detail["invite_id"] == created.invite.pk


@pytest.mark.parametrize(
    ("authenticator", "create", "expected"),
    [
        pytest.param(
            {"backup_eligible": True, "backup_state": True, "aaguid": bytes(range(16))},
            {
                "alg": -8,
                "attestation": "packed-self",
                "transports": ("usb", "nfc", "carrier-pigeon"),
            },
            {
                "alg": -8,
                "backup_eligible": True,
                "backup_state": True,
                "attestation_format": "packed",
                "attestation_type": "self",
                "transports": ["usb", "nfc"],
                "aaguid": uuid.UUID(bytes=bytes(range(16))),
            },
            id="synced-eddsa-packed-self",
        ),
        pytest.param(
            {"backup_eligible": True},
            {"alg": -257, "transports": ()},
            {
                "alg": -257,
                "backup_eligible": True,
                "backup_state": False,
                "attestation_format": "none",
                "transports": [],
            },
            id="rs256-no-transports",
        ),
    ],
)
def test_enrollment_stores_what_the_authenticator_reported(
    browser, authenticator, create, expected
):
    created, token = invite()
    soft = SoftAuthenticator(**authenticator)
    assert_ok(enroll(browser, token, soft, **create))
    passkey = Passkey.objects.get(user=created.user)
    for name, value in expected.items():
        assert getattr(passkey, name) == value, name
    assert bytes(passkey.credential_id) == soft.credentials[0].credential_id


def test_enrollment_without_cred_props_stores_discoverability_unknown(browser):
    created, token = invite()
    options = assert_ok(browser.post_json(f"/enroll/{token}/options"))["publicKey"]
    credential = SoftAuthenticator().create(options, ORIGIN)
    credential["clientExtensionResults"] = {}
    assert_ok(browser.post_json(f"/enroll/{token}/result", credential))
    assert Passkey.objects.get(user=created.user).is_discoverable is None


def test_invite_link_works_once(browser):
    _created, token = invite()
    authenticator = SoftAuthenticator()
    options = assert_ok(browser.post_json(f"/enroll/{token}/options"))["publicKey"]
    credential = authenticator.create(options, ORIGIN)
    assert_ok(browser.post_json(f"/enroll/{token}/result", credential))

    again = Browser()
    page = again.get(f"/enroll/{token}")
    assert page.status_code == 404
    assert INVITE_UNUSABLE in page.content.decode()
    assert "Ada" not in page.content.decode()
    rejected = last_event("invite.rejected")
    assert rejected.reason == "invite_unusable"
    assert rejected.detail["why"] == "used"

    body = assert_failed(again.post_json(f"/enroll/{token}/options"), 400, INVITE_UNUSABLE)
    assert body["error"]["code"] == "invite_unusable"
    assert not again.ceremonies

    # Replaying the finished ceremony's answer stores nothing more.
    assert_failed(browser.post_json(f"/enroll/{token}/result", credential), 400, SESSION_EXPIRED)
    assert last_event("passkey.registration_failed").reason == "challenge_missing"
    assert Passkey.objects.count() == 1


def test_used_expired_revoked_and_garbled_links_get_the_same_page(clock):
    _used, used_token = invite("used@example.com", "Used Person")
    assert_ok(enroll(Browser(), used_token, SoftAuthenticator()))
    _revoked, revoked_token = invite("revoked@example.com", "Revoked Person")
    invite("revoked@example.com", "Revoked Person")
    _expired, expired_token = invite("expired@example.com", "Expired Person")
    clock.advance(8 * 86400)
    tokens = {
        "used": used_token,
        "revoked": revoked_token,
        "expired": expired_token,
        "bad characters": "*" * 43,
        "too short": expired_token[:20],
        "too long": expired_token + "A",
        "random but well-formed": secrets.token_urlsafe(32),
    }

    pages = {}
    answers = {}
    for name, token in tokens.items():
        visitor = Browser()
        page = visitor.get(f"/enroll/{token}")
        assert page.status_code == 404, name
        assert INVITE_UNUSABLE in page.content.decode(), name
        assert "Referrer-Policy" in page
        pages[name] = without_csrf(page.content)
        answer = visitor.post_json(f"/enroll/{token}/options")
        assert_failed(answer, 400, INVITE_UNUSABLE)
        answers[name] = answer.content
    assert len(set(pages.values())) == 1, "the pages differ"
    assert len(set(answers.values())) == 1, "the JSON answers differ"
    for person in ("Used", "Revoked", "Expired"):
        assert person not in pages["used"]

    # The audit log keeps what the visitor is not told.
    whys = [
        event.detail["why"]
        for event in AuditEvent.objects.filter(action="invite.rejected").order_by("id")
    ]
    assert whys[::2] == ["used", "revoked", "expired", "unknown", "unknown", "unknown", "unknown"]
    assert Passkey.objects.count() == 1


def test_invite_link_expires_after_the_invite_lifetime(browser, clock):
    _created, token = invite()
    clock.advance(7 * 86400 - 60)
    assert browser.get(f"/enroll/{token}").status_code == 200
    clock.advance(120)
    assert browser.get(f"/enroll/{token}").status_code == 404
    assert last_event("invite.rejected").detail["why"] == "expired"


def test_expired_link_cannot_finish_a_ceremony_begun_before_it_expired(browser, clock):
    _created, token = invite()
    clock.advance(7 * 86400 - 30)
    options = assert_ok(browser.post_json(f"/enroll/{token}/options"))["publicKey"]
    clock.advance(40)  # the challenge is still valid (60 s), the link is not
    credential = SoftAuthenticator().create(options, ORIGIN)
    assert_failed(browser.post_json(f"/enroll/{token}/result", credential), 400, INVITE_UNUSABLE)
    assert not Passkey.objects.exists()
    assert EnrollmentInvite.objects.get().used_at is None


def test_reinvite_revokes_the_earlier_link(browser):
    first, first_token = invite()
    second, second_token = invite()
    assert second.user == first.user
    assert second.user_created is False
    assert User.objects.count() == 1
    assert EnrollmentInvite.objects.get(pk=first.invite.pk).revoked_at is not None

    assert browser.get(f"/enroll/{first_token}").status_code == 404
    assert last_event("invite.rejected").detail["why"] == "revoked"
    assert browser.get(f"/enroll/{second_token}").status_code == 200
    assert_ok(enroll(browser, second_token, SoftAuthenticator()))


def test_reinvite_during_a_ceremony_refuses_the_old_link(browser):
    _created, token = invite()
    options = assert_ok(browser.post_json(f"/enroll/{token}/options"))["publicKey"]
    invite()  # an administrator sends a new link meanwhile
    credential = SoftAuthenticator().create(options, ORIGIN)
    assert_failed(browser.post_json(f"/enroll/{token}/result", credential), 400, INVITE_UNUSABLE)
    assert last_event("passkey.registration_failed").reason == "invite_unusable"
    assert not Passkey.objects.exists()
    assert not EnrollmentInvite.objects.filter(used_at__isnull=False).exists()
    assert not browser.is_signed_in()


def test_result_for_another_link_uses_neither(browser):
    _, ada_token = invite("ada@example.com", "Ada Lovelace")
    _, bob_token = invite("bob@example.com", "Bob Builder")
    options = assert_ok(browser.post_json(f"/enroll/{ada_token}/options"))["publicKey"]
    credential = SoftAuthenticator().create(options, ORIGIN)
    assert_failed(
        browser.post_json(f"/enroll/{bob_token}/result", credential), 400, INVITE_UNUSABLE
    )
    assert not Passkey.objects.exists()
    assert not EnrollmentInvite.objects.filter(used_at__isnull=False).exists()


@pytest.mark.parametrize(
    ("create", "advance", "title", "reason"),
    [
        ({}, 301, SESSION_EXPIRED, "challenge_expired"),
        ({"rp_id": "evil.example"}, 0, REGISTRATION_FAILED, "rp_id_hash_mismatch"),
        ({"flags": 0x01}, 0, NOT_VERIFIED, "user_not_verified"),
        (
            {"client_extra": {"crossOrigin": True}},
            0,
            REGISTRATION_FAILED,
            "cross_origin_not_allowed",
        ),
        ({"origin": "https://evil.example"}, 0, REGISTRATION_FAILED, "origin_not_allowed"),
        ({"origin": "http://localhost:8001"}, 0, REGISTRATION_FAILED, "origin_not_allowed"),
        ({"credential_id": os.urandom(1024)}, 0, REGISTRATION_FAILED, "credential_id_too_long"),
    ],
)
def test_failed_registration_stores_nothing_and_leaves_the_invite_usable(
    browser, clock, create, advance, title, reason
):
    created, token = invite()
    options = assert_ok(browser.post_json(f"/enroll/{token}/options"))["publicKey"]
    clock.advance(advance)
    origin = create.pop("origin", ORIGIN)
    credential = SoftAuthenticator().create(options, origin, **create)
    assert_failed(browser.post_json(f"/enroll/{token}/result", credential), 400, title)
    assert not Passkey.objects.exists()
    assert EnrollmentInvite.objects.get().used_at is None
    failure = last_event("passkey.registration_failed")
    assert failure.reason == reason
    assert failure.subject == created.user
    assert ("invite.used", "") not in audit_trail()
    assert not browser.is_signed_in()

    # The link still works for a real attempt.
    assert browser.get(f"/enroll/{token}").status_code == 200
    assert_ok(enroll(browser, token, SoftAuthenticator()))


def test_a_credential_registered_to_someone_else_is_refused(browser):
    shared_id = os.urandom(16)
    _, ada_token = invite("ada@example.com", "Ada Lovelace")
    assert_ok(enroll(Browser(), ada_token, SoftAuthenticator(), credential_id=shared_id))
    bob, bob_token = invite("bob@example.com", "Bob Builder")
    response = enroll(browser, bob_token, SoftAuthenticator(), credential_id=shared_id)
    body = assert_failed(response, 400, ALREADY_REGISTERED)
    assert body["error"]["code"] == "already_registered"
    assert last_event("passkey.registration_failed").reason == "credential_already_registered"
    assert Passkey.objects.count() == 1
    assert not Passkey.objects.filter(user=bob.user).exists()
    assert EnrollmentInvite.objects.get(pk=bob.invite.pk).used_at is None


def test_a_deactivated_persons_link_stops_working(browser):
    created, token = invite()
    User.objects.filter(pk=created.user.pk).update(is_active=False)
    page = browser.get(f"/enroll/{token}")
    assert page.status_code == 404
    assert INVITE_UNUSABLE in page.content.decode()
    assert last_event("invite.rejected").detail["why"] == "account_disabled"


# --- The session an enrollment starts ----------------------------------------------------------


def test_enrolling_with_user_verification_counts_as_verifying_it_is_you(browser):
    """The registration verified the person (UV): "Set up another" and "Remove" open at once,
    not after a second "Verify it's you"."""
    _, token = invite()
    assert_ok(enroll(browser, token, SoftAuthenticator()))
    assert Passkey.objects.get().uv_initialized is True
    assert browser.get("/settings/security-methods/add").status_code == 200
    passkey = Passkey.objects.get()
    assert browser.get(f"/settings/security-methods/{passkey.pk}/remove").status_code == 200


def test_enrolling_without_user_verification_is_no_step_up(browser):
    """Where the policy only prefers UV, a passkey created without it verified nobody."""
    do_update_policy(Policy(user_verification="preferred"), Origin.cli())
    _, token = invite()
    assert_ok(enroll(browser, token, SoftAuthenticator(user_verified=False)))
    assert Passkey.objects.get().uv_initialized is False
    assert browser.is_signed_in()
    add = browser.get("/settings/security-methods/add")
    assert add.status_code == 303
    assert add["Location"].startswith("/settings/verify?next=")


# --- Someone else's link in a signed-in browser --------------------------------------------------

SIGNED_IN_AS_SOMEONE_ELSE = "You are signed in as someone else"


@pytest.fixture
def ada_signed_in(ada) -> Browser:
    browser = Browser()
    assert_ok(sign_in(browser, ada.authenticator))
    return browser


def test_someone_elses_link_asks_before_signing_out(ada, ada_signed_in):
    _, token = invite("bob@example.com", "Bob Builder")
    session = ada_signed_in.session_key
    page = ada_signed_in.get(f"/enroll/{token}")
    assert page.status_code == 200
    # Never the token: only the origin (no-referrer would make the form's Origin "null").
    assert page["Referrer-Policy"] == "strict-origin"
    html = page.content.decode()
    assert SIGNED_IN_AS_SOMEONE_ELSE in html
    assert "as <strong>Ada Lovelace</strong> (ada@example.com)" in html
    assert "link is for <strong>Bob Builder</strong>" in html
    assert "you are signed out of Threshold in this browser" in html
    assert f'<form method="post" action="/enroll/{token}"' in html
    assert "Sign out and continue" in html
    assert '<a href="/">Cancel</a>' in html
    assert 'id="create-button"' not in html
    # Nothing changed by looking.
    assert ada_signed_in.session_key == session
    assert ada_signed_in.is_signed_in()
    assert not AuditEvent.objects.filter(action="sign_out").exists()

    # Its ceremony is refused too, as a stale page: reloading it asks.
    refused = ada_signed_in.post_json(f"/enroll/{token}/options")
    assert_failed(refused, 400, SESSION_EXPIRED)
    assert not ada_signed_in.ceremonies
    assert ada_signed_in.is_signed_in()

    # Continuing signs Ada out, and the link goes on as Bob's.
    moved = ada_signed_in.post_form(f"/enroll/{token}")
    assert moved.status_code == 303
    assert moved["Location"] == f"/enroll/{token}"
    assert last_event("sign_out").subject == ada.user
    assert not ada_signed_in.is_signed_in()
    welcome = ada_signed_in.get(f"/enroll/{token}").content.decode()
    assert "Welcome, Bob Builder" in welcome
    assert SIGNED_IN_AS_SOMEONE_ELSE not in welcome
    assert_ok(enroll(ada_signed_in, token, SoftAuthenticator()))
    bob = User.objects.get(username="bob@example.com")
    assert Passkey.objects.filter(user=bob).count() == 1
    assert ada_signed_in.client.session["_auth_user_id"] == str(bob.pk)


def test_a_ceremony_begun_before_someone_else_signed_in_does_not_switch(ada, browser):
    """The link's page was opened signed out; meanwhile, in another tab, Ada signed in."""
    _, token = invite("bob@example.com", "Bob Builder")
    options = assert_ok(browser.post_json(f"/enroll/{token}/options"))["publicKey"]
    assert_ok(sign_in(browser, ada.authenticator))
    credential = SoftAuthenticator().create(options, ORIGIN)
    refused = browser.post_json(f"/enroll/{token}/result", credential)
    assert_failed(refused, 400, SESSION_EXPIRED)
    assert browser.client.session["_auth_user_id"] == str(ada.user.pk)
    assert not Passkey.objects.filter(user__username="bob@example.com").exists()
    assert SIGNED_IN_AS_SOMEONE_ELSE in browser.get(f"/enroll/{token}").content.decode()


def test_continuing_needs_the_forms_csrf_token(ada, ada_signed_in):
    _, token = invite("bob@example.com", "Bob Builder")
    refused = ada_signed_in.client.post(f"/enroll/{token}")
    assert refused.status_code == 403
    assert ada_signed_in.is_signed_in()


def test_the_persons_own_recovery_link_asks_nothing(ada, ada_signed_in):
    token = token_of(do_issue_recovery(ada.user, Origin.cli(), send_email=False).link)
    html = ada_signed_in.get(f"/enroll/{token}").content.decode()
    assert SIGNED_IN_AS_SOMEONE_ELSE not in html
    assert "Recover your account" in html


def test_someone_elses_recovery_link_says_it_recovers_their_account(ada, ada_signed_in):
    grace = invite("grace@example.com", "Grace Hopper")[0].user
    token = token_of(do_issue_recovery(grace, Origin.cli(), send_email=False).link)
    html = ada_signed_in.get(f"/enroll/{token}").content.decode()
    assert "This recovery link is for <strong>Grace Hopper</strong>" in html
    assert "recover the account on the next page" in html


def test_an_unusable_link_is_refused_whether_looked_at_or_continued(ada, ada_signed_in):
    for response in (
        ada_signed_in.get(f"/enroll/{secrets.token_urlsafe(32)}"),
        ada_signed_in.post_form(f"/enroll/{secrets.token_urlsafe(32)}"),
    ):
        assert response.status_code == 404
        assert INVITE_UNUSABLE in response.content.decode()
    assert ada_signed_in.is_signed_in()
