"""Emails telling a person that their password and authenticator app were set up or removed.

Sent through Django's email framework once the change commits (``threshold.accounts.notices``).
"""

from __future__ import annotations

from threshold.accounts.models import User
from threshold.accounts.notices import MethodChange, notify_method_changed, product
from threshold.audit.actions import Origin


def notify_fallback_changed(user: User, origin: Origin, change: MethodChange) -> None:
    """The password and authenticator app were ``change``."""
    where = "to" if change == MethodChange.ADDED else "from"
    subject = f"A password and authenticator app were {change} {where} your {product()} account"
    notify_method_changed(user, "Password and authenticator app", origin, change, subject)
