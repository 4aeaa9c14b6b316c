"""Emails about one-time links: the invite itself, and a recovery link's issue and use.

Sent through Django's email framework once the change commits. A failure to
send is logged and does not undo the change: the administrator still has the
link the command printed.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.urls import reverse

from threshold import clock
from threshold.accounts.models import User
from threshold.accounts.notices import email_after_commit, product
from threshold.audit.actions import Channel, Origin
from threshold.core.useragent import describe
from threshold.passkeys.models import Passkey


def send_invite(user: User, link: str, expires_at: datetime) -> None:
    email_after_commit(
        user,
        f"Set up your passkey for {product()}",
        "enrollment/invite_email.txt",
        {"link": link, "expires_at": expires_at},
    )


def notify_recovery_issued(user: User, expires_at: datetime, link: str | None) -> None:
    """Tell the person a recovery link exists; it is in the email only when ``link`` is given.

    By default the administrator hands the link over through a channel they
    trust: whoever reads this mailbox should not be able to take over the account.
    """
    email_after_commit(
        user,
        f"Recover your {product()} account" if link else f"Account recovery for {product()}",
        "enrollment/recovery_issued_email.txt",
        {"link": link, "expires_at": expires_at},
    )


def notify_recovered(passkey: Passkey, origin: Origin, *, fallback_removed: bool) -> None:
    """Tell the person their account was recovered: the new passkey, where from, what to do."""
    email_after_commit(
        passkey.user,
        f"Your {product()} account was recovered with a new passkey",
        "enrollment/recovered_email.txt",
        {
            "method": passkey.name,
            "at": clock.now_datetime(),
            "client": describe(origin.user_agent).label if origin.via == Channel.WEB else "",
            "ip": origin.ip or "",
            "settings_url": (
                f"{settings.THRESHOLD.public_url}{reverse('selfservice:settings')}#security-methods"
            ),
            "fallback_removed": fallback_removed,
        },
    )
