"""One-time links: inviting people, recovering accounts, creating a passkey from the link.

An enrollment link (``do_invite``) and a recovery link (``do_issue_recovery``)
are the same machinery, an ``EnrollmentInvite`` with a ``purpose``, opened at
the same ``/enroll/<token>`` page. A recovery link is the stricter of the two:
it expires within the hour by default, always requires user verification, and
using it ends every other session of the person.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.urls import reverse

from threshold import clock
from threshold.accounts.access import staff_not_theirs
from threshold.accounts.actions import do_get_or_create_user, lock_user
from threshold.accounts.methods import count_sign_in_methods
from threshold.accounts.models import User, normalize_username
from threshold.accounts.signals import access_withdrawn, withdrawing
from threshold.audit.actions import Action, Origin, record
from threshold.audit.capped import record_capped
from threshold.core import errors
from threshold.core.policy import Policy
from threshold.core.vocabulary import UserVerification
from threshold.enrollment.models import EnrollmentInvite
from threshold.enrollment.notices import notify_recovered, notify_recovery_issued, send_invite
from threshold.fallback.actions import remove_fallback_for_recovery
from threshold.passkeys.actions import do_begin_registration, do_finish_registration
from threshold.passkeys.models import Passkey
from threshold.passkeys.pending import Ceremonies, Purpose
from threshold.policy.access import get_policy

# The purposes of a link.
ENROLLMENT = Purpose.ENROLLMENT
RECOVERY = Purpose.RECOVERY
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invite_link(token: str) -> str:
    return settings.THRESHOLD.public_url + reverse("enrollment:enroll", args=[token])


@dataclass(frozen=True)
class CreatedInvite:
    invite: EnrollmentInvite
    user: User
    link: str
    user_created: bool
    # Where a recovery's notice went, once the email backend took it for delivery (only an
    # SMTP server's acceptance counts: ``accounts.notices.delivers``); filled on commit.
    notified: list[str] = field(default_factory=list)


def _refuse_unless_can_sign_in(user: User, what: str) -> None:
    refusal = user.sign_in_refusal(f"{what} for an account that cannot sign in")
    if refusal is not None:
        raise refusal


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
    """Create the person if needed and a fresh one-time link; earlier links stop working.

    Refused for an account that cannot sign in (its link could not be used),
    and with AlreadyEnrolled for one that has a way to sign in already: a
    second, week-long link there would be a weaker recovery than
    ``do_issue_recovery``, which is what someone who lost theirs needs.
    """
    name = normalize_username(username)
    user, created = do_get_or_create_user(
        name,
        origin,
        email=name if email is None else email,
        full_name=full_name,
        is_administrator=is_administrator,
        actor=actor,
    )
    _hold(user)
    _refuse_unless_can_sign_in(user, "an enrollment link")
    if not created and count_sign_in_methods(user):
        raise errors.AlreadyEnrolled("use a recovery link")
    lifetime = timedelta(hours=get_policy().invite_lifetime_hours)
    invite, link, revoked = _new_link(user, ENROLLMENT, lifetime, actor)
    record(
        Action.INVITE_CREATED,
        origin,
        actor=actor,
        subject=user,
        invite_id=invite.pk,
        expires_at=invite.expires_at.isoformat(),
        before={"unused_links": revoked},
        after={"unused_links": 1},
    )
    if send_email:
        send_invite(invite, link)
    return CreatedInvite(invite, user, link, created)


@transaction.atomic
def do_issue_recovery(
    user: User,
    origin: Origin,
    *,
    actor: User | None = None,
    send_email: bool = True,
    email_link: bool = False,
) -> CreatedInvite:
    """A one-time link with which ``user``, who lost every passkey, creates a new one.

    Never weaker than the passkeys it restores: only for an account that can
    sign in (AccountDisabled or AccountLocked otherwise), short-lived (the
    policy's ``recovery_link_lifetime_minutes``), the new passkey needs user
    verification and passes every registration rule, and using the link ends
    all the person's sessions. Their earlier unused links stop working.

    ``send_email``: tell the person that a link was issued. The link itself is
    in that email only with ``email_link``; otherwise the administrator hands
    it over through a channel they trust, so that whoever reads the person's
    mailbox cannot take over the account.
    """
    _hold(user)
    _refuse_unless_can_sign_in(user, "a recovery link")
    lifetime = timedelta(minutes=get_policy().recovery_link_lifetime_minutes)
    invite, link, revoked = _new_link(user, RECOVERY, lifetime, actor)
    record(
        Action.RECOVERY_ISSUED,
        origin,
        actor=actor,
        subject=user,
        invite_id=invite.pk,
        expires_at=invite.expires_at.isoformat(),
        link_emailed=send_email and email_link and bool(user.email),
        before={"unused_links": revoked},
        after={"unused_links": 1},
    )
    created = CreatedInvite(invite, user, link, False)
    if send_email:
        notify_recovery_issued(
            invite, link if email_link else None, on_sent=created.notified.append
        )
    return created


@transaction.atomic
def do_revoke_invite(invite_id: int, origin: Origin, *, actor: User | None = None) -> bool:
    """Stop an unused link (enrollment or recovery) working; False when it could not be used
    anyway (used, revoked or unknown)."""
    now = clock.now_datetime()
    invite = EnrollmentInvite.objects.select_related("user").filter(pk=invite_id).first()
    if invite is None:
        return False
    revoked = EnrollmentInvite.objects.filter(pk=invite.pk, used_at=None, revoked_at=None).update(
        revoked_at=now
    )
    if not revoked:
        return False
    record(
        Action.INVITE_REVOKED,
        origin,
        actor=actor,
        subject=invite.user,
        invite_id=invite.pk,
        purpose=invite.purpose,
        before={"usable_until": invite.expires_at.isoformat()},
        after={"revoked_at": now.isoformat()},
    )
    return True


def _hold(user: User) -> None:
    """Take turns with ``do_lock_user`` and read the account's state as it is now."""
    lock_user(user)
    user.refresh_from_db(fields=["is_active", "locked_at"])


def _new_link(
    user: User, purpose: Purpose, lifetime: timedelta, actor: User | None
) -> tuple[EnrollmentInvite, str, int]:
    """A fresh link for ``user``; their earlier unused links, of either purpose, stop working
    (how many did is the third value)."""
    now = clock.now_datetime()
    revoked = user.invites.filter(used_at=None, revoked_at=None).update(revoked_at=now)
    token = secrets.token_urlsafe(32)
    invite = EnrollmentInvite.objects.create(
        user=user,
        purpose=purpose,
        token_hash=_hash(token),
        created_at=now,
        expires_at=now + lifetime,
        created_by=actor,
    )
    return invite, invite_link(token), revoked


def access_invite(token: str, origin: Origin) -> EnrollmentInvite:
    """The usable invite for ``token``, or InviteUnusable.

    Garbled, unknown, used, revoked and expired links all fail the same way
    for the visitor; the audit log keeps which one it was.
    """
    invite = None
    if _TOKEN.fullmatch(token):
        invite = (
            EnrollmentInvite.objects.select_related("user", "created_by")
            .filter(token_hash=_hash(token))
            .first()
        )
    reason = _unusable_reason(invite)
    if invite is None:
        # A link no one was given (garbled, made up): anyone can send those, so at the
        # capped rate per network.
        record_capped(Action.INVITE_REJECTED, origin, reason=errors.InviteUnusable.code, why=reason)
        raise errors.InviteUnusable(reason)
    if reason:
        record(
            Action.INVITE_REJECTED,
            origin,
            subject=invite.user,
            reason=errors.InviteUnusable.code,
            why=reason,
            purpose=invite.purpose,
        )
        raise errors.InviteUnusable(reason)
    assert invite is not None  # noqa: S101
    return invite


def get_invitee_id(token: str) -> int | None:
    """The ID of the person ``token``'s link is for, usable or not (None: no such link).

    Reads only: ``access_invite`` decides whether the link may be used, and audits it.
    """
    if not _TOKEN.fullmatch(token):
        return None
    return (
        EnrollmentInvite.objects.filter(token_hash=_hash(token))
        .values_list("user_id", flat=True)
        .first()
    )


def _unusable_reason(invite: EnrollmentInvite | None) -> str:
    if invite is None:
        return "unknown"
    if invite.used_at is not None:
        return "used"
    if invite.revoked_at is not None:
        return "revoked"
    if invite.expires_at <= clock.now_datetime():
        return "expired"
    if _issuer_may_not(invite.created_by, invite.user):
        return "issuer_may_not"
    refusal = invite.user.sign_in_refusal()
    return refusal.code if refusal is not None else ""


def _issuer_may_not(issuer: User | None, user: User) -> bool:
    """Whether the member of staff who issued a link may no longer give it to ``user``: a help
    desk's link to someone given a role in the admin portal since would be a way into their
    account (``accounts.access.staff_not_theirs``, checked again when the link is used). A
    link from the command line (no issuer) is an operator's."""
    return issuer is not None and staff_not_theirs(issuer.portal_role, issuer, user)


def do_begin_enrollment(
    ceremonies: Ceremonies,
    token: str,
    origin: Origin,
    *,
    check_page: Callable[[], None] | None = None,
    policy: Policy | None = None,
) -> dict[str, Any]:
    """Creation options for the link's person; ``check_page`` runs once the link is known good."""
    invite = access_invite(token, origin)
    if check_page is not None:
        check_page()
    return do_begin_registration(
        ceremonies,
        invite.user,
        purpose=Purpose(invite.purpose),
        context={"invite_id": invite.pk},
        # A recovery restores everything the lost passkeys could do: like a
        # step-up, it verifies the person (PIN, biometrics) whatever the policy.
        user_verification=UserVerification.REQUIRED if invite.purpose == RECOVERY else None,
        # Someone who lost every passkey cannot remove one to make room.
        beyond_limit=invite.purpose == RECOVERY,
        policy=policy,
    )


def do_finish_enrollment(
    ceremonies: Ceremonies,
    token: str,
    credential: object,
    origin: Origin,
) -> Passkey:
    """Store the passkey created from the link, using the link up; a recovery ends all sessions.

    The caller signs the person in under a new session when it succeeds. A failure
    raises once the used challenge and its audit row have committed.
    """
    token_hash = _hash(token) if _TOKEN.fullmatch(token) else ""
    # The link decides the purpose, which must be the one the ceremony began
    # with: a ceremony begun on a recovery link cannot finish on an enrollment
    # link, nor the other way round.
    purpose = Purpose(
        (
            EnrollmentInvite.objects.filter(token_hash=token_hash)
            .values_list("purpose", flat=True)
            .first()
            if token_hash
            else None
        )
        or ENROLLMENT
    )

    fallback_removed: list[str] = []

    def use_invite(user: User, context: dict[str, Any]) -> None:
        nonlocal fallback_removed
        now = clock.now_datetime()
        # The link must still be the one the ceremony began with, and unused:
        # the conditional UPDATE makes "works once" hold under concurrency.
        used = EnrollmentInvite.objects.filter(
            pk=int(context["invite_id"]),
            token_hash=token_hash,
            purpose=purpose,
            user=user,
            used_at=None,
            revoked_at=None,
            expires_at__gt=now,
        ).update(used_at=now)
        if used != 1:
            raise errors.InviteUnusable("used, revoked or expired during the ceremony")
        invite = EnrollmentInvite.objects.select_related("created_by").get(
            pk=int(context["invite_id"])
        )
        # Locking revokes the link too; this holds should a lock ever not. The
        # person's row is locked by now (PostgreSQL), so this reads the lock, and the role.
        role = (
            User.objects.filter(pk=user.pk, is_active=True, locked_at=None)
            .values_list("role", flat=True)
            .first()
        )
        if role is None:
            raise errors.InviteUnusable("the account was locked or deactivated meanwhile")
        user.role = role
        if _issuer_may_not(invite.created_by, user):
            raise errors.InviteUnusable("its issuer may no longer change this person")
        # A link that was emailed to the person's address proves they read that mailbox.
        sent_to = invite.sent_to
        if sent_to and user.email and sent_to.casefold() == user.email.casefold():
            User.objects.filter(pk=user.pk, email_verified_at=None).update(email_verified_at=now)
        if purpose == RECOVERY:
            # Whoever else is signed in as this person may be why they recover.
            with withdrawing():
                sessions_ended, _ = user.sessions.all().delete()
            record(
                Action.RECOVERY_USED,
                origin,
                actor=user,
                subject=user,
                invite_id=context["invite_id"],
                sessions_ended=sessions_ended,
                fallback_removed=bool(fallback_removed := remove_fallback_for_recovery(user)),
            )
            access_withdrawn.send(
                User,
                user=user,
                origin=origin,
                reason="recovered",
                keep_session_key=None,
                actor=user,
            )
        else:
            record(
                Action.INVITE_USED, origin, actor=user, subject=user, invite_id=context["invite_id"]
            )

    passkey = do_finish_registration(
        ceremonies,
        credential,
        origin,
        purpose=purpose,
        before_save=use_invite,
        # A recovery sends its own notice, which names the new passkey.
        notify=purpose == ENROLLMENT,
    )
    if purpose == RECOVERY:
        notify_recovered(passkey, origin, fallback_removed=fallback_removed)
    return passkey
