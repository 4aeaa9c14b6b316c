"""The people list and a person's page: read-only queries, fast at 100,000 people.

The list pages by keyset (``username > after``, the unique index's order): no OFFSET,
so page 2,000 costs what page 1 does. Counts for the page's people are fetched for
those people only, not grouped over the whole table.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum

from django.db.models import Q, QuerySet
from django.http import Http404

from threshold import clock
from threshold.accounts.methods import MethodKind, count_sign_in_methods, sign_in_methods
from threshold.accounts.models import User, normalize_username, search_key
from threshold.audit.actions import Action
from threshold.audit.models import AuditEvent
from threshold.core.names import has_ascii_control
from threshold.core.policy import Decision, Policy, evaluate, turned_off_by
from threshold.devices.actions import usable_devices
from threshold.devices.models import Device
from threshold.enrollment.models import EnrollmentInvite
from threshold.fallback.actions import has_fallback, unused_recovery_codes
from threshold.fallback.models import TotpDevice
from threshold.groups.access import rules_by_user, rules_of
from threshold.groups.models import Group
from threshold.passkeys.models import Passkey
from threshold.policy.access import get_policy
from threshold.portal.readiness import enrolled_once
from threshold.portal.usable import (
    DEVICE_SET_UP,
    device_allowed,
    has_a_usable_method,
    has_usable_device,
    has_usable_fallback,
    has_usable_passkey,
    passkey_allowed,
)

PAGE_SIZE = 50
SEARCH_MAX_LENGTH = 150


class Status(StrEnum):
    """The people list's status filter (``?status=``)."""

    ACTIVE = "active"
    LOCKED = "locked"
    DEACTIVATED = "deactivated"
    INVITED = "invited"
    NO_WAY_IN = "no-way-in"
    NO_PASSKEY = "no-passkey"
    FALLBACK_ONLY = "fallback-only"

    @property
    def label(self) -> str:
        return STATUS_LABELS[self]


STATUS_LABELS = {
    Status.ACTIVE: "Active",
    Status.LOCKED: "Locked",
    Status.DEACTIVATED: "Deactivated",
    Status.INVITED: "Invited",
    Status.NO_WAY_IN: "No way to sign in",
    Status.NO_PASSKEY: "No passkey yet",
    Status.FALLBACK_ONLY: "Only the fallback",
}


def filter_status(people: QuerySet[User], status: Status, policy: Policy) -> QuerySet[User]:
    """The people of ``status``; the statuses overlap (an invited person has no passkey yet).

    A way to sign in counts only when ``policy`` allows it (``usable``): a passkey it refuses,
    or the fallback or the device app it does not allow, is none. Of those who may sign in,
    active, invited, no way in and only the fallback are the readiness dashboard's: active
    people have a way to sign in, invited people none yet (nothing set up and no link used,
    whether their invite is pending, expired, or was never sent), and the others none any more
    (``readiness.enrolled_once``); only the fallback: the password and app, and no passkey or
    device the policy allows."""
    can_sign_in = Q(is_active=True, locked_at=None)
    no_way_in = can_sign_in & ~has_a_usable_method(policy)
    no_passkey = can_sign_in & ~Q(has_usable_passkey(policy))
    where = {
        Status.ACTIVE: can_sign_in & has_a_usable_method(policy),
        Status.LOCKED: Q(locked_at__isnull=False),
        Status.DEACTIVATED: Q(is_active=False),
        Status.INVITED: no_way_in & ~enrolled_once(policy),
        Status.NO_WAY_IN: no_way_in & enrolled_once(policy),
        Status.NO_PASSKEY: no_passkey,
        Status.FALLBACK_ONLY: (
            no_passkey & has_usable_fallback(policy) & ~has_usable_device(policy)
        ),
    }
    return people.filter(where[status])


def search_arms(text: str) -> list[Q]:
    """What matches ``text``: the username (the work email) starts with it, spelled as the
    usernames are stored (``normalize_username``), or the name contains it, whatever the
    case or accents (``User.name_key``, ``accounts.models.search_key``: the same on every
    database). On PostgreSQL each arm has an index of its own: the username's unique index
    (and its pattern twin), a trigram index on the name's key (accounts 0006)."""
    text = text.strip()
    if not text:
        return []
    arms = [Q(username__startswith=normalize_username(text))]
    key = search_key(text)
    if key:
        arms.append(Q(name_key__contains=key))
    return arms


@dataclass(frozen=True)
class PersonRow:
    user: User
    passkeys: int  # set up
    has_fallback: bool
    status: str
    passkeys_usable: int = 0  # of ``passkeys``, those the policy allows
    fallback_usable: bool = False  # ``has_fallback``, and the policy allows it


@dataclass(frozen=True)
class PeoplePage:
    rows: list[PersonRow]
    next_after: str | None  # the cursor of the next page, None on the last


def list_people(
    text: str = "",
    status: Status | None = None,
    after: str = "",
    policy: Policy | None = None,
) -> PeoplePage:
    """One page of people in username order, after the username ``after``, their ways to sign
    in counted as ``policy`` (the policy in force when None) allows them.

    A search asks each arm (``search_arms``) for its own first page and merges them: as one
    OR, PostgreSQL misjudges how many rows match and walks the whole username index. The
    page's people's methods are then read in a fixed number of queries, whatever its size.
    """
    policy = policy or get_policy()
    if has_ascii_control(text) or has_ascii_control(after):
        # No username or name holds one: nobody matches (and PostgreSQL refuses a NUL).
        return PeoplePage([], None)
    people = User.objects.all()
    if status is not None:
        people = filter_status(people, status, policy)
    if after:
        people = people.filter(username__gt=after)
    fields = (
        "id",
        "username",
        "email",
        "email_verified_at",
        "full_name",
        "is_active",
        "locked_at",
        "role",
    )
    arms = search_arms(text)
    if arms:
        found: dict[int, User] = {}
        for arm in arms:
            for user in people.filter(arm).order_by("username").only(*fields)[: PAGE_SIZE + 1]:
                found[user.pk] = user
        users = sorted(found.values(), key=lambda user: user.username)[: PAGE_SIZE + 1]
    else:
        users = list(people.order_by("username").only(*fields)[: PAGE_SIZE + 1])
    more = len(users) > PAGE_SIZE
    users = users[:PAGE_SIZE]
    ids = [user.pk for user in users]
    # Each passkey and device set up, and whether the policy lets it sign in.
    passkeys: Counter[int] = Counter()
    passkeys_usable: Counter[int] = Counter()
    for user_id, allowed in Passkey.objects.filter(user_id__in=ids).values_list(
        "user_id", passkey_allowed(policy)
    ):
        passkeys[user_id] += 1
        passkeys_usable[user_id] += allowed
    fallback = set(TotpDevice.objects.filter(user_id__in=ids).values_list("user_id", flat=True))
    groups = rules_by_user(ids) if fallback else {}
    devices: set[int] = set()
    devices_usable: Counter[int] = Counter()
    for user_id, allowed in Device.objects.filter(DEVICE_SET_UP, user_id__in=ids).values_list(
        "user_id", device_allowed(policy)
    ):
        devices.add(user_id)
        devices_usable[user_id] += allowed
    # Who used a link of theirs, or set up a way in: of those with no way in that the policy
    # allows, invited or not any more.
    enrolled = set(
        EnrollmentInvite.objects.filter(user_id__in=ids, used_at__isnull=False).values_list(
            "user_id", flat=True
        )
    )
    rows = []
    for user in users:
        fallback_usable = user.pk in fallback and (
            turned_off_by(policy, groups.get(user.pk, ()), "allow_password_fallback") is None
        )
        status_text = status_of(
            user,
            passkeys_usable[user.pk],
            fallback_usable,
            devices_usable[user.pk],
            enrolled=any(user.pk in found for found in (enrolled, passkeys, fallback, devices)),
        )
        rows.append(
            PersonRow(
                user,
                passkeys[user.pk],
                user.pk in fallback,
                status_text,
                passkeys_usable[user.pk],
                fallback_usable,
            )
        )
    return PeoplePage(rows, users[-1].username if more and users else None)


def status_of(
    user: User, passkeys: int, fallback: bool, devices: int, *, enrolled: bool = False
) -> str:
    """The one status a person is listed with, in the filter's words, from the ways to sign
    in the policy allows them (``passkeys``, ``fallback`` and ``devices`` usable), as the
    filters and the readiness dashboard count them: with a passkey, active; with the password
    and app alone, only the fallback; with the device app (and perhaps the fallback), no
    passkey yet; with no way in, invited, or, having enrolled once (``enrolled``: a link of
    theirs used, or a method set up that the policy refuses), no way to sign in."""
    if not user.is_active:
        return Status.DEACTIVATED.label
    if user.is_locked:
        return Status.LOCKED.label
    if passkeys:
        return Status.ACTIVE.label
    if fallback and not devices:
        return Status.FALLBACK_ONLY.label
    if devices:
        return Status.NO_PASSKEY.label
    return Status.NO_WAY_IN.label if enrolled else Status.INVITED.label


# --- A person ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PasskeyView:
    passkey: Passkey
    decision: Decision
    # From the audit log (passkeys store the browsers, not the addresses).
    created_ip: str | None = None
    last_used_ip: str | None = None


def _ip_of(user: User, action: Action, passkey_id: int) -> str | None:
    return (
        AuditEvent.objects.filter(subject=user, action=action, detail__passkey_id=passkey_id)
        .order_by("-at", "-id")
        .values_list("ip", flat=True)
        .first()
    )


@dataclass
class PersonDetail:
    user: User
    passkeys: list[PasskeyView]
    devices: list[Device]
    has_fallback: bool
    unused_recovery_codes: int
    invites: list[EnrollmentInvite]
    events: list[AuditEvent] = field(default_factory=list)
    status: str = ""
    groups: list[Group] = field(default_factory=list)
    # An enrollment link may be sent them: they may sign in and have set up no way to (what
    # ``do_invite`` checks; someone with one gets a recovery link instead).
    invitable: bool = False
    # Their ways to sign in, each kind set up and allowed by the policy (``ways_left``) ...
    ways: WaysLeft | None = None
    # ... and the IDs of their ``devices`` the policy does not let sign in.
    devices_refused: set[int] = field(default_factory=set)


RECENT_EVENTS = 20


def person_detail(user: User, policy: Policy) -> PersonDetail:
    group_rules = rules_of(user)
    passkeys = [
        PasskeyView(
            passkey,
            evaluate(policy, passkey.policy_facts, group_rules),
            _ip_of(user, Action.PASSKEY_REGISTERED, passkey.pk),
            _ip_of(user, Action.SIGN_IN_SUCCEEDED, passkey.pk) if passkey.last_used_at else None,
        )
        for passkey in Passkey.objects.filter(user=user).order_by("created_at", "id")
    ]
    now = clock.now_datetime()
    invites = list(
        EnrollmentInvite.objects.filter(
            user=user, used_at=None, revoked_at=None, expires_at__gt=now
        ).order_by("-created_at")
    )
    fallback = has_fallback(user)
    ways = ways_left(user, policy)
    set_up = count_sign_in_methods(user)
    devices = list(Device.objects.filter(DEVICE_SET_UP, user=user).order_by("created_at", "id"))
    allowed = set(usable_devices(user, policy)) if policy.allow_device_app_sign_in else set()
    events = list(
        AuditEvent.objects.filter(Q(subject=user) | Q(actor=user))
        .select_related("actor")
        .order_by("-at", "-id")[:RECENT_EVENTS]
    )
    return PersonDetail(
        user=user,
        passkeys=passkeys,
        devices=devices,
        has_fallback=fallback,
        unused_recovery_codes=unused_recovery_codes(user) if fallback else 0,
        invites=invites,
        events=events,
        groups=list(Group.objects.filter(memberships__user=user).order_by("name")),
        status=status_of(
            user,
            ways.passkeys_usable,
            ways.fallback_usable,
            ways.devices_usable,
            enrolled=bool(set_up) or user.invites.filter(used_at__isnull=False).exists(),
        ),
        invitable=user.can_sign_in and not set_up,
        ways=ways,
        devices_refused={device.pk for device in devices if device not in allowed},
    )


@dataclass(frozen=True)
class WaysLeft:
    """The ways a person keeps to sign in after a change takes one away (a confirmation page
    says so): each kind they have set up, and how many of those the policy allows today."""

    passkeys: int
    passkeys_usable: int
    fallback: bool
    fallback_usable: bool
    devices: int
    devices_usable: int
    other: bool  # the passkeys are the others besides the one removed

    @property
    def usable(self) -> int:
        return self.passkeys_usable + int(self.fallback_usable) + self.devices_usable

    @property
    def kept(self) -> str:
        """The ways that still sign in, in words ("2 other passkeys and their password and
        authenticator app")."""
        other = "other " if self.other else ""
        return _and(
            [
                *(
                    [f"{self.passkeys_usable} {other}passkey{_s(self.passkeys_usable)}"]
                    if self.passkeys_usable
                    else []
                ),
                *(["their password and authenticator app"] if self.fallback_usable else []),
                *(
                    [f"Threshold Verify on {self.devices_usable} device{_s(self.devices_usable)}"]
                    if self.devices_usable
                    else []
                ),
            ]
        )

    @property
    def refused(self) -> str:
        """The ways they keep that the policy does not let sign in today, in words ("" if none)."""
        passkeys = self.passkeys - self.passkeys_usable
        devices = self.devices - self.devices_usable
        other = "other " if self.other else ""
        return _and(
            [
                *([f"{passkeys} {other}passkey{_s(passkeys)}"] if passkeys else []),
                *(
                    ["their password and authenticator app"]
                    if self.fallback and not self.fallback_usable
                    else []
                ),
                *([f"Threshold Verify on {devices} device{_s(devices)}"] if devices else []),
            ]
        )


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def _and(parts: list[str]) -> str:
    return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else "".join(parts)


def ways_left(
    user: User,
    policy: Policy,
    *,
    without_passkey: Passkey | None = None,
    without_fallback: bool = False,
    without_device: Device | None = None,
) -> WaysLeft:
    """What ``user`` keeps to sign in once ``without_passkey`` is removed, their password and
    authenticator app reset (``without_fallback``) or one of their devices removed
    (``without_device``): each kind of the sign-in method registry, counted as the last-method
    rule counts it (``accounts.methods``)."""
    counts = {
        method.kind: (method.count(user), method.usable(user, policy))
        for method in sign_in_methods()
    }
    passkeys, passkeys_usable = counts.get(MethodKind.PASSKEY, (0, 0))
    if without_passkey is not None:
        passkeys -= 1
        passkeys_usable -= evaluate(policy, without_passkey.policy_facts, rules_of(user)).allowed
    fallback, fallback_usable = counts.get(MethodKind.PASSWORD_AND_APP, (0, 0))
    devices, devices_usable = counts.get(MethodKind.DEVICE_APP, (0, 0))
    if without_device is not None:
        devices -= 1
        # Less one usable only if it was one: the policy may refuse it (its key's protection).
        devices_usable -= int(
            policy.allow_device_app_sign_in and without_device in usable_devices(user, policy)
        )
    return WaysLeft(
        passkeys=passkeys,
        passkeys_usable=passkeys_usable,
        fallback=bool(fallback) and not without_fallback,
        fallback_usable=bool(fallback_usable) and not without_fallback,
        devices=devices,
        devices_usable=devices_usable,
        other=without_passkey is not None,
    )


def has_working_link(user: User | None) -> bool:
    """Whether ``user`` has a link (enrollment or recovery) that would still work: a new one
    replaces it (``enrollment.actions``), and the page that issues it says so only then."""
    if user is None:
        return False
    return EnrollmentInvite.objects.filter(
        user=user, used_at=None, revoked_at=None, expires_at__gt=clock.now_datetime()
    ).exists()


def newest_link(user: User) -> EnrollmentInvite | None:
    """The link issued to ``user`` last."""
    return EnrollmentInvite.objects.filter(user=user).order_by("-created_at", "-pk").first()


def access_person(user_id: int) -> User:
    """The person with ``user_id``, or Http404."""
    user = User.objects.filter(pk=user_id).first() if 0 < user_id < 2**63 else None
    if user is None:
        raise Http404("no such person")
    return user
