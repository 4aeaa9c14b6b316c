"""Emails about one-time links: the invite itself, and a recovery link's issue and use.

Sent through Django's email framework once the change commits. A failure to
send is logged and does not undo the change: the administrator still has the
link the command printed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from django.conf import settings
from django.urls import reverse
from django.utils.text import get_text_list

from threshold import clock
from threshold.accounts.notices import email_after_commit, from_where, product
from threshold.audit.actions import Origin
from threshold.enrollment.models import EnrollmentInvite
from threshold.passkeys.models import Passkey


def _sent_to(invite: EnrollmentInvite) -> Callable[[str], object]:
    """Keep the address ``invite``'s link was emailed to: using the link then proves the
    person reads that mailbox (``User.email_verified_at``)."""
    return lambda address: EnrollmentInvite.objects.filter(pk=invite.pk).update(sent_to=address)


def link_was_emailed(invite: EnrollmentInvite) -> bool:
    """Whether the email backend took the email with ``invite``'s link (``_sent_to``): known
    once the transaction that made the link committed, which sends it. With SMTP, False when
    the mail server failed: the link then has to be handed over."""
    return EnrollmentInvite.objects.filter(pk=invite.pk).exclude(sent_to="").exists()


def send_invite(invite: EnrollmentInvite, link: str) -> None:
    email_after_commit(
        invite.user,
        f"Set up your passkey for {product()}",
        "enrollment/invite_email.txt",
        {"link": link, "expires_at": invite.expires_at},
        on_sent=_sent_to(invite),
    )


def notify_recovery_issued(
    invite: EnrollmentInvite, link: str | None, *, on_sent: Callable[[str], object]
) -> None:
    """Tell the person a recovery link exists; it is in the email only when ``link`` is given.
    ``on_sent(address)`` once an SMTP server took the email (``email_after_commit``).

    By default the administrator hands the link over through a channel they
    trust: whoever reads this mailbox should not be able to take over the account.
    """
    link_sent = _sent_to(invite) if link else None

    def sent(address: str) -> None:
        if link_sent is not None:
            link_sent(address)
        on_sent(address)

    email_after_commit(
        invite.user,
        f"Recover your {product()} account" if link else f"Account recovery for {product()}",
        "enrollment/recovery_issued_email.txt",
        {"link": link, "expires_at": invite.expires_at},
        on_sent=sent,
    )


def notify_recovered(passkey: Passkey, origin: Origin, *, fallback_removed: Sequence[str]) -> None:
    """Tell the person their account was recovered: the new passkey, where from, what to do."""
    email_after_commit(
        passkey.user,
        f"Your {product()} account was recovered with a new passkey",
        "enrollment/recovered_email.txt",
        {
            "method": passkey.name,
            "at": clock.now_datetime(),
            **from_where(origin),
            "settings_url": (
                f"{settings.THRESHOLD.public_url}{reverse('selfservice:settings')}#security-methods"
            ),
            # "Your password and authenticator app were removed too".
            "fallback_removed": get_text_list(list(fallback_removed), "and"),
            "fallback_removed_one": list(fallback_removed) in (["password"], ["authenticator app"]),
        },
    )
