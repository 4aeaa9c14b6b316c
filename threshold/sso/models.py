"""Single sign-on: the apps that delegate sign-in to Threshold, and what each sign-in proved.

django-oauth-toolkit (DOT) keeps the protocol's grants and tokens in its own tables; the
application model is ours (``OAUTH2_PROVIDER_APPLICATION_MODEL``) so that an app can ask for
ES256 ID tokens, store its secret as SHA-256, be assigned to groups and name its logout and
initiate-login URIs. ``AppSignIn`` keeps, per code issued, the facts of the Threshold session
it came from (``sid``, ``auth_time``, ``amr``, ``acr``): DOT's grant has none of them, and a
refresh must repeat them unchanged.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import urlsplit

from django.conf import settings
from django.db import models
from django.utils import timezone
from oauth2_provider.models import AbstractApplication
from oauthlib.common import add_params_to_uri

if TYPE_CHECKING:
    from threshold.accounts.models import User
    from threshold.groups.models import Group


# The scope with which a person lets an app stay signed in past their Threshold session
# (OpenID Connect Core §11): always asked first (views.authorize).
OFFLINE_ACCESS = "offline_access"


class Algorithm(models.TextChoices):
    """How an app's ID tokens are signed: RS256 (what discovery requires), or ES256 on request."""

    RS256 = "RS256", "RS256"
    ES256 = "ES256", "ES256"


# RFC 8252 §7.1: a native app's private-use URI scheme, in reverse domain name notation
# ("com.example.app"): at least one period, so never http, https, javascript, data or file.
_PRIVATE_USE_SCHEME = re.compile(r"[a-z][a-z0-9+-]*(?:\.[a-z0-9+-]+)+")


def private_use_scheme(uri: str) -> str | None:
    """The scheme of ``uri`` if it is a private-use one (RFC 8252 §7.1), else None."""
    scheme = uri.split(":", 1)[0] if ":" in uri else ""
    return scheme if _PRIVATE_USE_SCHEME.fullmatch(scheme) else None


class Application(AbstractApplication):
    """An app people sign in to with Threshold (an OpenID Connect relying party)."""

    # DOT's choices list RS256 and HS256 only; ES256 is ours (threshold/sso/keys.py signs).
    # DOT's owner, unused here: no reverse relation (django-stubs cannot resolve DOT's name).
    user: models.ForeignKey[User | None, User | None] = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        related_name="+",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
    )
    algorithm: models.CharField[str, str] = models.CharField(
        max_length=5, choices=Algorithm.choices, default=Algorithm.RS256
    )
    backchannel_logout_uri: models.URLField[str, str] = models.URLField(max_length=2000, blank=True)
    initiate_login_uri: models.URLField[str, str] = models.URLField(max_length=2000, blank=True)
    # First-party apps skip the consent page; an app added with --require-consent shows it.
    require_consent: models.BooleanField[bool, bool] = models.BooleanField(default=False)
    # An app of the organisation's own that may sign people in inside itself, with a passkey
    # ceremony it runs (the Authorization Challenge Endpoint, ``firstparty.py``; OAuth 2.0 for
    # First-Party Applications): an administrator's choice, off by default. Every other app
    # goes through /authorize in a browser.
    first_party: models.BooleanField[bool, bool] = models.BooleanField(default=False)
    # Everyone may use it, or only the members of ``groups``.
    for_everyone: models.BooleanField[bool, bool] = models.BooleanField(default=True)
    groups: models.ManyToManyField[Group, models.Model] = models.ManyToManyField(
        "groups.Group", blank=True, related_name="apps"
    )

    class Meta(AbstractApplication.Meta):
        swappable = "OAUTH2_PROVIDER_APPLICATION_MODEL"
        ordering: ClassVar = ("name",)

    def __str__(self) -> str:
        return str(self.name or self.client_id)

    def get_allowed_schemes(self) -> list[str]:
        """The schemes DOT may redirect this app's browser to: https, http (registration
        allows it on loopback only), and the private-use schemes of its own registered
        redirect URIs (a native app's, RFC 8252 §7.1)."""
        private = {
            scheme
            for uri in self.redirect_uris.split()
            if (scheme := private_use_scheme(uri)) is not None
        }
        return ["https", "http", *sorted(private)]

    def redirect_uri_allowed(self, uri: str) -> bool:
        """DOT's exact match, for a URI whose port can be read: DOT reads the port of a
        loopback URI (RFC 8252 §7.3: any port) with ``urlsplit().port``, which raises for
        one past 65535 or not a number. Such a URI is simply not registered."""
        try:
            urlsplit(uri).port  # noqa: B018 - raises for a port no URI may have
        except ValueError:
            return False
        return bool(super().redirect_uri_allowed(uri))

    @property
    def initiate_login_url(self) -> str:
        """The "My apps" tile's link: the app's initiate-login URI with ``iss``, as OpenID
        Connect Core §4 (Initiating Login from a Third Party) has the provider send it."""
        if not self.initiate_login_uri:
            return ""
        return str(
            add_params_to_uri(self.initiate_login_uri, [("iss", settings.THRESHOLD.public_url)])
        )


class AppSignIn(models.Model):
    """One sign-in to an app: a code, and the refresh token family it becomes.

    Found by the code's SHA-256 (the code itself is never stored here) when it is
    exchanged, then by the refresh token family (``token_family``, chosen with the code), so
    the ID tokens of every refresh carry the same ``auth_time``, ``amr``, ``acr`` and ``sid``.
    A code whose sign-in exists but whose grant is gone was exchanged already: a replay.
    """

    application = models.ForeignKey(
        settings.OAUTH2_PROVIDER_APPLICATION_MODEL,
        on_delete=models.CASCADE,
        related_name="sign_ins",
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="app_sign_ins"
    )
    # The Threshold session's sid (threshold/sso/sessions.py), never its key.
    sid = models.CharField(max_length=64, db_index=True)
    auth_time = models.BigIntegerField()
    amr = models.JSONField(default=list)
    acr = models.CharField(max_length=16, blank=True)
    # NULL, not "", once there is no code: unique allows many NULLs.
    code_hash = models.CharField(max_length=64, null=True, unique=True)  # noqa: DJ001
    token_family = models.UUIDField(null=True, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Whether the authorization request named its redirect_uri: then the code's exchange must
    # name it too (RFC 6749 §4.1.3). Only a plain OAuth request may name none.
    redirect_uri_named = models.BooleanField(default=True)
    # Set when an action (a lock, a sign-out, an app withdrawn) revoked the code before its
    # exchange: presenting it later is refused as revoked, not audited as a stolen code.
    code_revoked = models.BooleanField(default=False)
    # The person let the app stay signed in (the ``offline_access`` scope): its tokens outlive
    # the Threshold session. Without it they end with the session (``actions.end_session_tokens``).
    offline = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"{self.user_id} at {self.application_id}"


class LogoutDelivery(models.Model):
    """A back-channel logout to send (OpenID Connect Back-Channel Logout 1.0), retried with backoff.

    Written in the transaction that ends the Threshold session; sent after it commits, and
    again by ``threshold cleanup`` until it is delivered or given up.
    """

    application = models.ForeignKey(
        settings.OAUTH2_PROVIDER_APPLICATION_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    # The subject as the app knows it (the ``sub`` claim), kept if the person is removed.
    subject = models.CharField(max_length=64)
    sid = models.CharField(max_length=64)
    reason = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    next_attempt_at = models.DateTimeField(default=timezone.now, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    delivered_at = models.DateTimeField(null=True)
    given_up_at = models.DateTimeField(null=True)
    last_error = models.CharField(max_length=200, blank=True)

    def __str__(self) -> str:
        return f"logout of {self.sid} at {self.application_id}"
