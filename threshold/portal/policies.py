"""The policy page's form and its preview: what a stricter rule would do before it is saved.

The form holds every setting as text, parsed by the setting's own declaration
(``Setting.parse_text``, what ``threshold policy set`` uses). Before a change that
refuses passkeys today's policy allows is saved, the page shows how many passkeys of
how many people it would stop (of what ``threshold policy check`` lists, as
``passkeys.access.list_passkeys_not_allowed`` computes it, those today's policy allows:
``newly_refused``); before any change that would
leave someone who can sign in today with no way to (a passkey refused, the password
fallback or the device app turned off, a TPM required of devices), it shows how many
people and who (``cut_off_by``, every way in counted as the registry counts it).

Changes are saved through ``save_policy`` and ``save_group_rules`` (the portal's pages and
``threshold policy set``), which refuse one that would leave no administrator a way to sign
in, checked and saved in one transaction that holds the policy's row. The other changes that
can leave no administrator a way in are made through here for the same check, in the same
way (``Lockout``, ``_guarded``): a person put in a group whose rules refuse their passkeys
(``add_member``), the administrator role taken away (``set_role``), a lock (``lock_person``)
and a deactivation (``deactivate_person``), from the portal and the command line; and, in the
portal, a passkey or device of someone else's removed (``remove_passkey``, ``remove_device``) or
their password and authenticator app reset (``reset_fallback``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import reduce
from operator import or_
from typing import Any, TypeVar

from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet

from threshold.accounts.actions import do_deactivate_user, do_lock_user, do_set_role
from threshold.accounts.methods import count_usable_sign_in_methods
from threshold.accounts.models import Role, User
from threshold.audit.actions import Origin
from threshold.core.policy import (
    GROUP_SETTINGS,
    SETTINGS,
    SETTINGS_BY_NAME,
    Decision,
    GroupRules,
    Kind,
    Policy,
    PolicyError,
    Setting,
    evaluate,
    turned_off_by,
)
from threshold.devices.actions import access_own_device, do_remove_device, usable_devices
from threshold.devices.models import Device, KeyProtection
from threshold.fallback.actions import do_reset_fallback, has_fallback
from threshold.groups.access import members_of, rules_by_user, rules_of
from threshold.groups.actions import do_add_member, do_set_group_rules, hold_group
from threshold.groups.models import Group, Membership
from threshold.passkeys.access import access_own_passkey
from threshold.passkeys.actions import do_remove_passkey
from threshold.passkeys.models import Passkey
from threshold.policy.actions import do_update_policy, lock_policy
from threshold.portal import usable
from threshold.portal.people import WaysLeft, ways_left

_TEXT_MAX = 4000


def text_of(setting: Setting, value: Any) -> str:
    """A value as the form shows it: the command line's spelling (lists comma-separated)."""
    if setting.kind is Kind.BOOLEAN:
        return "true" if value else "false"
    return setting.text(value)


@dataclass(frozen=True)
class Field:
    setting: Setting
    text: str  # what the form holds
    error: str = ""

    @property
    def name(self) -> str:
        return self.setting.name


def fields_of(policy: Policy, texts: Mapping[str, str] | None = None) -> list[Field]:
    texts = texts or {}
    return [
        Field(setting, texts.get(setting.name, text_of(setting, getattr(policy, setting.name))))
        for setting in SETTINGS
    ]


def parse(current: Policy, form: Mapping[str, str]) -> tuple[Policy | None, list[Field]]:
    """The policy the form asks for (every setting parsed as the CLI does), or None and the
    fields with their errors. A setting the form leaves out keeps its current value."""
    values: dict[str, Any] = {}
    fields = []
    for setting in SETTINGS:
        text = form.get(setting.name)
        if text is None:
            text = text_of(setting, getattr(current, setting.name))
        text = text.strip()[:_TEXT_MAX]
        try:
            values[setting.name] = setting.parse_text(text)
        except PolicyError as exc:
            fields.append(Field(setting, text, str(exc)))
            continue
        fields.append(Field(setting, text))
    if any(field.error for field in fields):
        return None, fields
    try:
        return dataclasses.replace(current, **values), fields
    except PolicyError as exc:  # pragma: no cover - every value was validated above
        return None, [dataclasses.replace(fields[0], error=str(exc)), *fields[1:]]


@dataclass(frozen=True)
class Lockout:
    """Who a change would leave with no usable way to sign in among those it must not strand:
    the administrators (a change that strands every one of them who can sign in today is
    refused: nobody could sign in to the portal to undo it), and the person making it (asked
    to confirm it)."""

    administrators: int  # administrators who can sign in today
    administrators_cut_off: list[User] = dataclasses.field(default_factory=list)
    viewer_cut_off: bool = False

    @property
    def no_administrator_left(self) -> bool:
        return self.administrators > 0 and len(self.administrators_cut_off) >= self.administrators

    @property
    def anyone(self) -> bool:
        return bool(self.administrators_cut_off) or self.viewer_cut_off


# What a change refused for leaving no administrator a way in is answered with (the portal's
# 409 page and `threshold policy set`).
NO_ADMINISTRATOR_LEFT = (
    "This change would leave no administrator able to sign in, so it was not saved. Give an "
    "administrator a way to sign in that the new rules allow first, then save it."
)


def _lockout(
    viewer: User | None, usable_now: Callable[[User], int], usable_after: Callable[[User], int]
) -> Lockout:
    """``Lockout`` from the usable ways to sign in of each person today and after the change
    (``viewer``: the person making it; None from the command line).
    Administrators are few: each is counted through the sign-in method registry."""
    administrators = User.objects.filter(role=Role.ADMINISTRATOR, is_active=True, locked_at=None)
    can_now = [user for user in administrators.order_by("username") if usable_now(user) > 0]
    cut_off = [user for user in can_now if usable_after(user) == 0]
    viewer_cut_off = viewer is not None and usable_now(viewer) > 0 and usable_after(viewer) == 0
    return Lockout(len(can_now), cut_off, viewer_cut_off)


def policy_lockout(current: Policy, new: Policy, viewer: User | None = None) -> Lockout:
    """Who replacing ``current`` with ``new`` would cut off among the administrators and
    ``viewer``: the check the policy page, the authenticators' lists and ``threshold policy
    set`` make before saving (``Lockout.no_administrator_left``: refused)."""
    return _lockout(
        viewer,
        lambda user: count_usable_sign_in_methods(user, current),
        lambda user: count_usable_sign_in_methods(user, new),
    )


# How many of the people a change would cut off its preview names (it counts them all).
CUT_OFF_SHOWN = 200


@dataclass(frozen=True)
class CutOff:
    """Someone who can sign in today and could not under a change: who, and what they sign in
    with today, in words ("their password and authenticator app")."""

    user: User
    today: str


@dataclass(frozen=True)
class Preview:
    """What saving ``new`` would stop: passkeys allowed today that it refuses, and whom it
    would leave with no way to sign in: of everyone who can sign in today (neither locked nor
    deactivated), and among them the administrators and the viewer."""

    refused: list[tuple[Passkey, Decision]]
    people: list[User]
    stranded: list[User]  # of ``people``, those who can sign in today and could not after
    lockout: Lockout = dataclasses.field(default_factory=lambda: Lockout(0))
    # Everyone who can sign in today and could not after, whatever takes their last way in (a
    # passkey refused, the fallback or the device app no longer allowed): how many, and the
    # first ``CUT_OFF_SHOWN`` of them by username.
    cut_off: int = 0
    cut_off_shown: list[CutOff] = dataclasses.field(default_factory=list)

    @property
    def passkeys(self) -> int:
        return len(self.refused)

    @property
    def needed(self) -> bool:
        """Whether the change must be shown before it is saved."""
        return bool(self.refused) or bool(self.cut_off) or self.lockout.anyone


def _losing(current: Policy, new: Policy, *, refuses_passkeys: bool) -> Q | None:
    """The people ``new`` takes a way to sign in from that ``current`` allows them (a filter
    on ``User``), None when it takes none from anyone: a passkey it refuses (when it
    ``refuses_passkeys`` that ``current`` allows), the fallback or the device app no longer
    allowed, a device whose key is not in a TPM."""
    arms = []
    if refuses_passkeys:
        refused_now = usable.usable_passkeys(current).filter(usable.refused_passkeys(new))
        arms.append(Q(Exists(refused_now.filter(user=OuterRef("pk")))))
    if current.allow_password_fallback and not new.allow_password_fallback:
        arms.append(usable.has_usable_fallback(current))
    if current.allow_device_app_sign_in and (
        not new.allow_device_app_sign_in
        or (new.require_hardware_device_key and not current.require_hardware_device_key)
    ):
        lost = usable.usable_devices(current)
        if new.allow_device_app_sign_in:
            lost = lost.exclude(key_protection=KeyProtection.TPM)
        arms.append(Q(Exists(lost.filter(user=OuterRef("pk")))))
    return reduce(or_, arms) if arms else None


def cut_off_by(current: Policy, new: Policy, *, refuses_passkeys: bool = True) -> QuerySet[User]:
    """Everyone who can sign in today under ``current`` (neither locked nor deactivated, with
    a way in it allows) and could not under ``new``: one query, whatever the number of people
    (``portal.usable`` counts as the sign-in method registry does). ``refuses_passkeys``
    False: ``new`` refuses no passkey ``current`` allows (known already), none is looked at."""
    losing = _losing(current, new, refuses_passkeys=refuses_passkeys)
    if losing is None:
        return User.objects.none()
    return User.objects.filter(
        Q(is_active=True, locked_at=None) & losing & ~usable.has_a_usable_method(new)
    )


def _cut_off_shown(ids: list[int], policy: Policy) -> list[CutOff]:
    """The people of ``ids`` (in that order), with what they sign in with under ``policy``."""
    found = {user.pk: user for user in usable.with_methods(User.objects.filter(pk__in=ids), policy)}
    return [
        CutOff(
            user,
            WaysLeft(
                passkeys=user.passkey_count,
                passkeys_usable=user.usable_passkeys,
                fallback=user.has_fallback,
                fallback_usable=bool(user.usable_fallback),
                devices=user.device_count,
                devices_usable=user.usable_devices,
                other=False,
            ).kept,
        )
        for user in (found[pk] for pk in ids if pk in found)
    ]


def newly_refused(current: Policy, new: Policy) -> list[tuple[Passkey, Decision]]:
    """The passkeys ``new`` refuses that ``current`` allows, with why, by person: of what
    ``passkeys.access.list_passkeys_not_allowed`` lists for each, those it lists for ``new``
    alone. Chosen in SQL (``usable``), so only they are read and evaluated."""
    passkeys = list(
        usable.usable_passkeys(current)
        .filter(usable.refused_passkeys(new))
        .select_related("user")
        .order_by("user__username", "created_at", "id")
    )
    rules = rules_by_user({passkey.user_id for passkey in passkeys})
    decisions = (
        (passkey, evaluate(new, passkey.policy_facts, rules.get(passkey.user_id, ())))
        for passkey in passkeys
    )
    return [(passkey, decision) for passkey, decision in decisions if not decision.allowed]


def preview(current: Policy, new: Policy, viewer: User) -> Preview:
    """The passkeys ``new`` refuses that ``current`` allows and their people; everyone who can
    sign in today and could not under ``new`` (``cut_off_by``: a passkey refused, the fallback
    or the device app no longer allowed, ...), and so which of those people are left with no
    usable method; and, of the administrators and ``viewer``, who could sign in today and
    could not under ``new``."""
    refused = newly_refused(current, new)
    people: dict[int, User] = {}
    for passkey, _ in refused:
        people.setdefault(passkey.user.pk, passkey.user)
    cut_off = list(
        cut_off_by(current, new, refuses_passkeys=bool(refused))
        .order_by("username")
        .values_list("pk", flat=True)
    )
    left = set(cut_off)
    return Preview(
        refused,
        list(people.values()),
        [user for user in people.values() if user.pk in left],
        policy_lockout(current, new, viewer),
        cut_off=len(cut_off),
        cut_off_shown=_cut_off_shown(cut_off[:CUT_OFF_SHOWN], current),
    )


class NoAdministratorLeft(Exception):
    """A change refused, nothing stored: it would leave no administrator who can sign in
    today a way to (``lockout``: who it would cut off). Its text says which change and what
    to do first (``NO_ADMINISTRATOR_LEFT`` for a policy or group rules change)."""

    def __init__(self, lockout: Lockout, message: str = NO_ADMINISTRATOR_LEFT) -> None:
        super().__init__(message)
        self.lockout = lockout


_T = TypeVar("_T")


def _guarded(
    check: Callable[[Policy], Lockout],
    change: Callable[[], _T],
    refusal: str = NO_ADMINISTRATOR_LEFT,
    *,
    force: bool = False,
) -> tuple[_T, Lockout]:
    """What ``change()`` returns, and whom ``check`` (given the policy in force) finds it cuts
    off; ``NoAdministratorLeft`` (with ``refusal``), nothing stored, when it would leave no
    administrator a way in, unless ``force`` (the command line's ``--force``).

    The check and the change are one transaction that holds the policy's row from the start
    (``lock_policy``, which every change made through here takes first, before any other row):
    a change made meanwhile by someone else is either waited for and checked against, or
    waits for this one. So two changes, each of which alone leaves an administrator a way in,
    cannot together leave none (``test_policy_lockout_race.py``).
    """
    with transaction.atomic():
        policy = lock_policy()
        lockout = check(policy)
        if lockout.no_administrator_left and not force:
            raise NoAdministratorLeft(lockout, refusal)
        return change(), lockout


class ChangedMeanwhile(Exception):
    """A change refused, nothing stored: what it was made from (the policy or a group's rules
    a form showed, or a command read) is no longer what is saved. Someone else's change came
    first; saving this one would quietly undo it."""


def version_of(document: Mapping[str, Any]) -> str:
    """A fingerprint of a policy's or a group's rules' saved values. A form carries the one it
    was shown (``version``), and a save whose fingerprint is no longer the saved one's is
    refused (``ChangedMeanwhile``) instead of overwriting a change made meanwhile."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


def differences(saved: list[Field], typed: list[Field]) -> list[Field]:
    """The settings whose saved value (``saved``) is not what the form holds (``typed``)."""
    held = {field.name: field.text for field in typed}
    return [field for field in saved if held.get(field.name) != field.text]


def save_policy(
    new: Policy,
    origin: Origin,
    actor: User | None = None,
    *,
    force: bool = False,
    based_on: Policy | None = None,
) -> Lockout:
    """Store ``new`` unless it would leave no administrator a way in (``NoAdministratorLeft``;
    ``force``: stored anyway, ``threshold policy set --force``), and return who it cuts off.
    Checked (``_guarded``) against the policy in force when it is saved, not the one a preview
    was shown for; ``ChangedMeanwhile`` when that is no longer ``based_on``, the policy
    ``new`` was made from (a whole document saved over another administrator's change would
    undo it)."""

    def check(current: Policy) -> Lockout:
        if based_on is not None and current != based_on:
            raise ChangedMeanwhile()
        return policy_lockout(current, new)

    _, lockout = _guarded(check, lambda: do_update_policy(new, origin, actor), force=force)
    return lockout


# --- A group's rules ------------------------------------------------------------------------------


def group_fields_of(rules: GroupRules, texts: Mapping[str, str] | None = None) -> list[Field]:
    texts = texts or {}
    return [
        Field(
            SETTINGS_BY_NAME[name],
            texts.get(name, text_of(SETTINGS_BY_NAME[name], getattr(rules, name))),
        )
        for name in GROUP_SETTINGS
    ]


def parse_group_rules(group: str, form: Mapping[str, str]) -> tuple[GroupRules | None, list[Field]]:
    """A group's rules from the form, each parsed by its setting's declaration, or None and
    the fields with their errors. A setting the form leaves out is not set."""
    values: dict[str, Any] = {}
    fields = []
    for name in GROUP_SETTINGS:
        setting = SETTINGS_BY_NAME[name]
        text = str(form.get(name) or text_of(setting, setting.default)).strip()[:_TEXT_MAX]
        try:
            values[name] = setting.parse_text(text)
        except PolicyError as exc:
            fields.append(Field(setting, text, str(exc)))
            continue
        fields.append(Field(setting, text))
    if any(field.error for field in fields):
        return None, fields
    return GroupRules(group, **values), fields


def _passkeys_under(
    policy: Policy, member: User, before: tuple[GroupRules, ...], after: tuple[GroupRules, ...]
) -> tuple[list[tuple[Passkey, Decision]], int]:
    """``member``'s passkeys that ``before`` (their groups' rules today) allows and ``after``
    refuses, and how many of their passkeys ``after`` allows."""
    newly = []
    allowed_after = 0
    for passkey in Passkey.objects.filter(user=member).select_related("user"):
        decision = evaluate(policy, passkey.policy_facts, after)
        if decision.allowed:
            allowed_after += 1
        elif evaluate(policy, passkey.policy_facts, before).allowed:
            newly.append((passkey, decision))
    return newly, allowed_after


def _replacing(
    before: tuple[GroupRules, ...], group: Group, rules: GroupRules
) -> tuple[GroupRules, ...]:
    return (*(other for other in before if other.group != group.name), rules)


def _others_usable(member: User, policy: Policy, groups: tuple[GroupRules, ...]) -> int:
    """The other kinds of method ``member`` could use were their groups' rules ``groups``:
    the password fallback and their Threshold Verify devices, which a group may turn off."""
    fallback = int(
        turned_off_by(policy, groups, "allow_password_fallback") is None and has_fallback(member)
    )
    if turned_off_by(policy, groups, "allow_device_app_sign_in") is not None:
        return fallback
    return fallback + len(usable_devices(member, policy, groups))


def _usable_in(policy: Policy, user: User, group: Group, rules: GroupRules) -> int:
    """The ways ``user`` could sign in were they in ``group`` (already, or put in it) and
    ``group``'s rules ``rules``."""
    before = rules_of(user)
    after = _replacing(before, group, rules)
    _, allowed_after = _passkeys_under(policy, user, before, after)
    return allowed_after + _others_usable(user, policy, after)


def group_lockout(
    policy: Policy, group: Group, rules: GroupRules, viewer: User | None = None
) -> Lockout:
    """Who giving ``group`` the ``rules`` would cut off among the administrators and
    ``viewer``: the check a group's rules page makes before saving."""

    def usable_now(user: User) -> int:
        return count_usable_sign_in_methods(user, policy)

    def usable_after(user: User) -> int:
        if not Membership.objects.filter(group=group, user=user).exists():
            return usable_now(user)
        return _usable_in(policy, user, group, rules)

    return _lockout(viewer, usable_now, usable_after)


def member_lockout(policy: Policy, group: Group, joining: User) -> Lockout:
    """Who putting ``joining`` in ``group`` would cut off among the administrators: them,
    when they are one who can sign in today and the group's rules refuse every way they
    do (a member already is not cut off by staying one)."""
    rules = GroupRules.from_document(group.name, group.rules)

    def usable_now(user: User) -> int:
        return count_usable_sign_in_methods(user, policy)

    def usable_after(user: User) -> int:
        if user.pk != joining.pk or Membership.objects.filter(group=group, user=user).exists():
            return usable_now(user)
        return _usable_in(policy, user, group, rules)

    return _lockout(None, usable_now, usable_after)


def preview_group(policy: Policy, group: Group, rules: GroupRules, viewer: User) -> Preview:
    """What giving ``group`` the ``rules`` would stop: its members' passkeys allowed today
    that the new rules refuse, and who of those who can sign in today would be left with no
    usable way to (among them, the administrators and ``viewer``: ``group_lockout``)."""
    members = list(members_of(group))
    current = rules_by_user(member.pk for member in members)
    refused: list[tuple[Passkey, Decision]] = []
    people: list[User] = []
    stranded: list[User] = []
    for member in members:
        before = current.get(member.pk, ())
        after = _replacing(before, group, rules)
        newly, allowed_after = _passkeys_under(policy, member, before, after)
        others_after = _others_usable(member, policy, after)
        # The password or the push turned off for them: no passkey refused, a way in lost.
        loses_others = others_after < _others_usable(member, policy, before)
        if newly:
            refused += newly
            people.append(member)
        if (newly or loses_others) and member.can_sign_in and allowed_after + others_after == 0:
            stranded.append(member)
    shown = [member.pk for member in stranded[:CUT_OFF_SHOWN]]
    return Preview(
        refused,
        people,
        stranded,
        group_lockout(policy, group, rules, viewer),
        cut_off=len(stranded),
        cut_off_shown=_cut_off_shown(shown, policy),
    )


def save_group_rules(
    group: Group,
    rules: GroupRules,
    origin: Origin,
    actor: User | None = None,
    *,
    based_on: Mapping[str, Any] | None = None,
) -> bool:
    """Give ``group`` the ``rules`` unless they would leave no administrator a way in
    (``NoAdministratorLeft``); False when they did not change. As ``save_policy``: one
    transaction that holds the policy's row from the start, checked against the policy and
    the groups' rules in force then (``Group.DoesNotExist``: the group was removed;
    ``ChangedMeanwhile``: its rules are no longer ``based_on``, the ones the form showed)."""

    def check(policy: Policy) -> Lockout:
        # Read again and held (after the policy's row) until the rules are saved: a removal
        # made meanwhile is waited for, then is Group.DoesNotExist, not a save of no row.
        hold_group(group)
        if based_on is not None and group.rules != based_on:
            raise ChangedMeanwhile()
        return group_lockout(policy, group, rules)

    changed, _ = _guarded(check, lambda: do_set_group_rules(group, rules, origin, actor=actor))
    return changed


# --- Changes of people that can leave no administrator a way in ---------------------------------

# What a change of one person refused for leaving no administrator a way in is answered with
# (the portal's 409 page and the command line), ``who`` their name.
JOINING_LEAVES_NO_ADMINISTRATOR = (
    "Adding {who} to {group} would leave no administrator able to sign in, so they were not "
    "added: the group's rules refuse their passkeys. Give an administrator a way to sign in "
    "that the group's rules allow first, then add them."
)
ROLE_LEAVES_NO_ADMINISTRATOR = (
    "Taking the administrator role from {who} would leave no administrator able to sign in, "
    "so the role was not saved. Make someone who can sign in an administrator first, then "
    "save it."
)
LOCK_LEAVES_NO_ADMINISTRATOR = (
    "Locking {who} would leave no administrator able to sign in, so they were not locked. "
    "Make someone who can sign in an administrator first, then lock them."
)
DEACTIVATION_LEAVES_NO_ADMINISTRATOR = (
    "Deactivating {who} would leave no administrator able to sign in, so they were not "
    "deactivated. Make someone who can sign in an administrator first, then deactivate them."
)


def person_lockout(policy: Policy, person: User) -> Lockout:
    """Who taking ``person`` out of the administrators who can sign in (the administrator
    role taken away, a lock, a deactivation) would cut off: them, when they are one."""

    def usable_now(user: User) -> int:
        return count_usable_sign_in_methods(user, policy)

    return _lockout(None, usable_now, lambda user: 0 if user.pk == person.pk else usable_now(user))


def add_member(
    group: Group, user: User, origin: Origin, actor: User | None = None, *, force: bool = False
) -> tuple[bool, Lockout]:
    """Put ``user`` in ``group`` (``do_add_member``: False when they were a member already)
    unless its rules would leave no administrator a way in (``NoAdministratorLeft``; ``force``:
    anyway), and who it cuts off. Checked (``_guarded``) against the group's rules in force
    then (``Group.DoesNotExist``: the group was removed)."""

    def check(policy: Policy) -> Lockout:
        group.refresh_from_db(fields=["name", "rules"])
        return member_lockout(policy, group, user)

    return _guarded(
        check,
        lambda: do_add_member(group, user, origin, actor=actor),
        JOINING_LEAVES_NO_ADMINISTRATOR.format(who=user.display_name, group=group.name),
        force=force,
    )


def set_role(
    user: User, role: Role, origin: Origin, actor: User | None = None, *, force: bool = False
) -> tuple[bool, Lockout]:
    """Give ``user`` the ``role`` (``do_set_role``: False when unchanged) unless taking their
    administrator role away would leave no administrator a way in (``NoAdministratorLeft``;
    ``force``: anyway), and who it cuts off (``_guarded``)."""
    return _guarded(
        lambda policy: (
            Lockout(0) if Role(role) is Role.ADMINISTRATOR else person_lockout(policy, user)
        ),
        lambda: do_set_role(user, role, origin, actor=actor),
        ROLE_LEAVES_NO_ADMINISTRATOR.format(who=user.display_name),
        force=force,
    )


def lock_person(
    user: User,
    origin: Origin,
    reason: str = "",
    actor: User | None = None,
    *,
    force: bool = False,
) -> tuple[bool, Lockout]:
    """Lock ``user`` (``do_lock_user``: False when locked already; ValueError for a reason
    ``clean_lock_reason`` refuses) unless it would leave no administrator a way in
    (``NoAdministratorLeft``; ``force``: anyway), and who it cuts off (``_guarded``)."""
    return _guarded(
        lambda policy: person_lockout(policy, user),
        lambda: do_lock_user(user, origin, reason, actor=actor),
        LOCK_LEAVES_NO_ADMINISTRATOR.format(who=user.display_name),
        force=force,
    )


def deactivate_person(
    user: User, origin: Origin, actor: User | None = None, *, force: bool = False
) -> tuple[bool, Lockout]:
    """Deactivate ``user`` (``do_deactivate_user``: False when they were already) unless it
    would leave no administrator a way in (``NoAdministratorLeft``; ``force``: anyway), and
    who it cuts off (``_guarded``)."""
    return _guarded(
        lambda policy: person_lockout(policy, user),
        lambda: do_deactivate_user(user, origin, actor=actor),
        DEACTIVATION_LEAVES_NO_ADMINISTRATOR.format(who=user.display_name),
        force=force,
    )


# --- Someone else's sign-in methods, removed from the admin portal --------------------------

REMOVAL_LEAVES_NO_ADMINISTRATOR = (
    "Removing this from {who} would leave no administrator able to sign in, so nothing was "
    "removed. Make sure another administrator can sign in first."
)


def _method_lockout(person: User, usable_after: int, policy: Policy) -> Lockout:
    """Who removing one of ``person``'s ways to sign in, leaving ``usable_after``, would cut
    off among the administrators: them, when they are the last who can sign in. (Two
    administrators removing each other's last passkeys at once: the second is refused.)"""

    def usable_now(user: User) -> int:
        return count_usable_sign_in_methods(user, policy)

    return _lockout(
        None, usable_now, lambda u: usable_after if u.pk == person.pk else usable_now(u)
    )


def remove_passkey(user: User, passkey_id: int, origin: Origin, actor: User) -> Passkey:
    """``do_remove_passkey`` from the admin portal: by someone else, unless it would leave no
    administrator a way in (``NoAdministratorLeft``); ``SecurityMethodNotFound`` for a passkey
    that is not theirs. One's own follows the last-method rule (``LastSignInMethod``, its
    refusal audited), which keeps them a way in: no check here, whose transaction would take
    the refusal's audit row with it."""
    return _remove_method(
        user,
        actor,
        lambda policy: (
            ways_left(user, policy, without_passkey=access_own_passkey(user, passkey_id)).usable
        ),
        lambda: do_remove_passkey(user, passkey_id, origin, actor=actor),
    )


def remove_device(user: User, public_id: str, origin: Origin, actor: User) -> Device:
    """``do_remove_device`` from the admin portal (a lost or stolen phone), as
    ``remove_passkey``: by someone else, unless it would leave no administrator a way in;
    ``SecurityMethodNotFound`` for a device that is not theirs."""
    return _remove_method(
        user,
        actor,
        lambda policy: (
            ways_left(user, policy, without_device=access_own_device(user, public_id)).usable
        ),
        lambda: do_remove_device(user, public_id, origin, actor=actor),
    )


def _remove_method(
    user: User, actor: User, usable_after: Callable[[Policy], int], remove: Callable[[], _T]
) -> _T:
    """``remove()`` one of ``user``'s ways to sign in: one's own at once (the last-method rule
    decides), someone else's guarded (``usable_after``: how many ways they keep by ``policy``)."""
    if actor.pk == user.pk:
        return remove()
    removed, _ = _guarded(
        lambda policy: _method_lockout(user, usable_after(policy), policy),
        remove,
        REMOVAL_LEAVES_NO_ADMINISTRATOR.format(who=user.display_name),
    )
    return removed


def reset_fallback(user: User, origin: Origin, actor: User) -> None:
    """``do_reset_fallback`` (the admin portal), unless it would leave no administrator a way
    in (``NoAdministratorLeft``)."""
    _guarded(
        lambda policy: _method_lockout(
            user, ways_left(user, policy, without_fallback=True).usable, policy
        ),
        lambda: do_reset_fallback(user, origin, actor=actor),
        REMOVAL_LEAVES_NO_ADMINISTRATOR.format(who=user.display_name),
    )
