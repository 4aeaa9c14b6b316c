"""Integration tests: real URLs through Django's test client, a real database.

Nothing is mocked but the clock (``threshold.clock.now``). The software
authenticator in ``tests/support/authenticator.py`` signs real responses, so
every ceremony runs the full verification in ``threshold.core``.

The same files run against SQLite and PostgreSQL (``DATABASE_URL``): only
portable ORM behaviour here, and binary columns are read through ``bytes()``
(PostgreSQL hands back ``memoryview``).
"""

from __future__ import annotations

import json
import re
import time
import weakref
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.signals import setting_changed
from django.test import Client
from django.test.client import ClientHandler
from django.test.utils import override_settings

import threshold.clock
from tests.support import recorded
from tests.support.authenticator import SoftAuthenticator
from tests.support.hashers import LowestCostArgon2idHasher
from threshold.accounts.models import User
from threshold.audit import capped
from threshold.audit.actions import Origin
from threshold.audit.models import AuditEvent
from threshold.enrollment.actions import do_invite
from threshold.enrollment.models import EnrollmentInvite
from threshold.passkeys.decoys import forget_distribution
from threshold.passkeys.hotpath import forget_policy
from threshold.passkeys.limits import SIGN_IN_OPTIONS_LIMIT
from threshold.passkeys.models import Passkey
from threshold.sessions import flow

ORIGIN = "http://localhost:8000"
SESSION_COOKIE = "threshold_session"
CSRF_COOKIE = "threshold_csrf"
CEREMONY_COOKIE_PREFIX = "threshold_ceremony_"
USER_AGENT = "Mozilla/5.0 (threshold integration tests)"
CLIENT_IP = "203.0.113.7"

# What the catalog shows for each public category (threshold/core/catalog.py).
SESSION_EXPIRED = "Session Expired"
VERIFICATION_FAILED = "Verification failed"
REGISTRATION_FAILED = "Failed to register the device for passkey"
NOT_VERIFIED = "We could not verify you"
INVITE_UNUSABLE = "This link can\u2019t be used"
LIMIT_REACHED = "Passkey Limit Reached"
ALREADY_REGISTERED = "Passkey already registered for this device"


# --- The clock ---------------------------------------------------------------------------


class FrozenClock:
    """``threshold.clock.now`` pinned to a value the test moves forward."""

    def __init__(self, start: float) -> None:
        self.now = start

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    frozen = FrozenClock(time.time())
    monkeypatch.setattr(threshold.clock, "now", lambda: frozen.now)
    return frozen


# --- Passwords ------------------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _lowest_cost_password_hashing():
    """Passwords hashed with Argon2id at its lowest cost (tests/support/hashers.py): the same
    code path at a small fraction of the CPU. Servers these tests start hash at production's."""
    with override_settings(
        PASSWORD_HASHERS=[
            f"{LowestCostArgon2idHasher.__module__}.{LowestCostArgon2idHasher.__qualname__}"
        ]
    ):
        yield


# --- Static files ---------------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _static_files():
    """What `threshold serve` does at start-up: pages name the collected, content-hashed files."""
    call_command("collectstatic", interactive=False, verbosity=0)


# --- Memory a worker keeps across requests ------------------------------------------------------


@pytest.fixture(autouse=True)
def _fresh_worker_memory():
    """Each test starts as a fresh worker would: no options rate counted, no refusals' audit
    rows counted, no decoy distribution, no policy read."""
    SIGN_IN_OPTIONS_LIMIT.clear()
    capped.clear()
    forget_distribution()
    forget_policy()


# --- An app's back-channel logout endpoint -------------------------------------------------------


@pytest.fixture
def receiver(settings):
    """An app's back-channel logout endpoint on loopback (test_sso.py's ``LogoutReceiver``), with
    the logout tokens sent inline once the change commits."""
    from tests.integration.test_sso import LogoutReceiver  # noqa: PLC0415 - test_sso imports us

    settings.THRESHOLD_SSO_DELIVER_INLINE = True
    server = LogoutReceiver()
    yield server
    server.close()


# --- A browser -------------------------------------------------------------------------------


# The options requests of the pages that are dated (threshold/sessions/flow.py), by their flow.
FLOW_OPTIONS = {
    "/sign-in/options": flow.Flow.SIGN_IN,
    "/settings/verify/options": flow.Flow.STEP_UP,
    "/settings/security-methods/add/options": flow.Flow.ADD,
}


# The handlers of the test clients, by whether they enforce CSRF checks: one per process, as a
# server has one, not one per client (loading the middleware, WhiteNoise's scan of the static
# files included, cost 11 ms a client). A change of settings (the ``settings`` fixture,
# ``override_settings``) drops them: the next client loads the middleware under the new ones.
_handlers: dict[bool, ClientHandler] = {}


def _forget_handlers(**_: Any) -> None:
    _handlers.clear()


setting_changed.connect(_forget_handlers, dispatch_uid="tests.integration.conftest.handlers")


class PageClient(Client):
    """Django's test client, sending the flow token of a page just loaded, as webauthn.js does.

    Each options request of a dated flow gets a token issued now (on the test's
    clock) unless the test passes its own X-Threshold-Flow header.
    """

    def __init__(self, enforce_csrf_checks: bool = False, **defaults: Any) -> None:
        super().__init__(enforce_csrf_checks, **defaults)
        self.handler = _handlers.setdefault(enforce_csrf_checks, self.handler)

    def generic(self, method: str, path: str, *args: Any, **extra: Any):
        route = urlsplit(str(path)).path
        kind = FLOW_OPTIONS.get(route)
        if kind is None and re.fullmatch(r"/enroll/[^/]+/options", route):
            kind = flow.Flow.ENROLLMENT
        if kind is not None:
            extra.setdefault(flow.META_KEY, flow.issue_flow_token(kind))
        return super().generic(method, path, *args, **extra)


class Browser:
    """A person's browser: enforces CSRF and sends the tokens the way webauthn.js does."""

    def __init__(self, *, enforce_csrf_checks: bool = True, **defaults: Any) -> None:
        defaults.setdefault("HTTP_USER_AGENT", USER_AGENT)
        defaults.setdefault("REMOTE_ADDR", CLIENT_IP)
        self.client = PageClient(enforce_csrf_checks=enforce_csrf_checks, **defaults)

    def get(self, path: str, **extra: Any):
        return self.client.get(path, **extra)

    def csrf_token(self) -> str:
        if CSRF_COOKIE not in self.client.cookies:
            # The sign-out page renders a token whether or not anyone is signed in.
            self.client.get("/sign-out")
        return self.client.cookies[CSRF_COOKIE].value

    def post_json(self, path: str, data: Any = None, *, raw: bytes | None = None, **extra: Any):
        body = raw if raw is not None else json.dumps({} if data is None else data)
        extra.setdefault("HTTP_X_CSRFTOKEN", self.csrf_token())
        return self.client.post(
            path, body, content_type="application/json", HTTP_ACCEPT="application/json", **extra
        )

    def post_form(self, path: str, **extra: Any):
        return self.client.post(path, {"csrfmiddlewaretoken": self.csrf_token()}, **extra)

    @property
    def ceremonies(self) -> set[str]:
        """The kinds of ceremony this browser holds a token for (threshold/passkeys/pending.py)."""
        return {
            name.removeprefix(CEREMONY_COOKIE_PREFIX)
            for name, cookie in self.client.cookies.items()
            if name.startswith(CEREMONY_COOKIE_PREFIX) and cookie.value
        }

    @property
    def session_key(self) -> str | None:
        cookie = self.client.cookies.get(SESSION_COOKIE)
        return cookie.value if cookie is not None and cookie.value else None

    def is_signed_in(self) -> bool:
        response = self.client.get("/")
        assert response.status_code in (200, 302), response.status_code
        return response.status_code == 200


@pytest.fixture
def browser() -> Browser:
    return Browser()


# --- Invites and ceremonies ------------------------------------------------------------------


def token_of(link: str) -> str:
    return link.rsplit("/", 1)[1]


def invite(username: str = "ada@example.com", full_name: str = "Ada Lovelace", **kwargs: Any):
    """A fresh invite (no email): returns (CreatedInvite, token)."""
    kwargs.setdefault("send_email", False)
    created = do_invite(username, Origin.cli(), full_name=full_name, **kwargs)
    return created, token_of(created.link)


def enroll(browser: Browser, token: str, authenticator: SoftAuthenticator, **create: Any):
    """Options, the authenticator's answer, the result: returns the result response."""
    options = browser.post_json(f"/enroll/{token}/options")
    assert options.status_code == 200, options.content
    credential = authenticator.create(options.json()["publicKey"], ORIGIN, **create)
    return browser.post_json(f"/enroll/{token}/result", credential)


def begin_sign_in(browser: Browser, username: str | None = None) -> dict[str, Any]:
    response = browser.post_json(
        "/sign-in/options", {} if username is None else {"username": username}
    )
    assert response.status_code == 200, response.content
    return response.json()["publicKey"]


def sign_in(
    browser: Browser,
    authenticator: SoftAuthenticator,
    username: str | None = None,
    *,
    origin: str = ORIGIN,
    **get: Any,
):
    options = begin_sign_in(browser, username)
    return browser.post_json("/sign-in/result", authenticator.get(options, origin, **get))


@dataclass
class Person:
    user: User
    authenticator: SoftAuthenticator
    invite: EnrollmentInvite

    @property
    def passkey(self) -> Passkey:
        return Passkey.objects.get(user=self.user)


@dataclass(frozen=True)
class _Enrollment:
    """A real enrollment into an empty database, as ``recorded.capture`` recorded it."""

    tables: tuple[recorded.Table, ...]
    authenticator: SoftAuthenticator  # as it was once enrolled; each replay gets a copy
    user_pk: int
    invite_pk: int
    at: float  # threshold.clock.now() as it ended


# By the settings they were made under, then (username, full name, the authenticator's
# arguments). A change of settings (``override_settings``, the ``settings`` fixture) puts a new
# holder in ``settings._wrapped`` and the old one back when it ends: recordings are used under
# the same settings only, and forgotten with a test's own.
_enrollments: weakref.WeakKeyDictionary[object, dict[tuple[Any, ...], _Enrollment]] = (
    weakref.WeakKeyDictionary()
)


def _recordings() -> dict[tuple[Any, ...], _Enrollment]:
    return _enrollments.setdefault(django_settings._wrapped, {})


def _fresh_copy(soft: SoftAuthenticator) -> SoftAuthenticator:
    return replace(soft, credentials=[replace(credential) for credential in soft.credentials])


def _clock_is_the_walls() -> bool:
    """Whether the test's clock is within a minute of the real one. Some columns are dated by
    Django's clock, others by threshold.clock's: only rows written with both near each other
    are recorded, and replayed only then, so that both stay near their clock's now."""
    return abs(threshold.clock.now() - time.time()) < 60


def _replayed(key: tuple[Any, ...]) -> Person | None:
    """The person of a recorded enrollment, written again (tests/support/recorded.py), or None
    to enroll for real."""
    enrollment = _recordings().get(key)
    if enrollment is None:
        return None
    moved = threshold.clock.now() - enrollment.at
    if abs(moved) > 3600 or not _clock_is_the_walls() or not recorded.is_empty():
        return None
    try:
        written = recorded.replay(enrollment.tables, timedelta(seconds=moved))
    except recorded.IntegrityError:
        return None
    (user,) = (row for row in written[User] if row.pk == enrollment.user_pk)
    (invite_row,) = (row for row in written[EnrollmentInvite] if row.pk == enrollment.invite_pk)
    return Person(user, _fresh_copy(enrollment.authenticator), invite_row)


def enrolled_person(username: str, full_name: str, **authenticator: Any) -> Person:
    """``username`` enrolled from a fresh invite link with a software passkey.

    The first such enrollment into an empty database in a process is real and recorded; the
    same one into an empty database again writes the recorded rows (tests/support/recorded.py).
    Tests of enrollment itself call ``invite`` and ``enroll``."""
    key = (username, full_name, *sorted(authenticator.items()))
    person = _replayed(key)
    if person is not None:
        return person
    empty = key not in _recordings() and _clock_is_the_walls() and recorded.is_empty()
    created, token = invite(username, full_name)
    soft = SoftAuthenticator(**authenticator)
    response = enroll(Browser(), token, soft)
    assert response.status_code == 200, response.content
    if empty:
        _recordings()[key] = _Enrollment(
            recorded.capture(),
            _fresh_copy(soft),
            created.user.pk,
            created.invite.pk,
            # Taken once it ended: replayed, its rows are as old as a real enrollment's just
            # ended, never newer than what the test writes next.
            threshold.clock.now(),
        )
    return Person(created.user, soft, created.invite)


@pytest.fixture
def ada(db) -> Person:
    """Ada, enrolled from her invite link with one passkey; her enrollment browser is gone."""
    return enrolled_person("ada@example.com", "Ada Lovelace")


# --- Checking answers --------------------------------------------------------------------------


def assert_failed(response, status: int, title: str) -> dict[str, Any]:
    """A failed ceremony in the catalog's words: JSON, status "failed", the entry's title."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["status"] == "failed"
    assert body["errorMessage"].startswith(f"{title}: ")
    assert body["error"]["title"] == title
    assert body["error"]["message"]
    assert body["error"]["code"]
    return body


def assert_ok(response) -> dict[str, Any]:
    assert response.status_code == 200, (response.status_code, response.content[:500])
    body = response.json()
    assert body["status"] == "ok"
    assert body["errorMessage"] == ""
    return body


def audit_trail() -> list[tuple[str, str]]:
    """(action, reason) of every audit event, oldest first."""
    return list(AuditEvent.objects.order_by("id").values_list("action", "reason"))


def last_event(action: str) -> AuditEvent:
    event = AuditEvent.objects.filter(action=action).order_by("-id").first()
    assert event is not None, f"no {action} event in {audit_trail()}"
    return event


def without_csrf(html: bytes) -> str:
    """The page with its per-request CSRF tokens blanked, to compare pages."""
    text = html.decode()
    text = re.sub(r'data-csrf="[^"]*"', 'data-csrf=""', text)
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', 'name="csrfmiddlewaretoken"', text)
