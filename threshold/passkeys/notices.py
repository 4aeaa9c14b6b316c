"""Emails telling a person that a sign-in method was added to or removed from their account.

Sent through Django's email framework once the change commits: a file under
``var/mail`` by default, SMTP when configured. A failure to send is logged and
does not undo the change.
"""

from __future__ import annotations

from django.conf import settings

from threshold import clock
from threshold.accounts.models import User
from threshold.accounts.notices import email_after_commit, product
from threshold.audit.actions import Origin
from threshold.core.useragent import describe
from threshold.passkeys.models import Passkey


def notify_method_added(passkey: Passkey, origin: Origin) -> None:
    subject = f"A passkey was added to your {product()} account"
    _notify(passkey.user, passkey.name, origin, "added", subject)


def notify_method_removed(passkey: Passkey, origin: Origin) -> None:
    subject = f"A passkey was removed from your {product()} account"
    _notify(passkey.user, passkey.name, origin, "removed", subject)


def notify_fallback_changed(user: User, origin: Origin, change: str) -> None:
    """The password and authenticator app were ``change`` ("added" or "removed")."""
    where = "to" if change == "added" else "from"
    subject = f"A password and authenticator app were {change} {where} your {product()} account"
    _notify(user, "Password and authenticator app", origin, change, subject)


def _notify(user: User, method: str, origin: Origin, change: str, subject: str) -> None:
    email_after_commit(
        user,
        subject,
        "passkeys/method_changed_email.txt",
        {
            "change": change,
            "method": method,
            "at": clock.now_datetime(),
            "client": describe(origin.user_agent).label if origin.via == "web" else "",
            "ip": origin.ip or "",
            "via": origin.via,
            "settings_url": f"{settings.THRESHOLD.public_url}/settings",
        },
    )
