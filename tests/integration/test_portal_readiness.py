"""The readiness dashboard and ``threshold report readiness --json`` equal counts computed here,
independently, from the database's rows (SQLite and PostgreSQL: the same file runs on both)."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.conftest import Browser, assert_ok, enrolled_person, sign_in
from tests.integration.portal_support import staff
from threshold import clock
from threshold.accounts.models import Role, User
from threshold.audit.actions import Action, Origin, record
from threshold.audit.models import AuditEvent
from threshold.cli.main import main
from threshold.devices.models import Device
from threshold.enrollment.models import EnrollmentInvite
from threshold.fallback.models import TotpDevice
from threshold.passkeys.models import Passkey

pytestmark = pytest.mark.django_db

YUBIKEY = uuid.UUID("ee882879-721c-4913-9775-3dfcce97072a")
ICLOUD = uuid.UUID("fbfc3007-154e-4ecc-8c0b-6e020557d7bd")


def _passkey(user: User, n: int, **facts) -> Passkey:
    defaults = {
        "credential_id": f"credential-{user.pk}-{n}".encode(),
        "public_key": b"\xa0",
        "alg": -7,
        "aaguid": ICLOUD,
        "backup_eligible": True,
        "backup_state": True,
        "uv_initialized": True,
        "attestation_format": "none",
        "attestation_type": "none",
        "authenticator_name": "iCloud Keychain",
        "authenticator_attachment": "platform",
    }
    return Passkey.objects.create(user=user, **{**defaults, **facts})


def _device(user: User, name: str, **facts) -> Device:
    return Device.objects.create(
        user=user,
        public_id=f"device-{name}",
        public_key={"kty": "EC", "crv": "P-256", "x": name, "y": name},
        key_thumbprint=f"thumb-{name}",
        name=name,
        is_active=facts.pop("is_active", True),
        **facts,
    )


def _fallback(user: User) -> None:
    TotpDevice.objects.create(user=user, secret="JBSWY3DPEHPK3PXP", created_at=clock.now_datetime())


@pytest.fixture
def rollout(ada, clock):
    """A small organisation halfway through its rollout."""
    now = clock.now
    bob = enrolled_person("bob@example.com", "Bob")  # the soft authenticator: device-bound
    _passkey(bob.user, 2)  # and a synced one
    _fallback(bob.user)
    carol = User.objects.create_user("carol@example.com")
    _fallback(carol)  # only the fallback
    dave = User.objects.create_user("dave@example.com")
    _passkey(
        dave,
        1,
        aaguid=YUBIKEY,
        backup_eligible=False,
        backup_state=False,
        authenticator_name="YubiKey 5",
        authenticator_attachment="cross-platform",
        transports=["usb", "nfc"],
        is_security_key=True,
        attestation_format="packed",
    )
    User.objects.filter(pk=dave.pk).update(locked_at=clock_now(clock))  # locked: not active
    # Hana: only the fallback and a confirmed device app: two ways, not "only the fallback";
    # a revoked device and one never confirmed count for nothing.
    hana = User.objects.create_user("hana@example.com")
    _fallback(hana)
    _device(hana, "d1")
    _device(hana, "d2", revoked_at=clock_now(clock))
    _device(carol, "d3", is_active=False)
    erin = User.objects.create_user("erin@example.com")
    _passkey(erin, 1)
    User.objects.filter(pk=erin.pk).update(is_active=False)
    # Ivy enrolled, then lost her one passkey (an administrator removed it): no way in now,
    # and not "invited, not enrolled yet".
    ivy = enrolled_person("ivy@example.com", "Ivy")
    Passkey.objects.filter(user=ivy.user).delete()
    main(["invite", "frank@example.com", "--no-email"])  # pending
    main(["invite", "gina@example.com", "--no-email"])
    EnrollmentInvite.objects.filter(user__username="gina@example.com").update(
        expires_at=clock_now(clock) - timedelta(hours=1)
    )  # expired

    # Sign-ins: passkeys now, a fallback sign-in, a new method's, and an old one outside 30 days.
    assert_ok(sign_in(Browser(), ada.authenticator))
    assert_ok(sign_in(Browser(), bob.authenticator))
    record(Action.SIGN_IN_SUCCEEDED, Origin.cli(), subject=carol, method="password+app")
    record(Action.SIGN_IN_SUCCEEDED, Origin.cli(), subject=carol, method="password+recovery_code")
    record(Action.SIGN_IN_SUCCEEDED, Origin.cli(), subject=bob.user, method="device_app")
    clock.advance(-31 * 86400)
    record(Action.SIGN_IN_SUCCEEDED, Origin.cli(), subject=carol, method="password+app")
    record(Action.SIGN_IN_FAILED, Origin.cli(), reason="too_many_attempts")
    clock.now = now
    response = sign_in(Browser(), ada.authenticator, origin="https://evil.example")
    assert response.status_code == 400
    record(Action.SIGN_IN_FAILED, Origin.cli(), reason="password_incorrect")
    return now


def clock_now(clock):
    return datetime.fromtimestamp(clock.now, UTC)


def expected(now: float) -> dict:
    """The figures, counted here row by row in Python."""
    at = datetime.fromtimestamp(now, UTC)
    since = at - timedelta(days=30)
    may_sign_in = [u for u in User.objects.all() if u.is_active and u.locked_at is None]
    passkeys = Counter(Passkey.objects.values_list("user_id", flat=True))
    fallback = set(TotpDevice.objects.values_list("user_id", flat=True))
    devices = Counter(
        device.user_id
        for device in Device.objects.all()
        if device.is_active and device.revoked_at is None
    )
    # Active: enrolled, with a way to sign in; invited: none yet; no way in: none any more.
    active = [u for u in may_sign_in if passkeys[u.pk] + devices[u.pk] + (u.pk in fallback)]
    used_a_link = {invite.user_id for invite in EnrollmentInvite.objects.all() if invite.used_at}
    invited = [u for u in may_sign_in if u not in active and u.pk not in used_a_link]
    lost_every_method = [u for u in may_sign_in if u not in active and u.pk in used_a_link]
    kinds = Counter(dict.fromkeys(["platform", "synced", "security_key"], 0))
    for passkey in Passkey.objects.all():
        if passkey.backup_eligible:
            kinds["synced"] += 1
        elif passkey.looks_like_security_key:
            kinds["security_key"] += 1
        else:
            kinds["platform"] += 1
    methods: Counter[str] = Counter({"passkey": 0, "fallback": 0})
    failures: Counter[str] = Counter()
    for event in AuditEvent.objects.all():
        if not since <= event.at <= at:
            continue
        if event.action == "sign_in.succeeded":
            method = event.detail.get("method") or "passkey"
            methods["fallback" if method.startswith("password") else method] += 1
        if event.reason:
            failures[event.reason] += 1
    pending = [
        invite
        for invite in EnrollmentInvite.objects.all()
        if invite.purpose == "enrollment"
        and invite.used_at is None
        and invite.revoked_at is None
        and invite.expires_at > at
    ]
    return {
        "people_active": len(active),
        "people_invited": len(invited),
        "people_without_a_way_in": len(lost_every_method),
        "with_passkey": sum(1 for u in active if passkeys[u.pk]),
        "with_two_or_more_methods": sum(
            1 for u in active if passkeys[u.pk] + devices[u.pk] + (u.pk in fallback) >= 2
        ),
        "fallback_only": sum(
            1 for u in active if not passkeys[u.pk] and not devices[u.pk] and u.pk in fallback
        ),
        "passkeys_by_kind": dict(kinds),
        "passkeys_synced": kinds["synced"],
        "passkeys_device_bound": kinds["platform"] + kinds["security_key"],
        "sign_ins_by_method_30d": dict(methods),
        "failures_by_reason_30d": dict(failures),
        "invites_pending": len(pending),
    }


def test_the_json_report_equals_the_databases_counts(rollout, capsys):
    capsys.readouterr()
    assert main(["report", "readiness", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert list(printed) == [
        "people_active",
        "people_invited",
        "people_without_a_way_in",
        "with_passkey",
        "with_two_or_more_methods",
        "fallback_only",
        "passkeys_by_kind",
        "passkeys_synced",
        "passkeys_device_bound",
        "sign_ins_by_method_30d",
        "failures_by_reason_30d",
        "invites_pending",
    ]
    assert printed == expected(rollout)
    # What this organisation looks like, so that the comparison is not of two empty sets.
    assert printed["people_active"] == 4  # ada, bob, carol, hana
    assert printed["people_invited"] == 2  # frank (his link pending), gina (hers expired)
    assert printed["people_without_a_way_in"] == 1  # ivy
    assert printed["with_two_or_more_methods"] == 2  # bob, hana
    assert printed["fallback_only"] == 1  # carol
    assert printed["passkeys_by_kind"]["security_key"] == 1
    assert printed["sign_ins_by_method_30d"]["device_app"] == 1
    assert printed["sign_ins_by_method_30d"]["fallback"] == 2
    assert printed["invites_pending"] == 1


def test_the_dashboard_shows_the_same_figures_with_a_csv_each(rollout):
    _, browser = staff("auditor@example.com", Role.AUDITOR)
    figures = expected(rollout)
    page = browser.get("/admin/readiness")
    assert page.status_code == 200
    text = page.content.decode()
    for element, key in [
        ("people-active", "people_active"),
        ("people-invited", "people_invited"),
        ("people-no-way-in", "people_without_a_way_in"),
        ("with-passkey", "with_passkey"),
        ("with-two", "with_two_or_more_methods"),
        ("fallback-only", "fallback_only"),
        ("synced", "passkeys_synced"),
        ("device-bound", "passkeys_device_bound"),
        ("invites-pending", "invites_pending"),
    ]:
        assert f'id="{element}">{figures[key]}<' in text, element
    assert text.count('role="img"') == 5  # the charts, each beside its table
    people = browser.get("/admin/readiness/people.csv")
    assert people["Content-Type"].startswith("text/csv")
    rows = dict(csv.reader(io.StringIO(people.content.decode())))
    assert rows["people_active"] == str(figures["people_active"])
    assert rows["people_invited"] == str(figures["people_invited"])
    assert rows["people_without_a_way_in"] == str(figures["people_without_a_way_in"]) == "1"
    assert 'href="/admin/people?status=no-way-in">send them a recovery link</a>' in text
    failures = list(
        csv.reader(io.StringIO(browser.get("/admin/readiness/failures.csv").content.decode()))
    )
    assert {reason: int(n) for reason, n in failures[1:]} == figures["failures_by_reason_30d"]
    sign_ins = list(
        csv.reader(io.StringIO(browser.get("/admin/readiness/sign-ins.csv").content.decode()))
    )
    assert sign_ins[0] == ["day", "passkey", "fallback", "device_app"]
    assert len(sign_ins) == 31
    totals = [sum(int(row[i]) for row in sign_ins[1:]) for i in (1, 2, 3)]
    assert totals == [
        figures["sign_ins_by_method_30d"][m] for m in ("passkey", "fallback", "device_app")
    ]
    assert browser.get("/admin/readiness/nonsense.csv").status_code == 404


def _people_listed(browser: Browser, status: str) -> dict[str, str]:
    """Username -> status cell of everyone the People page lists with ``status`` (one page)."""
    text = browser.get(f"/admin/people?status={status}").content.decode()
    rows = re.findall(r"<td>([^<]+@example\.com)<.*?</td>\s*<td>([^<]*)</td>", text, re.S)
    return dict(rows)


def test_the_people_pages_active_and_invited_filters_are_the_dashboards_figures(rollout, capsys):
    _, browser = staff("root@example.com", Role.ADMINISTRATOR)
    ivan = User.objects.create_user("ivan@example.com")
    _device(ivan, "d4")  # only the device app: a way to sign in, no passkey
    capsys.readouterr()
    assert main(["report", "readiness", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)

    active = _people_listed(browser, "active")
    invited = _people_listed(browser, "invited")
    # Everyone who may sign in is one or the other, as the dashboard counts them: invited
    # people who have not enrolled (an invite pending, expired, or none sent) are not active.
    assert set(active) == {
        "ada@example.com",
        "bob@example.com",
        "carol@example.com",
        "hana@example.com",
        "ivan@example.com",
        "root@example.com",
    }
    assert len(active) == figures["people_active"] == expected(rollout)["people_active"]
    assert set(invited) == {"frank@example.com", "gina@example.com"}
    assert len(invited) == figures["people_invited"]
    # Each listed as invited is shown as invited.
    assert set(invited.values()) == {"Invited"}
    assert "Invited" not in active.values()
    # Ivy enrolled and has lost every method: listed apart, as the dashboard counts her.
    lost = _people_listed(browser, "no-way-in")
    assert lost == {"ivy@example.com": "No way to sign in"}
    assert len(lost) == figures["people_without_a_way_in"]
    assert (
        "No way to sign in"
        in browser.get(f"/admin/people/{_id('ivy@example.com')}").content.decode()
    )
    # `threshold users` says so too.
    capsys.readouterr()
    assert main(["users"]) == 0
    statuses = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:] if line}
    assert statuses["ivy@example.com"].rstrip().endswith("no way to sign in  0")
    assert " invited " in statuses["frank@example.com"]
    # The dashboard's "Invited people" link is this list.
    dashboard = browser.get("/admin/readiness").content.decode()
    assert 'href="/admin/people?status=invited"' in dashboard


def _id(username: str) -> int:
    return User.objects.get(username=username).pk
