"""Back-channel logout (OpenID Connect Back-Channel Logout 1.0): telling apps a session ended.

When a Threshold session ends — sign-out, a timeout, a lock, a recovery, "Sign out other
sessions", ``threshold cleanup`` — each app signed in to from it that has a
``backchannel_logout_uri`` gets a signed ``logout_token`` with the session's ``sid``; so does
an app a person stops being assigned (taken out of its group, the group removed, the app
assigned to other groups), for each session they signed in to it from. The
deliveries are rows (``LogoutDelivery``, an outbox) written in the transaction that ends the
session, so none is lost if the process dies; they are sent once it commits (a short-lived
thread, so the person's sign-out does not wait for the apps), and any that failed are retried
with a doubling delay by the next delivery run and by ``threshold cleanup``. Each outcome is
audited.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from datetime import timedelta
from functools import partial
from typing import Any

import requests
from django.conf import settings
from django.db import connections, transaction
from django.db.models import Q
from django.utils import timezone
from jwcrypto import jwt

from threshold import clock
from threshold.audit.actions import Action, Channel, Origin, record
from threshold.sso import keys
from threshold.sso.models import Application, AppSignIn, LogoutDelivery
from threshold.sso.sessions import subject_of
from threshold.sso.validator import lock_apps

log = logging.getLogger(__name__)

EVENT = "http://schemas.openid.net/event/backchannel-logout"
TIMEOUT_SECONDS = 5
MAX_ATTEMPTS = 6
FIRST_RETRY_SECONDS = 30
TOKEN_LIFETIME_SECONDS = 120
BATCH = 50


def enqueue(user: Any, sid: str, reason: str, *, application: Application | None = None) -> int:
    """Write a delivery for every app (or for ``application`` only) signed in to from session
    ``sid``; sent after commit. The apps' rows are held first, FOR KEY SHARE (the lock order:
    ``validator.lock_apps``), in the statement that finds them: an app being removed is waited
    for, then has none."""
    pending = LogoutDelivery.objects.filter(sid=sid, delivered_at=None, given_up_at=None)
    applications = Application.objects.filter(
        pk__in=AppSignIn.objects.filter(sid=sid, user=user).values("application_id")
    )
    if application is not None:
        applications = applications.filter(pk=application.pk)
    app_ids = lock_apps(
        applications.exclude(backchannel_logout_uri="")
        # Told already (a removal tells before the sessions go): once per app and session.
        .exclude(pk__in=pending.values("application_id"))
    )
    subject = subject_of(user)
    deliveries = [
        LogoutDelivery(application_id=app_id, subject=subject, sid=sid, reason=reason)
        for app_id in app_ids
    ]
    if not deliveries:
        return 0
    LogoutDelivery.objects.bulk_create(deliveries)
    # Decided now, in the command's or the request's context, not in whatever runs the commit.
    transaction.on_commit(partial(deliver_soon, command_line=_COMMAND_LINE.get()))
    return len(deliveries)


def logout_token(application: Application, subject: str, sid: str) -> str:
    now = int(clock.now())
    key = keys.active_key(application.algorithm)
    token = jwt.JWT(
        header={"typ": "logout+jwt", "alg": key.alg, "kid": key.kid},
        claims=json.dumps(
            {
                "iss": settings.THRESHOLD.public_url,
                "aud": application.client_id,
                "iat": now,
                "exp": now + TOKEN_LIFETIME_SECONDS,
                "jti": str(uuid.uuid4()),
                "sub": subject,
                "sid": sid,
                "events": {EVENT: {}},
            }
        ),
    )
    token.make_signed_token(key.key)
    return str(token.serialize())


# Where deliveries are audited from, and whether they are sent in the caller's thread: a
# `threshold` command (``from_command_line``) sends them before it exits; a web request from a
# thread, so that the person's sign-out does not wait for the apps.
_COMMAND_LINE: ContextVar[bool] = ContextVar("threshold_sso_command_line", default=False)


@contextmanager
def from_command_line() -> Iterator[None]:
    """While a `threshold` command runs: deliver inline, audit as cli."""
    token = _COMMAND_LINE.set(True)
    try:
        yield
    finally:
        _COMMAND_LINE.reset(token)


def _channel() -> Channel:
    return Channel.CLI if _COMMAND_LINE.get() else Channel.WEB


def deliver_soon(*, command_line: bool = False) -> None:
    """After the commit that wrote deliveries: send them without holding up the response."""
    if command_line or getattr(settings, "THRESHOLD_SSO_DELIVER_INLINE", False):
        with from_command_line() if command_line else nullcontext():
            deliver_due()
        return
    # Not a daemon: a process that ends (a worker recycled) sends what it started first.
    thread = threading.Thread(target=_deliver_in_thread, name="threshold-logout")
    thread.start()


def _deliver_in_thread() -> None:
    try:
        deliver_due()
    except Exception:
        log.exception("back-channel logout delivery failed")
    finally:
        # The thread's own connection: a persistent one would outlive the thread.
        connections.close_all()


def deliver_due() -> int:
    """Send every delivery that is due; returns how many were delivered."""
    now = timezone.now()
    due = list(
        LogoutDelivery.objects.filter(
            delivered_at=None, given_up_at=None, next_attempt_at__lte=now
        ).select_related("application")[:BATCH]
    )
    delivered = 0
    for delivery in due:
        # Claim it: of two processes delivering at once, one sends it.
        claimed = LogoutDelivery.objects.filter(
            pk=delivery.pk, next_attempt_at=delivery.next_attempt_at, delivered_at=None
        ).update(next_attempt_at=now + timedelta(seconds=TIMEOUT_SECONDS * 4))
        if claimed:
            delivered += _attempt(delivery)
    return delivered


def _attempt(delivery: LogoutDelivery) -> int:
    application = delivery.application
    error = ""
    try:
        response = requests.post(
            application.backchannel_logout_uri,
            data={"logout_token": logout_token(application, delivery.subject, delivery.sid)},
            timeout=TIMEOUT_SECONDS,
            allow_redirects=False,
        )
        if response.status_code not in (200, 204):
            error = f"HTTP {response.status_code}"
    except requests.RequestException as exc:
        error = type(exc).__name__
    now = timezone.now()
    attempts = delivery.attempts + 1
    with transaction.atomic():
        if not error:
            LogoutDelivery.objects.filter(pk=delivery.pk).update(
                delivered_at=now, attempts=attempts, last_error=""
            )
            record(
                Action.SSO_BACKCHANNEL_LOGOUT_SENT,
                Origin(via=_channel()),
                reason=delivery.reason,
                app=application.client_id,
                sub=delivery.subject,  # the person, as the app knows them (kept if removed)
                attempts=attempts,
            )
            return 1
        given_up = attempts >= MAX_ATTEMPTS
        LogoutDelivery.objects.filter(pk=delivery.pk).update(
            attempts=attempts,
            last_error=error[:200],
            next_attempt_at=now + timedelta(seconds=FIRST_RETRY_SECONDS * 2 ** (attempts - 1)),
            given_up_at=now if given_up else None,
        )
        record(
            Action.SSO_BACKCHANNEL_LOGOUT_FAILED,
            Origin(via=_channel()),
            reason="given_up" if given_up else "will_retry",
            app=application.client_id,
            sub=delivery.subject,
            attempts=attempts,
            error=error[:200],
        )
    return 0


def delete_finished(days: int = 30) -> int:
    """Forget deliveries delivered or given up more than ``days`` ago."""
    before = timezone.now() - timedelta(days=days)
    count, _ = LogoutDelivery.objects.filter(
        Q(delivered_at__lt=before) | Q(given_up_at__lt=before)
    ).delete()
    return count


def name_the_reason(user: Any, reason: str) -> None:
    """The session ends just written for ``user`` (still unsent) were a lock, a recovery, ...:
    say so in their audit rows instead of ``session_ended``. Their apps' rows are held first
    (the lock order: ``validator.lock_apps``): the tokens revoked next hold them too."""
    unsent = LogoutDelivery.objects.filter(
        subject=subject_of(user), reason="session_ended", attempts=0, delivered_at=None
    )
    lock_apps(Application.objects.filter(pk__in=unsent.values("application_id")))
    unsent.update(reason=reason)


RETRY_INTERVAL_SECONDS = 60


def retry_logouts(interval: float = RETRY_INTERVAL_SECONDS) -> threading.Event:
    """In each server worker: send the deliveries that have come due, about once a minute.

    Retries are due no sooner than 30 s after a failure; the claim in ``deliver_due`` keeps
    two workers from sending one delivery twice. Started by ``threshold serve`` (no daemon of
    its own: it lives and dies with the worker). Returns the event that stops it.
    """
    stop = threading.Event()

    def loop() -> None:
        # Spread the workers out: each polls at its own moment.
        while not stop.wait(interval + secrets.randbelow(max(1, int(interval)))):
            _deliver_in_thread()

    threading.Thread(target=loop, name="threshold-logout-retry", daemon=True).start()
    return stop
