"""Inviting people and enrolling their first passkey from the link."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string

from threshold import clock
from threshold.accounts.actions import do_get_or_create_user
from threshold.accounts.models import User, normalize_username
from threshold.audit.actions import Action, Origin, record
from threshold.core import errors
from threshold.enrollment.models import EnrollmentInvite
from threshold.passkeys.actions import (
    RegistrationOutcome,
    do_begin_registration,
    do_finish_registration,
)
from threshold.policy.actions import get_policy

ENROLLMENT = "enrollment"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invite_link(token: str) -> str:
    return f"{settings.THRESHOLD.public_url}/enroll/{token}"


@dataclass(frozen=True)
class CreatedInvite:
    invite: EnrollmentInvite
    user: User
    link: str
    user_created: bool


@transaction.atomic
def do_invite(
    username: str,
    origin: Origin,
    *,
    full_name: str = "",
    email: str | None = None,
    is_administrator: bool = False,
    actor: User | None = None,
    send_email: bool = True,
) -> CreatedInvite:
    """Create the person if needed and a fresh one-time link; earlier links stop working."""
    name = normalize_username(username)
    user, created = do_get_or_create_user(
        name,
        origin,
        email=name if email is None else email,
        full_name=full_name,
        is_administrator=is_administrator,
        actor=actor,
    )
    now = clock.now_datetime()
    user.invites.filter(used_at=None, revoked_at=None).update(revoked_at=now)
    token = secrets.token_urlsafe(32)
    lifetime = timedelta(hours=get_policy().invite_lifetime_hours)
    invite = EnrollmentInvite.objects.create(
        user=user,
        token_hash=_hash(token),
        created_at=now,
        expires_at=now + lifetime,
        created_by=actor,
    )
    record(
        Action.INVITE_CREATED,
        origin,
        actor=actor,
        subject=user,
        invite_id=invite.pk,
        expires_at=invite.expires_at.isoformat(),
    )
    link = invite_link(token)
    if send_email and user.email:
        message = render_to_string(
            "enrollment/invite_email.txt",
            {
                "user": user,
                "link": link,
                "expires_at": invite.expires_at,
                "rp_name": settings.THRESHOLD.rp.name,
            },
        )
        recipient = user.email
        transaction.on_commit(
            lambda: send_mail(
                f"Set up your passkey for {settings.THRESHOLD.rp.name}",
                message,
                None,
                [recipient],
            )
        )
    return CreatedInvite(invite, user, link, created)


def access_invite(token: str, origin: Origin) -> EnrollmentInvite:
    """The usable invite for ``token``, or InviteUnusable.

    Garbled, unknown, used, revoked and expired links all fail the same way
    for the visitor; the audit log keeps which one it was.
    """
    invite = None
    if _TOKEN.fullmatch(token):
        invite = (
            EnrollmentInvite.objects.select_related("user").filter(token_hash=_hash(token)).first()
        )
    reason = _unusable_reason(invite)
    if reason:
        record(
            Action.INVITE_REJECTED,
            origin,
            subject=invite.user if invite else None,
            reason=errors.InviteUnusable.code,
            why=reason,
        )
        raise errors.InviteUnusable(reason)
    assert invite is not None  # noqa: S101
    return invite


def _unusable_reason(invite: EnrollmentInvite | None) -> str:
    if invite is None:
        return "unknown"
    if invite.used_at is not None:
        return "used"
    if invite.revoked_at is not None:
        return "revoked"
    if invite.expires_at <= clock.now_datetime():
        return "expired"
    if not invite.user.is_active:
        return "account_disabled"
    return ""


def do_begin_enrollment(session_key: str, token: str, origin: Origin) -> dict[str, Any]:
    invite = access_invite(token, origin)
    return do_begin_registration(
        session_key, invite.user, purpose=ENROLLMENT, context={"invite_id": invite.pk}
    )


def do_finish_enrollment(
    session_key: str | None, token: str, body: bytes | None, origin: Origin
) -> RegistrationOutcome:
    def use_invite(user: User, context: dict[str, Any]) -> None:
        now = clock.now_datetime()
        # The link must still be the one the ceremony began with, and unused:
        # the conditional UPDATE makes "works once" hold under concurrency.
        used = EnrollmentInvite.objects.filter(
            pk=int(context["invite_id"]),
            token_hash=_hash(token) if _TOKEN.fullmatch(token) else "",
            user=user,
            used_at=None,
            revoked_at=None,
            expires_at__gt=now,
        ).update(used_at=now)
        if used != 1:
            raise errors.InviteUnusable("used, revoked or expired during the ceremony")
        record(Action.INVITE_USED, origin, actor=user, subject=user, invite_id=context["invite_id"])

    return do_finish_registration(
        session_key, body, origin, purpose=ENROLLMENT, before_save=use_invite
    )
