"""The admin portal's audit log filtered by app: the events that name the app by client ID, in
the log's order (at, id), found through the partial index audit_app on both engines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from tests.integration.portal_support import query_plans, staff
from tests.integration.test_portal import _next_link
from threshold.accounts.models import Role
from threshold.audit.actions import Action, Origin, record
from threshold.audit.models import AuditEvent
from threshold.portal.auditlog import PAGE_SIZE, AuditFilters, filtered, page

pytestmark = pytest.mark.django_db

WIKI = "XSt1v3KSzs8MGCP7OrSnf18fckeE6LMkJ53DpZD9"
# Ones a careless query would mix up with it or with each other.
LOOKALIKES = [
    "XSt1v3KSzs8MGCP7OrSnf18fckeE6LMkJ53DpZD",  # the wiki's, one character short
    "xst1v3kszs8mgcp7orsnf18fckee6lmkj53dpzd9",  # in another case
    "XSt1v3KSzs8MGCP7OrSnf18fckeE6LMkJ53DpZD_",  # a LIKE wildcard
    "50%_off",
    'it\'s "quoted"',
    "Ünïcödé-app",
]
AT = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def _event(at: datetime, action: Action, **detail: object) -> AuditEvent:
    return AuditEvent.objects.create(at=at, action=action, detail=detail)


def _log() -> None:
    """Events that name apps (some at the same instant), events that name none, and some that
    hold an "app" elsewhere than the top level of their detail."""
    for n in range(PAGE_SIZE + 12):
        # Three at each instant: the order within one is the id's.
        at = AT - timedelta(minutes=n // 3)
        _event(at, Action.SSO_AUTHORIZED, app=WIKI, scopes=["openid"], acr="phr")
        _event(at, Action.SIGN_IN_SUCCEEDED, method="passkey")
        _event(at, Action.SSO_TOKEN_ISSUED, app=LOOKALIKES[n % len(LOOKALIKES)])
    for value in LOOKALIKES:
        record(Action.SSO_REFUSED, Origin.cli(), reason="not_assigned", app=value)
    record(Action.SSO_TOKEN_REFUSED, Origin.cli(), reason="invalid_request", app="")
    record(Action.SSO_TOKEN_REFUSED, Origin.cli(), reason="invalid_request")
    _event(AT, Action.USER_CREATED, before={"app": WIKI}, after={"apps": [WIKI]})
    _event(AT, Action.SSO_LOGOUT, app=WIKI)


def _naming(app: str) -> list[int]:
    """The events whose detail names ``app``, newest first: what the filter must return."""
    events = AuditEvent.objects.order_by("-at", "-id")
    return [event.pk for event in events if event.detail.get("app") == app]


@pytest.mark.parametrize("app", [WIKI, *LOOKALIKES, "not-an-app"])
def test_the_app_filter_finds_exactly_the_events_that_name_the_app(app):
    _log()
    expected = _naming(app)
    assert list(filtered(AuditFilters(app=app)).values_list("pk", flat=True)) == expected
    # What the filter returned before it had an index of its own (Django's JSON lookup).
    before = AuditEvent.objects.filter(detail__app=app).order_by("-at", "-id")
    assert list(before.values_list("pk", flat=True)) == expected
    # Its pages, one below another, in the log's order (at, id), ties included.
    shown: list[int] = []
    anchor = None
    while True:
        one = page(AuditFilters(app=app), anchor)
        shown += [event.pk for event in one.rows]
        if one.next_before is None:
            break
        anchor = one.next_before
    assert shown == expected


def test_the_app_filter_uses_the_app_index_on_its_first_page_and_below():
    _log()
    _, browser = staff("auditor@example.com", Role.AUDITOR)
    first = query_plans(browser, f"/admin/audit?app={WIKI}", WIKI)
    assert all("audit_app" in plan for plan in first), first
    # Ordered by the index: no sort of the app's events, however many there are.
    assert not any("TEMP B-TREE" in plan or "Sort" in plan for plan in first), first

    deeper = _next_link(browser.get(f"/admin/audit?app={WIKI}").content.decode())
    assert "before=" in deeper
    below = query_plans(browser, deeper, WIKI)
    assert all("audit_app" in plan for plan in below), below
    assert not any("TEMP B-TREE" in plan or "Sort" in plan for plan in below), below


def test_the_app_index_leaves_out_the_events_that_name_no_app():
    # Partial: a sign-in's INSERT (the hot path) does not write to it.
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT sql FROM sqlite_master WHERE name = 'audit_app'")
        else:
            cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'audit_app'")
        row = cursor.fetchone()
    assert row is not None, "no index audit_app"
    assert "IS NOT NULL" in row[0].split(" WHERE ", 1)[1]
