"""A person's sessions, as Settings lists them, and how a session was signed in, in words."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db.models import Q

from threshold import clock
from threshold.accounts.models import User
from threshold.core.useragent import Client, describe
from threshold.sessions.models import Session, held_by_app
from threshold.sessions.store import SignedInWith

# How people read a session's sign-in method (``threshold.sessions.store.SIGN_IN_METHOD``),
# through ``describe_sign_in_method``.
SIGN_IN_METHODS: dict[str, str] = {
    SignedInWith.PASSKEY: "a passkey",
    SignedInWith.PASSWORD_AND_APP: "a password and authenticator app",
    SignedInWith.PASSWORD_AND_RECOVERY_CODE: "a password and recovery code",
    SignedInWith.DEVICE_APP: "Threshold Verify",
}


def describe_sign_in_method(method: str) -> str:
    """How a session was signed in, as every page says it: "a passkey", ..., or "" if unknown."""
    return SIGN_IN_METHODS.get(method, "")


@dataclass(frozen=True)
class ActiveSession:
    is_current: bool
    client: Client  # the browser and system, from the User-Agent at sign-in
    ip: str | None
    sign_in_method: str  # a SIGN_IN_METHODS key
    signed_in_at: datetime
    last_activity: datetime
    # The first-party app that holds it ("" for a browser's): Settings names it instead.
    app_name: str = ""

    @property
    def signed_in_with(self) -> str:
        """ "a passkey", "a password and authenticator app", ..., or ""."""
        return describe_sign_in_method(self.sign_in_method)


def list_active_sessions(user: User, current_session_key: str | None) -> list[ActiveSession]:
    """The person's sessions that have not ended: this one first, then the most recently active.

    A session has ended when it is past its expiry date or past the idle or
    absolute timeout, as ``SessionTimeoutMiddleware`` measures them (its row
    stays until the person's next request or ``threshold cleanup``); one an app holds has
    only the absolute timeout (``delete_timed_out_sessions``).
    """
    now = clock.now()
    rows = (
        Session.objects.filter(
            held_by_app()
            | Q(
                last_activity__gte=datetime.fromtimestamp(
                    now - settings.THRESHOLD_SESSION_IDLE_TIMEOUT, UTC
                )
            ),
            user=user,
            expire_date__gt=datetime.fromtimestamp(now, UTC),
            signed_in_at__gte=datetime.fromtimestamp(now - settings.THRESHOLD_SESSION_MAX_AGE, UTC),
        )
        .defer("session_data")
        .order_by("-last_activity", "-signed_in_at", "session_key")
    )
    sessions = [
        ActiveSession(
            is_current=row.session_key == current_session_key,
            client=describe(row.user_agent),
            ip=row.ip,
            sign_in_method=row.sign_in_method,
            signed_in_at=row.signed_in_at,
            # This request is activity: the row's time is refreshed at most once a
            # minute, and only with the response.
            last_activity=(
                datetime.fromtimestamp(now, UTC)
                if row.session_key == current_session_key
                else row.last_activity
            ),
            app_name=row.app_name,
        )
        for row in rows
        if row.signed_in_at is not None and row.last_activity is not None
    ]
    return sorted(sessions, key=lambda session: not session.is_current)
