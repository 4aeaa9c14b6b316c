"""Closed vocabularies are StrEnums with one spelling each; the values that are stored (audit rows,
session data, columns, signed tokens, cookie names) keep their exact spellings, so nothing is
migrated. A rename fails here."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Browser, assert_ok, last_event, sign_in
from threshold.audit.actions import Action, Channel, Origin, record
from threshold.audit.models import AuditEvent

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
    }


def test_channels_keep_their_stored_values() -> None:
    assert {channel.name: channel.value for channel in Channel} == {"WEB": "web", "CLI": "cli"}


def test_an_audit_row_stores_and_finds_the_plain_strings(ada) -> None:
    record(Action.USER_LOCKED, Origin.cli(), subject=ada.user, why=Channel.CLI)
    stored = AuditEvent.objects.values_list("action", "via", "detail").first()
    assert stored == ("user.locked", "cli", {"why": "cli"})
    assert type(stored[0]) is str
    # Rows written before the enum read back, and filter, as its members.
    assert AuditEvent.objects.filter(action=Action.USER_LOCKED, via=Channel.CLI).count() == 1


def test_a_web_sign_in_is_audited_under_its_stored_names(ada) -> None:
    assert_ok(sign_in(Browser(), ada.authenticator))
    event = last_event("sign_in.succeeded")
    assert event.action == Action.SIGN_IN_SUCCEEDED and event.via == "web"
