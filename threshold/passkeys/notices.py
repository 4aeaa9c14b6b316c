"""Emails telling a person that a passkey was added to or removed from their account.

Sent through Django's email framework once the change commits: a file under
``var/mail`` by default, SMTP when configured. A failure to send is logged and
does not undo the change.
"""

from __future__ import annotations

from threshold.accounts.models import User
from threshold.accounts.notices import MethodChange, notify_method_changed, product
from threshold.audit.actions import Origin
from threshold.passkeys.models import Passkey


def notify_method_added(passkey: Passkey, origin: Origin) -> None:
    subject = f"A passkey was added to your {product()} account"
    notify_method_changed(passkey.user, passkey.name, origin, MethodChange.ADDED, subject)


def notify_method_removed(passkey: Passkey, origin: Origin, *, staff: User | None = None) -> None:
    subject = f"A passkey was removed from your {product()} account"
    notify_method_changed(
        passkey.user, passkey.name, origin, MethodChange.REMOVED, subject, staff=staff
    )
