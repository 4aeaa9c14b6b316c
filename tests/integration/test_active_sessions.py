"""A person's active sessions: listed with browser and IP, and "Sign out other sessions"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext

from tests.integration.conftest import (
    CLIENT_IP,
    ORIGIN,
    SESSION_EXPIRED,
    Browser,
    Person,
    assert_ok,
    begin_sign_in,
    enrolled_person,
    last_event,
    sign_in,
)
from threshold.audit.models import AuditEvent
from threshold.cli.main import main
from threshold.core.assurance import PASSWORD_AND_APP
from threshold.sessions.access import list_active_sessions
from threshold.sessions.actions import sign_in as start_session
from threshold.sessions.models import Session
from threshold.sessions.stepup import VERIFIED_AT
from threshold.sessions.store import (
    SIGN_IN_IP,
    SIGN_IN_METHOD,
    SIGN_IN_USER_AGENT,
    SessionStore,
)

pytestmark = pytest.mark.django_db

CHROME_ON_MACOS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
FIREFOX_ON_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
)
SAFARI_ON_IOS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)
SIGN_OUT_OTHERS = "/settings/sessions/sign-out-others"


def signed_in_browser(person, user_agent: str, ip: str) -> Browser:
    browser = Browser(HTTP_USER_AGENT=user_agent, REMOTE_ADDR=ip)
    assert_ok(sign_in(browser, person.authenticator))
    assert browser.session_key
    return browser


def at(unix_time: float) -> datetime:
    return datetime.fromtimestamp(unix_time, UTC)


def without_enrollment_session(person: Person) -> Person:
    """Enrolling signs the person in; that browser is gone here, and so is its session."""
    Session.objects.filter(user=person.user).delete()
    return person


@pytest.fixture
def ada(ada: Person) -> Person:
    return without_enrollment_session(ada)


@pytest.fixture
def grace(db) -> Person:
    return without_enrollment_session(enrolled_person("grace@example.com", "Grace Hopper"))


# --- Listing -----------------------------------------------------------------------------------


def test_enrolling_starts_a_listed_session(db):
    person = enrolled_person("ada@example.com", "Ada Lovelace")
    [enrolled] = list_active_sessions(person.user, None)
    assert (enrolled.is_current, enrolled.client.label, enrolled.ip) == (
        False,
        "Unknown browser",
        CLIENT_IP,
    )
    assert enrolled.sign_in_method == "passkey"


def test_each_browser_is_listed_with_its_browser_ip_and_sign_in(ada, grace, clock):
    laptop = signed_in_browser(ada, CHROME_ON_MACOS, "198.51.100.20")
    laptop_signed_in = clock.now
    clock.advance(90)
    phone = signed_in_browser(ada, SAFARI_ON_IOS, "2001:db8::7")
    phone_signed_in = clock.now
    signed_in_browser(grace, FIREFOX_ON_WINDOWS, "203.0.113.99")
    anonymous = SessionStore()  # an anonymous session (the fallback's password step) is nobody's
    anonymous["threshold.fallback.user_id"] = grace.user.pk
    anonymous.save()

    clock.advance(10)
    listed = list_active_sessions(ada.user, laptop.session_key)
    assert [(s.is_current, s.client.label, s.ip) for s in listed] == [
        (True, "Chrome on macOS", "198.51.100.20"),
        (False, "Safari on iOS", "2001:db8::7"),
    ]
    this, other = listed
    assert this.sign_in_method == other.sign_in_method == "passkey"
    assert this.signed_in_at.timestamp() == pytest.approx(laptop_signed_in, abs=1e-3)
    assert other.signed_in_at.timestamp() == pytest.approx(phone_signed_in, abs=1e-3)
    assert other.last_activity.timestamp() == pytest.approx(phone_signed_in, abs=1e-3)
    # This session is active now, whatever its row says.
    assert this.last_activity.timestamp() == pytest.approx(clock.now, abs=1e-3)
    assert this.signed_in_at.tzinfo is not None
    assert other.last_activity.tzinfo is not None

    # From the phone, the phone is this session.
    from_phone = list_active_sessions(ada.user, phone.session_key)
    assert [(s.is_current, s.client.label) for s in from_phone] == [
        (True, "Safari on iOS"),
        (False, "Chrome on macOS"),
    ]
    assert [s.client.label for s in list_active_sessions(grace.user, None)] == [
        "Firefox on Windows"
    ]
    assert Session.objects.filter(user=None).count() == 1


def test_other_sessions_are_listed_most_recently_active_first(ada, clock):
    first = signed_in_browser(ada, CHROME_ON_MACOS, "198.51.100.1")
    clock.advance(5)
    second = signed_in_browser(ada, FIREFOX_ON_WINDOWS, "198.51.100.2")
    clock.advance(5)
    current = signed_in_browser(ada, SAFARI_ON_IOS, "198.51.100.3")
    labels = [s.client.label for s in list_active_sessions(ada.user, current.session_key)]
    assert labels == ["Safari on iOS", "Firefox on Windows", "Chrome on macOS"]

    clock.advance(61)
    assert first.is_signed_in()  # activity, recorded at most once a minute
    labels = [s.client.label for s in list_active_sessions(ada.user, current.session_key)]
    assert labels == ["Safari on iOS", "Chrome on macOS", "Firefox on Windows"]
    assert second.session_key


def test_last_activity_follows_the_idle_clock(ada, clock):
    browser = signed_in_browser(ada, CHROME_ON_MACOS, "198.51.100.1")
    signed_in_at = clock.now
    row = Session.objects.get(session_key=browser.session_key)
    assert row.user == ada.user
    assert row.last_activity == row.signed_in_at
    assert row.signed_in_at.timestamp() == pytest.approx(signed_in_at, abs=1e-3)

    clock.advance(30)  # within a minute of the last write: nothing is written
    assert browser.is_signed_in()
    assert Session.objects.get(session_key=browser.session_key).last_activity == row.last_activity

    clock.advance(31)
    assert browser.is_signed_in()
    row = Session.objects.get(session_key=browser.session_key)
    assert row.last_activity.timestamp() == pytest.approx(clock.now, abs=1e-3)
    assert row.signed_in_at.timestamp() == pytest.approx(signed_in_at, abs=1e-3)


def test_sessions_past_the_idle_timeout_are_not_listed(ada, clock):
    idle = django_settings.THRESHOLD_SESSION_IDLE_TIMEOUT
    current = signed_in_browser(ada, CHROME_ON_MACOS, "198.51.100.1")
    signed_in_browser(ada, FIREFOX_ON_WINDOWS, "198.51.100.2")
    clock.advance(idle - 1)
    assert current.is_signed_in()
    assert len(list_active_sessions(ada.user, current.session_key)) == 2

    clock.advance(2)
    listed = list_active_sessions(ada.user, current.session_key)
    assert [s.client.label for s in listed] == ["Chrome on macOS"]
    assert Session.objects.filter(user=ada.user).count() == 2  # until cleanup or its next request


def test_sessions_past_the_absolute_timeout_are_not_listed(ada, clock, settings):
    settings.THRESHOLD_SESSION_MAX_AGE = 3 * 3600
    step = settings.THRESHOLD_SESSION_IDLE_TIMEOUT - 60
    old = signed_in_browser(ada, CHROME_ON_MACOS, "198.51.100.1")
    elapsed = 0
    while elapsed + step < settings.THRESHOLD_SESSION_MAX_AGE:
        clock.advance(step)
        elapsed += step
        assert old.is_signed_in()  # keeps it from going idle
    current = signed_in_browser(ada, FIREFOX_ON_WINDOWS, "198.51.100.2")
    assert len(list_active_sessions(ada.user, current.session_key)) == 2

    clock.advance(settings.THRESHOLD_SESSION_MAX_AGE - elapsed + 1)
    listed = list_active_sessions(ada.user, current.session_key)
    assert [s.client.label for s in listed] == ["Firefox on Windows"]


def test_sessions_past_their_expiry_date_are_not_listed(ada, clock):
    current = signed_in_browser(ada, CHROME_ON_MACOS, "198.51.100.1")
    other = signed_in_browser(ada, FIREFOX_ON_WINDOWS, "198.51.100.2")
    Session.objects.filter(session_key=other.session_key).update(
        expire_date=at(clock.now) - timedelta(seconds=1)
    )
    listed = list_active_sessions(ada.user, current.session_key)
    assert [s.client.label for s in listed] == ["Chrome on macOS"]


# --- What a sign-in stores -----------------------------------------------------------------------


def test_the_user_agent_is_stored_cut_to_512_characters(ada):
    long_agent = CHROME_ON_MACOS + " x" * 400
    browser = signed_in_browser(ada, long_agent, "198.51.100.1")
    row = Session.objects.get(session_key=browser.session_key)
    assert row.user_agent == long_agent[:512]
    assert row.ip == "198.51.100.1"
    assert row.sign_in_method == "passkey"
    [listed] = list_active_sessions(ada.user, browser.session_key)
    assert listed.client.label == "Chrome on macOS"


def test_a_sign_in_with_user_verification_records_when(ada, clock):
    def started(**kwargs) -> SessionStore:
        request = RequestFactory().post(
            "/sign-in/result", REMOTE_ADDR="198.51.100.5", HTTP_USER_AGENT=SAFARI_ON_IOS
        )
        request.session = SessionStore()
        start_session(request, ada.user, PASSWORD_AND_APP, **kwargs)
        return request.session

    verified = started(user_verified=True)
    assert verified[VERIFIED_AT] == clock.now
    assert verified[SIGN_IN_IP] == "198.51.100.5"
    assert verified[SIGN_IN_USER_AGENT] == SAFARI_ON_IOS
    assert verified[SIGN_IN_METHOD] == "passkey"
    assert VERIFIED_AT not in started()
    assert started(method="password")[SIGN_IN_METHOD] == "password"

    verified.save()
    row = Session.objects.get(session_key=verified.session_key)
    assert (row.user, row.ip, row.sign_in_method) == (ada.user, "198.51.100.5", "passkey")


def test_sessions_cost_no_extra_statement_at_sign_in(ada):
    browser = Browser()
    table = Session._meta.db_table

    def session_statements(queries) -> list[str]:
        # The session's INSERT: its own statement on SQLite, part of the sign-in's one
        # write statement on PostgreSQL (passkeys/hotpath.record_sign_in).
        return [
            "INSERT" if f'INSERT INTO "{table}"' in q["sql"] else q["sql"].split()[0]
            for q in queries.captured_queries
            if table in q["sql"]
        ]

    with CaptureQueriesContext(connection) as options_queries:
        options = begin_sign_in(browser)
    with CaptureQueriesContext(connection) as result_queries:
        assert_ok(browser.post_json("/sign-in/result", ada.authenticator.get(options, ORIGIN)))
    # The options need no session (the browser keeps the ceremony); the signed-in
    # session is inserted once, with the response.
    assert session_statements(options_queries) == []
    assert session_statements(result_queries) == ["INSERT"]


# --- Signing out the other sessions --------------------------------------------------------------


def test_sign_out_other_sessions_ends_only_the_others(ada, grace, clock):
    current = signed_in_browser(ada, CHROME_ON_MACOS, "198.51.100.1")
    phone = signed_in_browser(ada, SAFARI_ON_IOS, "198.51.100.2")
    desktop = signed_in_browser(ada, FIREFOX_ON_WINDOWS, "198.51.100.3")
    graces = signed_in_browser(grace, FIREFOX_ON_WINDOWS, "203.0.113.99")
    key = current.session_key

    response = current.post_form(SIGN_OUT_OTHERS)
    assert response.status_code == 303
    assert response["Location"] == "/settings?done=sessions-ended"

    for ended in (phone, desktop):
        page = ended.get("/")
        assert page.status_code == 302
        assert page["Location"].startswith("/sign-in")
    assert current.is_signed_in()
    assert current.session_key == key
    assert graces.is_signed_in()
    assert [s.is_current for s in list_active_sessions(ada.user, key)] == [True]
    assert len(list_active_sessions(grace.user, graces.session_key)) == 1

    event = last_event("sessions.ended")
    assert event.actor == ada.user
    assert event.subject == ada.user
    assert event.detail == {"count": 2}
    assert event.ip == "198.51.100.1"
    assert AuditEvent.objects.filter(action="sessions.ended").count() == 1


def test_sign_out_other_sessions_with_no_others_ends_nothing(ada):
    current = signed_in_browser(ada, CHROME_ON_MACOS, "198.51.100.1")
    response = current.post_form(SIGN_OUT_OTHERS)
    assert response.status_code == 303
    assert current.is_signed_in()
    assert last_event("sessions.ended").detail == {"count": 0}


def test_sign_out_other_sessions_needs_a_post(ada):
    current = signed_in_browser(ada, CHROME_ON_MACOS, "198.51.100.1")
    other = signed_in_browser(ada, FIREFOX_ON_WINDOWS, "198.51.100.2")
    assert current.get(SIGN_OUT_OTHERS).status_code == 405
    assert other.is_signed_in()
    assert not AuditEvent.objects.filter(action="sessions.ended").exists()


def test_sign_out_other_sessions_needs_the_csrf_token(ada):
    current = signed_in_browser(ada, CHROME_ON_MACOS, "198.51.100.1")
    other = signed_in_browser(ada, FIREFOX_ON_WINDOWS, "198.51.100.2")
    response = current.client.post(SIGN_OUT_OTHERS, {})
    assert response.status_code == 403
    assert SESSION_EXPIRED in response.content.decode()
    assert other.is_signed_in()
    assert not AuditEvent.objects.filter(action="sessions.ended").exists()


def test_sign_out_other_sessions_needs_a_signed_in_person(ada):
    other = signed_in_browser(ada, FIREFOX_ON_WINDOWS, "198.51.100.2")
    anonymous = Browser()
    response = anonymous.post_form(SIGN_OUT_OTHERS)
    # See Other, and back to Settings, whose form it is (the address takes only POST).
    assert response.status_code == 303
    assert response["Location"] == "/sign-in?next=/settings"
    assert other.is_signed_in()
    assert not AuditEvent.objects.filter(action="sessions.ended").exists()


# --- Cleanup and the partial ---------------------------------------------------------------------


def test_cleanup_removes_expired_sessions(ada, clock, capsys):
    live = signed_in_browser(ada, CHROME_ON_MACOS, "198.51.100.1")
    expired = signed_in_browser(ada, FIREFOX_ON_WINDOWS, "198.51.100.2")
    anonymous = SessionStore()  # the fallback's password step keeps one
    anonymous["threshold.fallback.user_id"] = ada.user.pk
    anonymous.save()
    past = datetime.now(UTC) - timedelta(seconds=1)
    Session.objects.filter(session_key__in=[expired.session_key, anonymous.session_key]).update(
        expire_date=past
    )

    assert main(["cleanup"]) == 0
    assert "Removed" in capsys.readouterr().out
    assert list(Session.objects.values_list("session_key", flat=True)) == [live.session_key]
    assert live.is_signed_in()


def test_settings_lists_the_sessions_and_offers_to_sign_out_the_others(ada):
    current = signed_in_browser(ada, CHROME_ON_MACOS, "198.51.100.1")

    alone = current.get("/settings").content.decode()
    alone = alone[alone.index('id="sessions"') :]
    assert "Active sessions" in alone
    assert "Chrome on macOS" in alone
    assert alone.count('class="badge">This session<') == 1
    assert "198.51.100.1" in alone
    assert "with a passkey" in alone
    assert "Sign out other sessions" not in alone

    signed_in_browser(ada, FIREFOX_ON_WINDOWS, "2001:db8::7")
    both = current.get("/settings").content.decode()
    both = both[both.index('id="sessions"') :]
    assert both.index("Chrome on macOS") < both.index("Firefox on Windows")
    assert both.count("This session") == 1
    assert "2001:db8::7" in both
    assert f'<form method="post" action="{SIGN_OUT_OTHERS}">' in both
    assert 'name="csrfmiddlewaretoken"' in both
    assert "Sign out other sessions</button>" in both
