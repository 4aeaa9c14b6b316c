"""Closed vocabularies are StrEnums with one spelling each; the values that are stored (audit rows,
session data, columns, signed tokens, cookie names) keep their exact spellings, so nothing is
migrated. A rename fails here."""

from __future__ import annotations

from enum import StrEnum

import pyotp
import pytest
from django.core.signing import BadSignature

from tests.integration.conftest import ORIGIN, Browser, assert_ok, last_event, sign_in
from threshold import clock
from threshold.accounts.notices import MethodChange
from threshold.audit.actions import Action, Channel, Origin, record
from threshold.audit.models import AuditEvent
from threshold.core.errors import Category
from threshold.core.policy import Policy
from threshold.enrollment.actions import do_issue_recovery
from threshold.enrollment.models import EnrollmentInvite
from threshold.fallback.actions import (
    CounterKind,
    Step,
    do_finish_fallback_sign_in,
    do_set_up_fallback,
)
from threshold.passkeys.pending import CeremonyKind, Purpose
from threshold.sessions import flow
from threshold.sessions.flow import Flow
from threshold.sessions.store import SignedInWith
from threshold.web.http import Done

pytestmark = pytest.mark.django_db


def test_audit_actions_keep_their_stored_values() -> None:
    assert {action.name: action.value for action in Action} == {
        "SIGN_IN_SUCCEEDED": "sign_in.succeeded",
        "SIGN_IN_FAILED": "sign_in.failed",
        "SIGN_OUT": "sign_out",
        "SESSION_EXPIRED": "session.expired",
        "SESSIONS_ENDED": "sessions.ended",
        "PASSKEY_REGISTERED": "passkey.registered",
        "PASSKEY_REGISTRATION_FAILED": "passkey.registration_failed",
        "PASSKEY_FLAGGED_CLONED": "passkey.flagged_possibly_cloned",
        "PASSKEY_RENAMED": "passkey.renamed",
        "PASSKEY_REMOVED": "passkey.removed",
        "PASSKEY_REMOVAL_REFUSED": "passkey.removal_refused",
        "STEP_UP_SUCCEEDED": "step_up.succeeded",
        "STEP_UP_FAILED": "step_up.failed",
        "DISPLAY_NAME_CHANGED": "user.display_name_changed",
        "FALLBACK_SET_UP": "fallback.set_up",
        "FALLBACK_REMOVED": "fallback.removed",
        "FALLBACK_REMOVAL_REFUSED": "fallback.removal_refused",
        "RECOVERY_CODES_REPLACED": "fallback.recovery_codes_replaced",
        "PASSKEY_PROMPT_SNOOZED": "passkey_prompt.snoozed",
        "INVITE_CREATED": "invite.created",
        "INVITE_USED": "invite.used",
        "INVITE_REJECTED": "invite.rejected",
        "USER_CREATED": "user.created",
        "USER_LOCKED": "user.locked",
        "USER_UNLOCKED": "user.unlocked",
        "RECOVERY_ISSUED": "recovery.issued",
        "RECOVERY_USED": "recovery.used",
        "POLICY_CHANGED": "policy.changed",
        "GROUP_ADDED": "group.added",
        "GROUP_REMOVED": "group.removed",
        "GROUP_MEMBER_ADDED": "group.member_added",
        "GROUP_MEMBER_REMOVED": "group.member_removed",
        "USER_ROLE_CHANGED": "user.role_changed",
        "USER_DEACTIVATED": "user.deactivated",
        "USER_REACTIVATED": "user.reactivated",
        "FALLBACK_RESET": "fallback.reset",
        "INVITE_REVOKED": "invite.revoked",
        "GROUP_RULES_CHANGED": "group.rules_changed",
        "DEVICE_SETUP_CODE_ISSUED": "device.setup_code_issued",
        "DEVICE_SETUP_CODE_REDEEMED": "device.setup_code_redeemed",
        "DEVICE_ENROLLMENT_REFUSED": "device.enrollment_refused",
        "DEVICE_ENROLLMENT_CANCELED": "device.enrollment_canceled",
        "DEVICE_ADDED": "device.added",
        "DEVICE_RENAMED": "device.renamed",
        "DEVICE_REMOVED": "device.removed",
        "DEVICE_REMOVAL_REFUSED": "device.removal_refused",
        "DEVICE_REQUEST_REFUSED": "device.request_refused",
        "PUSH_SENT": "push.sent",
        "PUSH_APPROVED": "push.approved",
        "PUSH_REFUSED": "push.refused",
        "PUSH_DENIED": "push.denied",
        "PUSH_CANCELED": "push.canceled",
        "DEVICE_KEY_ATTESTED": "device.key_attested",
        "DEVICE_KEY_NOT_ATTESTED": "device.key_not_attested",
        "DEVICE_SCREEN_LOCK_ENABLED": "device.screen_lock_enabled",
        "DEVICE_SCREEN_LOCK_REFUSED": "device.screen_lock_refused",
        "APP_ADDED": "app.added",
        "APP_REMOVED": "app.removed",
        "APP_SECRET_ROTATED": "app.secret_rotated",
        "APP_ASSIGNED": "app.assigned",
        "APP_CHANGED": "app.changed",
        "SSO_AUTHORIZED": "sso.authorized",
        "SSO_REFUSED": "sso.refused",
        "SSO_TOKEN_ISSUED": "sso.token_issued",
        "SSO_TOKEN_REFUSED": "sso.token_refused",
        "SSO_TOKENS_REVOKED": "sso.tokens_revoked",
        "SSO_LOGOUT": "sso.logout",
        "SSO_BACKCHANNEL_LOGOUT_SENT": "sso.backchannel_logout_sent",
        "SSO_BACKCHANNEL_LOGOUT_FAILED": "sso.backchannel_logout_failed",
        "SSO_KEYS_ROTATED": "sso.keys_rotated",
        "DEVICE_PUSH_SUBSCRIBED": "device.push_subscribed",
        "DEVICE_PUSH_SUBSCRIPTION_GONE": "device.push_subscription_gone",
        "DEVICE_SETUP_CODE_REFUSED": "device.setup_code_refused",
        "SSO_INTROSPECTION_REFUSED": "sso.introspection_refused",
        "AUDIT_REFUSALS_CAPPED": "audit.refusals_capped",
    }


def test_channels_keep_their_stored_values() -> None:
    assert {channel.name: channel.value for channel in Channel} == {"WEB": "web", "CLI": "cli"}


def test_an_audit_row_stores_and_finds_the_plain_strings(ada) -> None:
    record(Action.USER_LOCKED, Origin.cli(), subject=ada.user, why=Channel.CLI)
    stored = AuditEvent.objects.values_list("action", "via", "detail").first()
    assert stored == ("user.locked", "cli", {"why": "cli", **Origin.cli().operator()})
    assert type(stored[0]) is str
    # Rows written before the enum read back, and filter, as its members.
    assert AuditEvent.objects.filter(action=Action.USER_LOCKED, via=Channel.CLI).count() == 1


def test_a_web_sign_in_is_audited_under_its_stored_names(ada) -> None:
    assert_ok(sign_in(Browser(), ada.authenticator))
    event = last_event("sign_in.succeeded")
    assert event.action == Action.SIGN_IN_SUCCEEDED
    assert event.via == "web"


@pytest.mark.parametrize(
    ("enum", "expected"),
    [
        (
            CeremonyKind,
            {
                "REGISTRATION": "registration",
                "AUTHENTICATION": "authentication",
                "STEP_UP": "step_up",
                "APP_SIGN_IN": "app_sign_in",
            },
        ),
        (
            Purpose,
            {
                "ENROLLMENT": "enrollment",
                "RECOVERY": "recovery",
                "ADD": "add",
                "CONFORMANCE": "conformance",
            },
        ),
        (
            Flow,
            {"SIGN_IN": "sign_in", "STEP_UP": "step_up", "ENROLLMENT": "enrollment", "ADD": "add"},
        ),
        (
            SignedInWith,
            {
                "PASSKEY": "passkey",
                "PASSWORD_AND_APP": "password+app",
                "PASSWORD_AND_RECOVERY_CODE": "password+recovery_code",
                "DEVICE_APP": "device_app",
            },
        ),
        (Step, {"PASSWORD": "password", "CODE": "code"}),
        (
            CounterKind,
            {
                "USER_NETWORK": "user-network",
                "USER_ANYWHERE": "user-anywhere",
                "KNOWN_BROWSER": "known-browser",
                "CODES": "codes",
                "NETWORK": "network",
                "USER_SHARED": "user-shared",
            },
        ),
        (MethodChange, {"ADDED": "added", "REMOVED": "removed"}),
        (
            Done,
            {
                "RENAMED": "renamed",
                "REMOVED": "removed",
                "NAME_CHANGED": "name-changed",
                "SESSIONS_ENDED": "sessions-ended",
                "FALLBACK_REMOVED": "fallback-removed",
                "FALLBACK_SET_UP": "fallback-set-up",
                "DEVICE_ADDED": "device-added",
                "DEVICE_RENAMED": "device-renamed",
                "DEVICE_REMOVED": "device-removed",
                "SIGNED_OUT_OF_APP": "signed-out-of-app",
            },
        ),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else "",
)
def test_vocabularies_keep_their_stored_spellings(enum: type[StrEnum], expected) -> None:
    assert {member.name: member.value for member in enum} == expected


def test_step_up_and_enrollment_are_spelt_one_way() -> None:
    # The concepts that had two spellings (step_up / step-up, enroll / enrollment).
    assert Flow.STEP_UP == CeremonyKind.STEP_UP == Category.STEP_UP == "step_up"
    assert Flow.ENROLLMENT == Purpose.ENROLLMENT == "enrollment"
    assert Flow.SIGN_IN == "sign_in"


@pytest.mark.parametrize(
    ("kind", "earlier"),
    [(Flow.SIGN_IN, "sign-in"), (Flow.STEP_UP, "step-up"), (Flow.ENROLLMENT, "enroll")],
    ids=str,
)
def test_a_flow_token_is_written_in_one_spelling_and_read_in_both(kind: Flow, earlier: str) -> None:
    # A page served before the spelling changed carries a token signed under its old name.
    before = flow._signer(earlier).sign(str(int(clock.now())))
    assert flow._issued_at(before, kind) is not None
    # New pages are signed under the one spelling only.
    token = flow.issue_flow_token(kind)
    assert flow._signer(kind.value).unsign(token)
    with pytest.raises(BadSignature):
        flow._signer(earlier).unsign(token)
    # Neither spelling opens another flow.
    other = Flow.ADD
    assert flow._issued_at(before, other) is None
    assert flow._issued_at(token, other) is None


def test_a_sign_in_page_served_before_the_spelling_changed_still_signs_in(ada) -> None:
    browser = Browser()
    browser.get("/sign-in")
    before = flow._signer("sign-in").sign(str(int(clock.now())))
    options = browser.post_json("/sign-in/options", {}, **{flow.META_KEY: before})
    credential = ada.authenticator.get(assert_ok(options)["publicKey"], ORIGIN)
    assert_ok(browser.post_json("/sign-in/result", credential))


def test_ceremony_cookies_keep_their_names(ada) -> None:
    browser = Browser()
    browser.get("/sign-in")
    assert_ok(browser.post_json("/sign-in/options", {}))
    assert "threshold_ceremony_authentication" in browser.client.cookies


def test_a_fallback_session_and_its_audit_row_keep_their_stored_spellings(ada) -> None:
    secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    do_set_up_fallback(ada.user, "correct horse battery staple", secret, 0, Origin.cli())
    method = do_finish_fallback_sign_in(
        ada.user, pyotp.TOTP(secret).now(), Origin(ip="192.0.2.1"), Policy()
    )
    assert method == "password+app"
    assert last_event("sign_in.succeeded").detail["method"] == "password+app"


def test_a_recovery_link_stores_its_purpose_as_before(ada) -> None:
    created = do_issue_recovery(ada.user, Origin.cli(), send_email=False)
    stored = EnrollmentInvite.objects.filter(pk=created.invite.pk).values_list("purpose", flat=True)
    assert list(stored) == ["recovery"]
