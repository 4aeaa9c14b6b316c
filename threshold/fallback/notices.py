"""Emails telling a person that their password and authenticator app were set up or removed,
or shut after too many wrong codes.

Sent through Django's email framework once the change commits (``threshold.accounts.notices``).
"""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse

from threshold import clock
from threshold.accounts.models import User
from threshold.accounts.notices import (
    MethodChange,
    email_after_commit,
    from_where,
    notify_method_changed,
    product,
)
from threshold.audit.actions import Origin
from threshold.core import throttle


def notify_fallback_changed(
    user: User, origin: Origin, change: MethodChange, *, staff: User | None = None
) -> None:
    """The password and authenticator app were ``change`` (by ``staff``, someone else)."""
    where = "to" if change == MethodChange.ADDED else "from"
    subject = f"A password and authenticator app were {change} {where} your {product()} account"
    notify_method_changed(
        user, "Password and authenticator app", origin, change, subject, staff=staff
    )


def notify_recovery_codes_replaced(user: User, origin: Origin) -> None:
    """New recovery codes replaced the old ones (never the codes themselves in the email)."""
    email_after_commit(
        user,
        f"New recovery codes were made for your {product()} account",
        "fallback/recovery_codes_email.txt",
        {
            "at": clock.now_datetime(),
            **from_where(origin),
            "settings_url": settings.THRESHOLD.public_url + reverse("selfservice:settings"),
        },
    )


def notify_codes_shut(user: User) -> None:
    """The code step was shut after ``throttle.MOST_CODE_FAILURES`` wrong codes in a row:
    whoever sent them had the password."""
    email_after_commit(
        user,
        f"Password sign-in was turned off for your {product()} account",
        "fallback/codes_shut_email.txt",
        {
            "failures": throttle.MOST_CODE_FAILURES,
            "settings_url": settings.THRESHOLD.public_url + reverse("selfservice:settings"),
        },
    )
