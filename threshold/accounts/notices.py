"""Emails to a person about their account, sent once the change that caused them commits.

Through Django's email framework: files under ``var/mail`` by default, SMTP
when configured. A failure to send is logged and does not undo the change.
Many emails in a row (an import of invitations) share one SMTP connection
(``one_connection``): one handshake, TLS and login for the lot.
"""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.core.mail import get_connection, send_mail
from django.core.mail.backends.base import BaseEmailBackend
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse

from threshold import clock
from threshold.accounts.models import User
from threshold.audit.actions import Channel, Origin
from threshold.config import SMTP_EMAIL_BACKEND
from threshold.core.useragent import describe

logger = logging.getLogger(__name__)


# Backends that keep the emails on this machine (``var/mail``, the console): nobody receives them.
_UNDELIVERED = frozenset(
    {
        "django.core.mail.backends.filebased.EmailBackend",
        "django.core.mail.backends.console.EmailBackend",
    }
)


def delivers() -> bool:
    """Whether this server's emails reach people (SMTP is configured), not a file or the
    console: only then does an email prove anything about its recipient."""
    return settings.EMAIL_BACKEND not in _UNDELIVERED


def product() -> str:
    """What the emails call the service: the relying party's name."""
    return settings.THRESHOLD.rp.name


class _SharedConnection:
    """One mail connection for the emails sent inside ``one_connection()``: opened by the
    first of them, replaced after a failure (the server may have dropped it). A mail server
    that fails twice in a row, or at once, is given up on for the rest of the block (a
    message it refuses alone, an unknown recipient, is no failure of the server's): a
    server that never answers costs one timeout (``EMAIL_TIMEOUT``) per file, not one per
    email, and the emails not sent are logged and reported as not sent."""

    def __init__(self) -> None:
        self.backend: BaseEmailBackend | None = None
        self.delivered = False  # an email went since the last failure
        self.given_up = False

    def failed(self) -> None:
        self.given_up = not self.delivered
        self.delivered = False
        self.close()

    def get(self) -> BaseEmailBackend:
        if self.backend is None:
            self.backend = get_connection()
            self.backend.open()
        return self.backend

    def close(self) -> None:
        backend, self.backend = self.backend, None
        if backend is not None:
            try:
                backend.close()
            except Exception:  # a connection that failed closes as it can
                logger.warning("could not close the mail connection", exc_info=True)


# The server refused this one message (an unknown recipient, its content), after which
# smtplib resets the transaction: the connection still serves the others.
_ONE_MESSAGE_REFUSED = (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError)

_shared: ContextVar[_SharedConnection | None] = ContextVar("threshold_mail", default=None)


@contextmanager
def one_connection() -> Iterator[None]:
    """With SMTP, the emails sent in this block (when their transactions commit) share one
    connection, opened only if one is sent and closed at the end. Other backends keep one
    connection per email (the file backend: a file each)."""
    if settings.EMAIL_BACKEND != SMTP_EMAIL_BACKEND:
        yield
        return
    shared = _SharedConnection()
    token = _shared.set(shared)
    try:
        yield
    finally:
        _shared.reset(token)
        shared.close()


def email_after_commit(
    user: User,
    subject: str,
    template: str,
    context: dict[str, Any],
    *,
    on_sent: Callable[[str], object] | None = None,
) -> None:
    """Render ``template`` for ``user`` now; send it if and when the transaction commits.
    ``on_sent(address)`` runs once the email backend took it for delivery (``delivers``): an
    email written to ``var/mail`` or the console reached no one."""
    if not user.email:
        return
    body = render_to_string(template, {"user": user, "product": product(), **context})
    recipient = user.email

    def send() -> None:
        shared = _shared.get()
        if shared is not None and shared.given_up:
            logger.warning("did not send %s to user %s: the mail server failed", template, user.pk)
            return
        try:
            connection = shared.get() if shared is not None else None
            send_mail(subject, body, None, [recipient], connection=connection)
        except Exception as exc:  # the change stands; the log says the mail failed
            if isinstance(exc, smtplib.SMTPException | OSError):
                # The mail server's own words, in one line: no traceback for a refused address.
                logger.error("could not send %s to user %s: %s", template, user.pk, exc)
            else:
                logger.exception("could not send %s to user %s", template, user.pk)
            if shared is not None and not isinstance(exc, _ONE_MESSAGE_REFUSED):
                shared.failed()
            return
        if shared is not None:
            shared.delivered = True
        if on_sent is not None and delivers():
            try:
                on_sent(recipient)
            except Exception:  # the email went; only what it proves is not kept
                logger.exception("could not record %s as sent to user %s", template, user.pk)

    transaction.on_commit(send)


class MethodChange(StrEnum):
    """What happened to a sign-in method, as the email says it."""

    ADDED = "added"
    REMOVED = "removed"


def from_where(origin: Origin) -> dict[str, str]:
    """Where a change came from, as the emails say it: the browser and its IP address (none
    from the command line)."""
    return {
        "client": describe(origin.user_agent).label if origin.via == Channel.WEB else "",
        "ip": origin.ip or "",
    }


def notify_method_changed(
    user: User,
    method: str,
    origin: Origin,
    change: MethodChange,
    subject: str,
    *,
    staff: User | None = None,
) -> None:
    """Tell ``user`` that a sign-in method (``method``, as they know it) was ``change``,
    when, and from which browser or the command line; or by ``staff``, someone else in the
    admin portal (a lost phone), so that the person does not take it for an intruder."""
    email_after_commit(
        user,
        subject,
        "accounts/method_changed_email.txt",
        {
            "change": change,
            "method": method,
            "at": clock.now_datetime(),
            **from_where(origin),
            "via": origin.via,
            "staff": staff.display_name if staff is not None and staff.pk != user.pk else "",
            "settings_url": settings.THRESHOLD.public_url + reverse("selfservice:settings"),
        },
    )
