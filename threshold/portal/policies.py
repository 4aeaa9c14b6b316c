"""The policy page's form and its preview: what a stricter rule would do before it is saved.

The form holds every setting as text, parsed by the setting's own declaration
(``Setting.parse_text``, what ``threshold policy set`` uses). Before a change that
refuses passkeys today's policy allows is saved, the page shows how many passkeys of
how many people it would stop, and who would be left with no usable way to sign in:
what ``threshold policy check`` lists, as ``passkeys.access.list_passkeys_not_allowed``
computes it.

Changes are saved through ``save_policy`` and ``save_group_rules`` (the portal's pages and
``threshold policy set``), which refuse one that would leave no administrator a way to sign
in, checked and saved in one transaction that holds the policy's row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import transaction

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
)
from threshold.groups.access import members_of, rules_by_user, rules_of
from threshold.groups.actions import do_set_group_rules
from threshold.groups.models import Group, Membership
from threshold.passkeys.access import list_passkeys_not_allowed
from threshold.passkeys.methods import count_usable_passkeys
from threshold.passkeys.models import Passkey
from threshold.policy.actions import do_update_policy, lock_policy

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


@dataclass(frozen=True)
class Preview:
    """What saving ``new`` would stop: passkeys allowed today that it refuses, and whom it
    would leave with no way to sign in among the administrators and the viewer."""

    refused: list[tuple[Passkey, Decision]]
    people: list[User]
    stranded: list[User]  # of ``people``, those with no usable way to sign in left
    lockout: Lockout = dataclasses.field(default_factory=lambda: Lockout(0))

    @property
    def passkeys(self) -> int:
        return len(self.refused)

    @property
    def needed(self) -> bool:
        """Whether the change must be shown before it is saved."""
        return bool(self.refused) or self.lockout.anyone


def preview(current: Policy, new: Policy, viewer: User) -> Preview:
    """The passkeys ``new`` refuses that ``current`` allows, their people, and who is left
    with no usable method (the registry counts every kind, the fallback included); and, of
    the administrators and ``viewer``, who could sign in today and could not under ``new``
    (whatever takes their way in: a passkey refused, the fallback no longer allowed, ...)."""
    already = {passkey.pk for passkey, _ in list_passkeys_not_allowed(current)}
    refused = [
        (passkey, decision)
        for passkey, decision in list_passkeys_not_allowed(new)
        if passkey.pk not in already
    ]
    people: dict[int, User] = {}
    for passkey, _ in refused:
        people.setdefault(passkey.user.pk, passkey.user)
    stranded = [user for user in people.values() if count_usable_sign_in_methods(user, new) == 0]
    return Preview(refused, list(people.values()), stranded, policy_lockout(current, new, viewer))


class NoAdministratorLeft(Exception):
    """A policy or group rules change refused, nothing stored: it would leave no
    administrator who can sign in today a way to (``lockout``: who it would cut off)."""

    def __init__(self, lockout: Lockout) -> None:
        super().__init__(NO_ADMINISTRATOR_LEFT)
        self.lockout = lockout


def save_policy(
    new: Policy, origin: Origin, actor: User | None = None, *, force: bool = False
) -> Lockout:
    """Store ``new`` unless it would leave no administrator a way in (``NoAdministratorLeft``;
    ``force``: stored anyway, ``threshold policy set --force``), and return who it cuts off.

    The check and the save are one transaction that holds the policy's row from the start
    (``lock_policy``, which every policy or group rules change takes first): a change made
    meanwhile by someone else is either waited for and checked against, or waits for this one.
    Checked against the policy in force then, not the one a preview was shown for.
    """
    with transaction.atomic():
        current = lock_policy()
        lockout = policy_lockout(current, new)
        if lockout.no_administrator_left and not force:
            raise NoAdministratorLeft(lockout)
        do_update_policy(new, origin, actor)
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


def _others_usable(member: User, policy: Policy) -> int:
    """The other kinds of method ``member`` can use today (the fallback, ...)."""
    return count_usable_sign_in_methods(member, policy) - count_usable_passkeys(member, policy)


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
        before = rules_of(user)
        newly, allowed_after = _passkeys_under(
            policy, user, before, _replacing(before, group, rules)
        )
        return allowed_after + _others_usable(user, policy) if newly else usable_now(user)

    return _lockout(viewer, usable_now, usable_after)


def preview_group(policy: Policy, group: Group, rules: GroupRules, viewer: User) -> Preview:
    """What giving ``group`` the ``rules`` would stop: its members' passkeys allowed today
    that the new rules refuse, and who would be left with no usable way to sign in (among
    them, the administrators and ``viewer``: ``group_lockout``)."""
    members = list(members_of(group))
    current = rules_by_user(member.pk for member in members)
    refused: list[tuple[Passkey, Decision]] = []
    people: list[User] = []
    stranded: list[User] = []
    for member in members:
        before = current.get(member.pk, ())
        newly, allowed_after = _passkeys_under(
            policy, member, before, _replacing(before, group, rules)
        )
        if not newly:
            continue
        refused += newly
        people.append(member)
        if allowed_after + _others_usable(member, policy) == 0:
            stranded.append(member)
    return Preview(refused, people, stranded, group_lockout(policy, group, rules, viewer))


def save_group_rules(
    group: Group, rules: GroupRules, origin: Origin, actor: User | None = None
) -> bool:
    """Give ``group`` the ``rules`` unless they would leave no administrator a way in
    (``NoAdministratorLeft``); False when they did not change. As ``save_policy``: one
    transaction that holds the policy's row from the start, checked against the policy and
    the groups' rules in force then (``Group.DoesNotExist``: the group was removed)."""
    with transaction.atomic():
        policy = lock_policy()
        group.refresh_from_db(fields=["name", "rules"])
        lockout = group_lockout(policy, group, rules)
        if lockout.no_administrator_left:
            raise NoAdministratorLeft(lockout)
        return do_set_group_rules(group, rules, origin, actor=actor)
