"""Writing audit events: ``record(Action.SIGN_IN_SUCCEEDED, ...).``

Callers write the event inside the same transaction as the change it
describes. Never put secrets or whole credentials in ``detail``.
"""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from threshold import clock
from threshold.audit.models import AuditEvent


class Action(StrEnum):
    """What happened. The values are stored in ``AuditEvent.action``: never change one."""

    SIGN_IN_SUCCEEDED = "sign_in.succeeded"
    SIGN_IN_FAILED = "sign_in.failed"
    SIGN_OUT = "sign_out"
    SESSION_EXPIRED = "session.expired"
    SESSIONS_ENDED = "sessions.ended"
    PASSKEY_REGISTERED = "passkey.registered"
    PASSKEY_REGISTRATION_FAILED = "passkey.registration_failed"
    PASSKEY_FLAGGED_CLONED = "passkey.flagged_possibly_cloned"
    PASSKEY_RENAMED = "passkey.renamed"
    PASSKEY_REMOVED = "passkey.removed"
    PASSKEY_REMOVAL_REFUSED = "passkey.removal_refused"
    STEP_UP_SUCCEEDED = "step_up.succeeded"
    STEP_UP_FAILED = "step_up.failed"
    DISPLAY_NAME_CHANGED = "user.display_name_changed"
    FALLBACK_SET_UP = "fallback.set_up"
    FALLBACK_REMOVED = "fallback.removed"
    FALLBACK_REMOVAL_REFUSED = "fallback.removal_refused"
    RECOVERY_CODES_REPLACED = "fallback.recovery_codes_replaced"
    PASSKEY_PROMPT_SNOOZED = "passkey_prompt.snoozed"
    INVITE_CREATED = "invite.created"
    INVITE_USED = "invite.used"
    INVITE_REJECTED = "invite.rejected"
    USER_CREATED = "user.created"
    USER_LOCKED = "user.locked"
    USER_UNLOCKED = "user.unlocked"
    RECOVERY_ISSUED = "recovery.issued"
    RECOVERY_USED = "recovery.used"
    POLICY_CHANGED = "policy.changed"
    GROUP_ADDED = "group.added"
    GROUP_REMOVED = "group.removed"
    GROUP_MEMBER_ADDED = "group.member_added"
    GROUP_MEMBER_REMOVED = "group.member_removed"
    USER_ROLE_CHANGED = "user.role_changed"
    USER_DEACTIVATED = "user.deactivated"
    USER_REACTIVATED = "user.reactivated"
    FALLBACK_RESET = "fallback.reset"
    INVITE_REVOKED = "invite.revoked"
    GROUP_RULES_CHANGED = "group.rules_changed"
    # The device app (Threshold Verify).
    DEVICE_SETUP_CODE_ISSUED = "device.setup_code_issued"
    DEVICE_SETUP_CODE_REDEEMED = "device.setup_code_redeemed"
    DEVICE_ENROLLMENT_REFUSED = "device.enrollment_refused"
    DEVICE_ENROLLMENT_CANCELED = "device.enrollment_canceled"
    DEVICE_ADDED = "device.added"
    DEVICE_RENAMED = "device.renamed"
    DEVICE_REMOVED = "device.removed"
    DEVICE_REMOVAL_REFUSED = "device.removal_refused"
    DEVICE_REQUEST_REFUSED = "device.request_refused"
    PUSH_SENT = "push.sent"
    PUSH_APPROVED = "push.approved"
    PUSH_REFUSED = "push.refused"
    PUSH_DENIED = "push.denied"
    PUSH_CANCELED = "push.canceled"
    DEVICE_KEY_ATTESTED = "device.key_attested"
    DEVICE_KEY_NOT_ATTESTED = "device.key_not_attested"
    DEVICE_SCREEN_LOCK_ENABLED = "device.screen_lock_enabled"
    DEVICE_SCREEN_LOCK_REFUSED = "device.screen_lock_refused"
    # Single sign-on (threshold/sso/).
    APP_ADDED = "app.added"
    APP_REMOVED = "app.removed"
    APP_SECRET_ROTATED = "app.secret_rotated"  # noqa: S105 - an event, not a secret
    APP_ASSIGNED = "app.assigned"
    APP_CHANGED = "app.changed"
    SSO_AUTHORIZED = "sso.authorized"
    SSO_REFUSED = "sso.refused"
    SSO_TOKEN_ISSUED = "sso.token_issued"  # noqa: S105 - an event, not a token
    SSO_TOKEN_REFUSED = "sso.token_refused"  # noqa: S105
    SSO_TOKENS_REVOKED = "sso.tokens_revoked"
    SSO_LOGOUT = "sso.logout"
    SSO_BACKCHANNEL_LOGOUT_SENT = "sso.backchannel_logout_sent"
    SSO_BACKCHANNEL_LOGOUT_FAILED = "sso.backchannel_logout_failed"
    SSO_KEYS_ROTATED = "sso.keys_rotated"
    # Threshold Verify's Web Push (threshold/devices/webpush.py) and setup-code guesses.
    DEVICE_PUSH_SUBSCRIBED = "device.push_subscribed"
    DEVICE_PUSH_SUBSCRIPTION_GONE = "device.push_subscription_gone"
    DEVICE_SETUP_CODE_REFUSED = "device.setup_code_refused"
    # Token introspection (threshold/sso/introspection.py): a caller that is not an app.
    SSO_INTROSPECTION_REFUSED = "sso.introspection_refused"
    # Refusals that name no one, from one network, past their rate (threshold/audit/capped.py).
    AUDIT_REFUSALS_CAPPED = "audit.refusals_capped"


# The actions whose every row is a failure or a refusal (the portal's "Failed" outcome and
# its filter, the export's ``outcome``): an attempt refused, a check that failed, a delivery
# given up. A row's ``reason`` alone says no such thing: some successes say why they happened
# (sso.tokens_revoked "sessions_ended", a back-channel logout's "session_ended", a session
# that ended "account_locked"), and some failures have no reason (push.denied).
FAILURES: frozenset[str] = frozenset(
    {
        Action.SIGN_IN_FAILED,
        Action.STEP_UP_FAILED,
        Action.PASSKEY_REGISTRATION_FAILED,
        Action.PASSKEY_FLAGGED_CLONED,  # a sign-in refused: its counter went back
        Action.PASSKEY_REMOVAL_REFUSED,
        Action.FALLBACK_REMOVAL_REFUSED,
        Action.INVITE_REJECTED,
        Action.DEVICE_ENROLLMENT_REFUSED,
        Action.DEVICE_ENROLLMENT_CANCELED,  # canceled by Threshold: wrong codes, a software key
        Action.DEVICE_REMOVAL_REFUSED,
        Action.DEVICE_REQUEST_REFUSED,
        Action.DEVICE_KEY_NOT_ATTESTED,
        Action.DEVICE_SCREEN_LOCK_REFUSED,
        Action.DEVICE_SETUP_CODE_REFUSED,
        Action.PUSH_REFUSED,
        Action.PUSH_DENIED,  # the person said "not me" on their device
        Action.SSO_REFUSED,
        Action.SSO_TOKEN_REFUSED,
        Action.SSO_INTROSPECTION_REFUSED,
        Action.SSO_BACKCHANNEL_LOGOUT_FAILED,
        Action.AUDIT_REFUSALS_CAPPED,  # stands for refusals not written one by one
    }
)


def is_failure(action: str) -> bool:
    """Whether a row of ``action`` records a failure or a refusal (``FAILURES``)."""
    return action in FAILURES


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Control characters (PostgreSQL's JSON refuses NUL) and lone surrogates (no driver encodes
# them), which a value sent by a client may hold.
_UNSTORABLE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def as_given(value: object, length: int = 200) -> str:
    """A value a client or the environment gave, for an audit row: at most ``length``
    characters, without control characters or lone surrogates."""
    return _UNSTORABLE.sub("", str(value or "")[:length])


class Channel(StrEnum):
    """How an action reached Threshold (``AuditEvent.via``; stored values)."""

    WEB = "web"
    CLI = "cli"


@dataclass(frozen=True)
class Origin:
    """Where an action came from: the request's client, or the command line."""

    ip: str | None = None
    user_agent: str = ""
    via: Channel = Channel.WEB
    # The command line's operator: the operating-system account that ran ``threshold``, and
    # whoever ran it through sudo (SUDO_USER). Recorded in the row's ``detail`` (``os_user``,
    # ``sudo_user``): the command line signs no one in, so its rows have no actor.
    os_user: str = ""
    sudo_user: str = ""

    def __post_init__(self) -> None:
        if _CONTROL.search(self.user_agent):
            # A header's value, stored as it came with every sign-in and audit row: without
            # the control characters no browser sends (PostgreSQL refuses a NUL).
            object.__setattr__(self, "user_agent", _CONTROL.sub("", self.user_agent))

    @classmethod
    def cli(cls) -> Origin:
        """The command line, run by this process's operating-system user."""
        return cls(via=Channel.CLI, os_user=_os_user(), sudo_user=os.environ.get("SUDO_USER", ""))

    def operator(self) -> dict[str, str]:
        """What an audit row's ``detail`` says of the command line's operator (none: {})."""
        named = {"os_user": self.os_user, "sudo_user": self.sudo_user}
        return {name: as_given(value, 150) for name, value in named.items() if value}


def _os_user() -> str:
    """The operating-system account this process runs as, or "" when it has no name."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no LOGNAME/USER and a UID with no passwd entry
        return ""


def record(
    action: Action,
    origin: Origin,
    *,
    actor: Any = None,
    subject: Any = None,
    reason: str = "",
    **detail: Any,
) -> AuditEvent:
    event = audit_event(action, origin, actor=actor, subject=subject, reason=reason, **detail)
    event.save(force_insert=True)
    return event


def audit_event(
    action: Action,
    origin: Origin,
    *,
    actor: Any = None,
    subject: Any = None,
    reason: str = "",
    **detail: Any,
) -> AuditEvent:
    """The row ``record`` writes, not written yet: for ``record_all``."""
    return AuditEvent(
        at=clock.now_datetime(),
        action=action,
        reason=reason,
        actor=actor,
        subject=subject,
        subject_label=getattr(subject, "username", "") if subject is not None else "",
        ip=origin.ip,
        user_agent=origin.user_agent[:512],
        via=origin.via,
        detail={**detail, **origin.operator()},
    )


def record_all(events: Iterable[AuditEvent]) -> None:
    """Write rows ``audit_event`` made, in one INSERT (per thousand): many at once, as one
    change ends many sessions."""
    rows = list(events)
    if rows:
        AuditEvent.objects.bulk_create(rows, batch_size=1000)
