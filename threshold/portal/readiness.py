"""The rollout-readiness figures: the dashboard's and ``threshold report readiness --json``'s.

Each figure is one aggregate query; the people's are two (their ways in, then of those with none,
who had one). A person's ways to sign in
are counted as the policy in force allows them (``portal.usable``), as the people list and
``threshold users`` count them. Sign-ins are counted by the method their audit row
names (``detail.method``; a passkey's row names none), so a new way of signing in (the
device app) shows up by itself under its own name.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet
from django.db.models.fields.json import KT
from django.db.models.functions import TruncDate
from django.db.models.lookups import GreaterThanOrEqual

from threshold import clock
from threshold.accounts.models import User
from threshold.audit.actions import Action
from threshold.audit.models import AuditEvent
from threshold.core.authenticators import looks_like_security_key
from threshold.core.policy import Policy
from threshold.enrollment.actions import ENROLLMENT
from threshold.enrollment.models import EnrollmentInvite
from threshold.passkeys.models import Passkey
from threshold.policy.access import get_policy
from threshold.portal.usable import has_a_usable_method, refused_methods, with_usable

DAYS = 30
# How the figures name a sign-in method: a passkey's audit row names none; the fallback's
# rows name how (password+app, password+recovery_code), counted together as the fallback.
PASSKEY = "passkey"
FALLBACK = "fallback"
KINDS = ("platform", "synced", "security_key")


def method_of(stored: str | None) -> str:
    """A sign-in's method as the figures count it, from its audit row's ``method``."""
    if not stored:
        return PASSKEY
    if stored.startswith("password"):
        return FALLBACK
    return stored


def kind_of(backup_eligible: bool, is_security_key: bool, attachment: str, transports: Any) -> str:
    """platform, synced or security_key: the three kinds of passkey the help articles name."""
    if backup_eligible:
        return "synced"
    listed = transports if isinstance(transports, list) else []
    if is_security_key or looks_like_security_key(attachment, backup_eligible, listed):
        return "security_key"
    return "platform"


@dataclass(frozen=True)
class Readiness:
    # Of the people who may sign in (neither deactivated nor locked), their ways in counted as
    # the policy in force allows them (``usable``):
    people_active: int  # with at least one way to sign in
    people_invited: int  # with no way to yet (invited, not enrolled: nothing set up)
    # Enrolled once, but no way to now (every method removed, or refused by the policy).
    people_without_a_way_in: int
    with_passkey: int  # a passkey the policy allows
    with_two_or_more_methods: int
    fallback_only: int  # the password and app, and no passkey or device the policy allows
    passkeys_by_kind: dict[str, int]
    passkeys_synced: int
    passkeys_device_bound: int
    sign_ins_by_method_30d: dict[str, int]
    failures_by_reason_30d: dict[str, int]
    invites_pending: int
    # The dashboard's too, not the JSON's:
    invites_expired: int
    passkeys_by_authenticator: list[tuple[str, str, int, int]]  # name, AAGUID, passkeys, people
    sign_ins_per_day: list[tuple[str, dict[str, int]]]  # (YYYY-MM-DD, method -> count)
    methods: list[str]

    def as_json(self) -> dict[str, Any]:
        """The figures ``threshold report readiness --json`` prints, under the issue's keys."""
        return {
            "people_active": self.people_active,
            "people_invited": self.people_invited,
            "people_without_a_way_in": self.people_without_a_way_in,
            "with_passkey": self.with_passkey,
            "with_two_or_more_methods": self.with_two_or_more_methods,
            "fallback_only": self.fallback_only,
            "passkeys_by_kind": self.passkeys_by_kind,
            "passkeys_synced": self.passkeys_synced,
            "passkeys_device_bound": self.passkeys_device_bound,
            "sign_ins_by_method_30d": self.sign_ins_by_method_30d,
            "failures_by_reason_30d": self.failures_by_reason_30d,
            "invites_pending": self.invites_pending,
        }


def active_people() -> QuerySet[User]:
    """People who may sign in: neither deactivated nor locked."""
    return User.objects.filter(is_active=True, locked_at=None)


def has_enrolled() -> Exists:
    """Whether a person has used a link of theirs (an enrollment or a recovery): someone with
    no way to sign in who has is not invited, not enrolled yet, but has lost every method."""
    return Exists(EnrollmentInvite.objects.filter(user=OuterRef("pk"), used_at__isnull=False))


def enrolled_once(policy: Policy) -> Q:
    """Of people with no way to sign in today under ``policy`` (asked of them alone), those
    who had one: they used a link of theirs (``has_enrolled``), or set up a way the policy
    refuses now (a synced passkey under ``block_synced_passkeys``). The others are invited,
    not enrolled yet. (Whatever they set up, they may not use: ``refused_methods``.)"""
    return Q(has_enrolled()) | refused_methods(policy)


def compute(now: datetime | None = None, policy: Policy | None = None) -> Readiness:
    """The figures at ``now``, people's ways to sign in counted as ``policy`` (the policy in
    force when None) allows them: a passkey it refuses, or the fallback or the device app it
    does not allow, is no way in (``usable``)."""
    now = now or clock.now_datetime()
    policy = policy or get_policy()
    since = now - timedelta(days=DAYS)
    # Each person's usable ways in counted once (a sum of them would count them again).
    usable = Q(usable_passkeys__gte=1) | Q(usable_fallback=1) | Q(usable_devices__gte=1)
    ways = F("usable_passkeys") + F("usable_fallback") + F("usable_devices")
    people = with_usable(active_people(), policy, total=False).aggregate(
        active=Count("pk", filter=usable),
        with_passkey=Count("pk", filter=Q(usable_passkeys__gte=1)),
        with_two=Count("pk", filter=Q(GreaterThanOrEqual(ways, 2))),
        fallback_only=Count("pk", filter=Q(usable_passkeys=0, usable_devices=0, usable_fallback=1)),
    )
    # Of those with none, who had one once: asked of them alone.
    people |= (
        active_people()
        .exclude(has_a_usable_method(policy))
        .aggregate(
            invited=Count("pk", filter=~enrolled_once(policy)),
            without_a_way_in=Count("pk", filter=enrolled_once(policy)),
        )
    )

    kinds: Counter[str] = Counter(dict.fromkeys(KINDS, 0))
    for row in (
        Passkey.objects.order_by()
        .values("backup_eligible", "is_security_key", "authenticator_attachment", "transports")
        .annotate(n=Count("pk"))
    ):
        kinds[
            kind_of(
                row["backup_eligible"],
                row["is_security_key"],
                row["authenticator_attachment"],
                row["transports"],
            )
        ] += row["n"]
    total = sum(kinds.values())

    by_authenticator = [
        (row["authenticator_name"] or "Unknown", str(row["aaguid"]), row["n"], row["people"])
        for row in Passkey.objects.order_by()
        .values("authenticator_name", "aaguid")
        .annotate(n=Count("pk"), people=Count("user", distinct=True))
        .order_by("-n", "authenticator_name")
    ]

    sign_ins = AuditEvent.objects.filter(
        action=Action.SIGN_IN_SUCCEEDED, at__gte=since, at__lte=now
    )
    by_method: Counter[str] = Counter()
    per_day: dict[str, Counter[str]] = {}
    for row in (
        sign_ins.order_by()
        .values(day=TruncDate("at"), method=KT("detail__method"))
        .annotate(n=Count("pk"))
    ):
        method = method_of(row["method"])
        by_method[method] += row["n"]
        per_day.setdefault(str(row["day"]), Counter())[method] += row["n"]
    methods = [PASSKEY, FALLBACK, *sorted(set(by_method) - {PASSKEY, FALLBACK})]
    days = [(now - timedelta(days=back)).date().isoformat() for back in range(DAYS - 1, -1, -1)]

    failures = dict(
        AuditEvent.objects.filter(at__gte=since, at__lte=now)
        .exclude(reason="")
        .order_by()
        .values_list("reason")
        .annotate(n=Count("pk"))
        .order_by("-n", "reason")
    )
    unused = EnrollmentInvite.objects.filter(
        purpose=ENROLLMENT.value, used_at=None, revoked_at=None
    )
    return Readiness(
        people_active=people["active"],
        people_invited=people["invited"],
        people_without_a_way_in=people["without_a_way_in"],
        with_passkey=people["with_passkey"],
        with_two_or_more_methods=people["with_two"],
        fallback_only=people["fallback_only"],
        passkeys_by_kind={kind: kinds[kind] for kind in KINDS},
        passkeys_synced=kinds["synced"],
        passkeys_device_bound=total - kinds["synced"],
        sign_ins_by_method_30d={method: by_method[method] for method in methods},
        failures_by_reason_30d=failures,
        invites_pending=unused.filter(expires_at__gt=now).count(),
        invites_expired=unused.filter(expires_at__lte=now).count(),
        passkeys_by_authenticator=by_authenticator,
        sign_ins_per_day=[
            (day, {method: per_day.get(day, Counter())[method] for method in methods})
            for day in days
        ],
        methods=methods,
    )


def share(part: int, whole: int) -> int:
    """``part`` of ``whole`` in whole percent, rounded down: 100 only when they are equal and 0
    only when ``part`` is (200 of 201 is 99%, not 100%; 1 of 1,000 is 1%, not 0%)."""
    if whole <= 0 or part <= 0:
        return 0
    if part >= whole:
        return 100
    return max(1, 100 * part // whole)


# --- Charts and CSV ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    y: int
    width: float


@dataclass(frozen=True)
class BarChart:
    """A horizontal bar chart, drawn by the template as SVG (numbers in a table beside it)."""

    bars: list[Bar]
    height: int
    label_width: int = 170
    bar_area: int = 360
    row: int = 26


def bar_chart(items: list[tuple[str, int]]) -> BarChart:
    largest = max((value for _, value in items), default=0) or 1
    chart = BarChart([], 0)
    bars = [
        Bar(label[:28], value, index * chart.row, chart.bar_area * value / largest)
        for index, (label, value) in enumerate(items)
    ]
    return BarChart(bars, max(1, len(bars)) * chart.row)


def csv_rows(readiness: Readiness, figure: str) -> list[list[object]] | None:
    """One figure's rows for its CSV (a header first); None for an unknown figure."""
    r = readiness
    tables: dict[str, list[list[object]]] = {
        "people": [
            ["figure", "people"],
            ["people_active", r.people_active],
            ["people_invited", r.people_invited],
            ["people_without_a_way_in", r.people_without_a_way_in],
            ["with_passkey", r.with_passkey],
            ["with_two_or_more_methods", r.with_two_or_more_methods],
            ["fallback_only", r.fallback_only],
        ],
        "passkeys-by-kind": [
            ["kind", "passkeys"],
            *([kind, count] for kind, count in r.passkeys_by_kind.items()),
            # Every kind but synced is device-bound.
            ["device_bound", r.passkeys_device_bound],
        ],
        "passkeys-by-authenticator": [
            ["authenticator", "aaguid", "passkeys", "people"],
            *([name, aaguid, n, people] for name, aaguid, n, people in r.passkeys_by_authenticator),
        ],
        "sign-ins": [
            ["day", *r.methods],
            *(
                [day, *(counts[method] for method in r.methods)]
                for day, counts in r.sign_ins_per_day
            ),
        ],
        "failures": [
            ["reason", "failures"],
            *([reason, n] for reason, n in r.failures_by_reason_30d.items()),
        ],
        "invites": [
            ["invites", "count"],
            ["pending", r.invites_pending],
            ["expired", r.invites_expired],
        ],
    }
    return tables.get(figure)


FIGURES = (
    "people",
    "passkeys-by-kind",
    "passkeys-by-authenticator",
    "sign-ins",
    "failures",
    "invites",
)
