"""The audit log as the portal shows and exports it: filters, keyset pages, explanations.

Pages are keyset-paginated on (``at``, ``id``), newest first: the next page starts
below the last row shown, never at an OFFSET, so the millionth row costs what the
first does. An export streams every matching row (CSV or JSON) in chunks.
"""

from __future__ import annotations

import csv
import ipaddress
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from functools import cache
from typing import Any

from django.db.models import Q, QuerySet

from threshold.accounts.models import User, normalize_username
from threshold.audit.actions import FAILURES, Action, is_failure
from threshold.audit.models import AppOf, AuditEvent
from threshold.core import catalog, errors, spreadsheet
from threshold.core.catalog import Surface
from threshold.core.names import has_ascii_control

PAGE_SIZE = 50
_TEXT_MAX = 150
OUTCOMES = {"success": "Succeeded", "failure": "Failed"}


_NAMES = (
    "person",
    "actor",
    "involving",
    "action",
    "outcome",
    "reason",
    "app",
    "ip",
    "since",
    "until",
)


@dataclass
class AuditFilters:
    person: str = ""  # the events about them (their subject)
    actor: str = ""  # the events by them
    involving: str = ""  # both: about them or by them (a person's "All their events")
    action: str = ""
    outcome: str = ""
    reason: str = ""
    app: str = ""
    ip: str = ""
    since: str = ""
    until: str = ""
    problems: list[str] = field(default_factory=list)
    # The filters (by name) that the problems are about: the page marks them invalid.
    invalid: set[str] = field(default_factory=set)

    def refuse(self, message: str, *names: str) -> None:
        """A problem with the filters ``names``."""
        self.problems.append(message)
        self.invalid.update(names)

    def as_query(self) -> dict[str, str]:
        """The filters as the page's query string holds them (empty ones left out)."""
        return {name: getattr(self, name) for name in _NAMES if getattr(self, name)}


# The dates a filter may name: a day either side stays a datetime (a date alone means the
# whole day), and every database stores it.
_FIRST_DAY = datetime(1900, 1, 1, tzinfo=UTC)
_LAST_DAY = datetime(9998, 12, 31, tzinfo=UTC)


def _day(text: str, name: str, problems: list[str]) -> datetime | None:
    """A date (YYYY-MM-DD) or a date and time (YYYY-MM-DDTHH:MM, with or without an offset),
    in UTC: PostgreSQL refuses some offsets Python takes, such as +23:59. The start of what it
    names: ``_end`` is its end."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (ValueError, OverflowError):
        value = None
    if value is None or not _FIRST_DAY <= value <= _LAST_DAY:
        problems.append(
            f"{name} must be a date between 1900 and 9998, such as 2026-12-01, or a date and time."
        )
        return None
    return value


# What datetime.fromisoformat reads: a date (2026-03-01, 20260301, a week date 2026-W09-1), then
# any one character and a time of hours, minutes, seconds and a fraction, colons optional.
_DATE_TIME = re.compile(
    r"\d{4}-?(?:W\d\d(?:-?\d)?|\d\d-?\d\d)(?:.(\d\d)(?::?(\d\d)(?::?(\d\d)(?:[.,](\d+))?)?)?)?"
)


def _end(text: str, start: datetime) -> datetime:
    """Where what ``text`` names, from ``start`` (``_day``), ends, exclusive: a date is its
    whole day, a time to the minute its whole minute, to the second its whole second, as the
    log shows its rows' times ("2026-03-01 23:30:15" takes in 23:30:15.5)."""
    found = _DATE_TIME.match(text)
    hours, minutes, seconds, fraction = found.groups() if found else (None,) * 4
    if fraction:
        return start + timedelta(microseconds=10 ** max(0, 6 - len(fraction)))
    if seconds:
        return start + timedelta(seconds=1)
    if minutes:
        return start + timedelta(minutes=1)
    if hours:
        return start + timedelta(hours=1)
    return datetime.combine(start.date(), time.min, UTC) + timedelta(days=1)


def parse_filters(query: Mapping[str, str]) -> AuditFilters:
    """The filters from a query string; what cannot be used is in ``problems``, and the filters
    it is about in ``invalid``."""
    values = {name: str(query.get(name, "")).strip()[:_TEXT_MAX] for name in _NAMES}
    filters = AuditFilters(**values)  # type: ignore[arg-type] # every field here is a str
    controlled = [name for name, value in values.items() if has_ascii_control(value)]
    if controlled:
        # No username, reason, app or address holds one (and PostgreSQL refuses a NUL).
        filters.refuse("The filters cannot hold control characters.", *controlled)
    if filters.outcome and filters.outcome not in OUTCOMES:
        filters.refuse("Outcome must be succeeded or failed.", "outcome")
    if filters.action and filters.action not in {action.value for action in Action}:
        filters.refuse(f"{filters.action!r} is not an action the log records.", "action")
    if filters.ip:
        try:
            ipaddress.ip_address(filters.ip)
        except ValueError:
            filters.refuse(f"{filters.ip!r} is not an IP address.", "ip")
    for name, label in (("since", "From"), ("until", "To")):
        problems: list[str] = []
        _day(getattr(filters, name), label, problems)
        for problem in problems:
            filters.refuse(problem, name)
    return filters


def _person_ids(username: str) -> list[int]:
    return list(
        User.objects.filter(username=normalize_username(username)).values_list("pk", flat=True)
    )


def filtered(filters: AuditFilters) -> QuerySet[AuditEvent]:
    """Every event the filters select, newest first. Call only when ``problems`` is empty."""
    events = AuditEvent.objects.all()
    if filters.person:
        ids = _person_ids(filters.person)
        events = (
            events.filter(subject_id__in=ids)
            if ids
            else events.filter(subject_label=normalize_username(filters.person))
        )
    if filters.involving:
        ids = _person_ids(filters.involving)
        events = (
            events.filter(Q(subject_id__in=ids) | Q(actor_id__in=ids))
            if ids
            else events.filter(subject_label=normalize_username(filters.involving))
        )
    if filters.actor:
        events = events.filter(actor_id__in=_person_ids(filters.actor))
    if filters.action:
        events = events.filter(action=filters.action)
    # By action (``audit.actions.FAILURES``), not by reason: some successes say why.
    if filters.outcome == "failure":
        events = events.filter(action__in=FAILURES)
    elif filters.outcome == "success":
        events = events.exclude(action__in=FAILURES)
    if filters.reason:
        events = events.filter(reason=filters.reason)
    if filters.app:
        # The expression the partial index audit_app holds (audit/models.py), so that it is used.
        events = events.alias(app=AppOf()).filter(app=filters.app)
    if filters.ip:
        events = events.filter(ip=filters.ip)
    since = _day(filters.since, "", [])
    if since is not None:
        events = events.filter(at__gte=since)
    until = _day(filters.until, "", [])
    if until is not None:
        # To the end of what it names: a date its whole day, a minute its whole minute, ...
        events = events.filter(at__lt=_end(filters.until, until))
    return events.order_by("-at", "-id")


@dataclass(frozen=True)
class AuditPage:
    rows: list[AuditEvent]
    next_before: int | None


def page(filters: AuditFilters, before: int | None = None) -> AuditPage:
    """One page of events, starting below the event ``before`` (its id) when given."""
    events = filtered(filters).select_related("actor")
    if before is not None:
        anchor = AuditEvent.objects.filter(pk=before).values_list("at", flat=True).first()
        if anchor is not None:
            # (at, id) < (anchor, before), written so that the (at, id) index bounds the scan.
            events = events.filter(at__lte=anchor).filter(Q(at__lt=anchor) | Q(id__lt=before))
    rows = list(events[: PAGE_SIZE + 1])
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    return AuditPage(rows, rows[-1].pk if more and rows else None)


# --- Explanations ---------------------------------------------------------------------------------


@cache
def _error_classes() -> dict[str, type[errors.ThresholdError]]:
    found: dict[str, type[errors.ThresholdError]] = {}
    stack: list[type[errors.ThresholdError]] = [errors.ThresholdError]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        # Each reason class declares its own code; a family inherits its parent's.
        code = vars(cls).get("code", "")
        if code:
            found.setdefault(code, cls)
    return found


def _surface(action: str) -> Surface:
    if action.startswith(("sign_in.", "step_up.")):
        return Surface.AUTHENTICATION
    if action.startswith(("passkey.registration", "invite.", "recovery.")):
        return Surface.REGISTRATION
    return Surface.SETTINGS


@dataclass(frozen=True)
class Explanation:
    why: str  # the precise reason, and what the person was shown
    entry: catalog.CatalogEntry  # its cause and solution, for support staff


def explain(event: AuditEvent) -> Explanation | None:
    """The catalog's explanation of a failure row's reason code; None for a success."""
    if not event.reason or not is_failure(event.action):
        return None
    cls = _error_classes().get(event.reason)
    if cls is None:
        return None
    error = cls()
    surface = _surface(event.action)
    return Explanation(catalog.explain(error, surface), catalog.entry_for(error, surface))


# --- Export -------------------------------------------------------------------------------------

EXPORT_FIELDS = (
    "at",
    "action",
    "outcome",
    "reason",
    "subject",
    "actor",
    "ip",
    "via",
    "user_agent",
    "detail",
)
_CHUNK = 2000


def _export_row(event: AuditEvent) -> dict[str, Any]:
    return {
        "at": event.at.isoformat(),
        "action": event.action,
        "outcome": "failure" if is_failure(event.action) else "success",
        "reason": event.reason,
        "subject": event.subject_label,
        "actor": event.actor.username if event.actor is not None else "",
        "ip": event.ip or "",
        "via": event.via,
        "user_agent": event.user_agent,
        "detail": event.detail,
    }


def _events(filters: AuditFilters) -> Iterator[AuditEvent]:
    return filtered(filters).select_related("actor").iterator(chunk_size=_CHUNK)


class _Line:
    """A file-like object csv.writer writes one line into, handed back at once."""

    def write(self, value: str) -> str:
        return value


def _cell(value: Any) -> str:
    """A CSV cell that a spreadsheet will not run as a formula (``core.spreadsheet``)."""
    return spreadsheet.cell(
        json.dumps(value, sort_keys=True) if isinstance(value, dict) else str(value)
    )


def export_csv(filters: AuditFilters) -> Iterator[str]:
    # Every cell quoted: a spreadsheet reads each as one text, commas and all.
    writer = csv.writer(_Line(), quoting=csv.QUOTE_ALL)
    yield writer.writerow(EXPORT_FIELDS)
    for event in _events(filters):
        row = _export_row(event)
        yield writer.writerow([_cell(row[name]) for name in EXPORT_FIELDS])


def export_json(filters: AuditFilters) -> Iterator[str]:
    yield "["
    separator = "\n"
    for event in _events(filters):
        yield separator + json.dumps(_export_row(event), sort_keys=True)
        separator = ",\n"
    yield "\n]\n"
