"""Sessions: Django's database sessions, with columns for the person, browser and IP."""

from __future__ import annotations

from django.conf import settings
from django.contrib.sessions.base_session import AbstractBaseSession
from django.db import models
from django.db.models import Q


class Session(AbstractBaseSession):
    """One browser's session; the extra columns repeat what its data says, to list them by person.

    ``threshold.sessions.store.SessionStore`` fills them on every save, so they are
    never newer or older than the session data itself. Anonymous sessions (a
    ceremony in progress) have only the key, data and expiry.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        db_index=True,
        on_delete=models.CASCADE,
        related_name="sessions",
    )
    ip = models.GenericIPAddressField(null=True)
    user_agent = models.CharField(max_length=512, blank=True)
    sign_in_method = models.CharField(max_length=32, blank=True)
    signed_in_at = models.DateTimeField(null=True)
    last_activity = models.DateTimeField(null=True)
    # The first-party app that holds this session (its name when it signed in: Settings' label),
    # for one an app signed in to inside itself (threshold/sso/firstparty.py): no browser has
    # its cookie. ``app_client_id`` names the app stably (its name may change): what the app's
    # own logout and "Sign out of this app" end (threshold/sso/actions.py). Such a session
    # ends at the absolute timeout, not the idle one: the app's refreshes are its use, and
    # Threshold's session never sees them (``held_by_app``).
    app_name = models.CharField(max_length=100, blank=True, default="")
    app_client_id = models.CharField(max_length=100, blank=True, default="")

    class Meta:
        verbose_name = "session"
        verbose_name_plural = "sessions"
        # The table of the app the model was born in (threshold.web): moving the
        # model moved no data (migrations/0001_initial.py).
        db_table = "web_session"

    @classmethod
    def get_session_store_class(cls) -> type:
        from threshold.sessions.store import SessionStore  # noqa: PLC0415 - store imports this

        return SessionStore


def held_by_app() -> Q:
    """The sessions a first-party app holds (``Session.app_name``, ``app_client_id``)."""
    return ~Q(app_name="") | ~Q(app_client_id="")
