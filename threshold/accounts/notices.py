"""Emails to a person about their account, sent once the change that caused them commits.

Through Django's email framework: files under ``var/mail`` by default, SMTP
when configured. A failure to send is logged and does not undo the change.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse

from threshold import clock
from threshold.accounts.models import User
from threshold.audit.actions import Channel, Origin
from threshold.core.useragent import describe

logger = logging.getLogger(__name__)


def product() -> str:
    """What the emails call the service: the relying party's name."""
    return settings.THRESHOLD.rp.name


def email_after_commit(user: User, subject: str, template: str, context: dict[str, Any]) -> None:
    """Render ``template`` for ``user`` now; send it if and when the transaction commits."""
    if not user.email:
        return
    body = render_to_string(template, {"user": user, "product": product(), **context})
    recipient = user.email

    def send() -> None:
        try:
            send_mail(subject, body, None, [recipient])
        except Exception:  # the change stands; the log says the mail failed
            logger.exception("could not send %s to user %s", template, user.pk)

    transaction.on_commit(send)


class MethodChange(StrEnum):
    """What happened to a sign-in method, as the email says it."""

    ADDED = "added"
    REMOVED = "removed"


def notify_method_changed(
    user: User, method: str, origin: Origin, change: MethodChange, subject: str
) -> None:
    """Tell ``user`` that a sign-in method (``method``, as they know it) was ``change``,
    when, and from which browser or the command line."""
    email_after_commit(
        user,
        subject,
        "accounts/method_changed_email.txt",
        {
            "change": change,
            "method": method,
            "at": clock.now_datetime(),
            "client": describe(origin.user_agent).label if origin.via == Channel.WEB else "",
            "ip": origin.ip or "",
            "via": origin.via,
            "settings_url": settings.THRESHOLD.public_url + reverse("selfservice:settings"),
        },
    )
