"""The ways people can sign in under a policy, counted in SQL for many people at once.

The sign-in method registry (``accounts.methods``) counts one person's ways in by asking each
kind of method; the admin portal's lists and figures (the people list, the readiness
dashboard, the policy preview) and ``threshold users`` ask it of everyone, so they count here
with the same rules written as query expressions, in a fixed number of queries whatever the
number of people:

- a passkey, unless the policy or one of its owner's groups' rules refuses it
  (``core.policy.evaluate``, clause by clause: ``refused_passkeys``);
- the password and authenticator app, once set up, while ``allow_password_fallback`` and no
  group of its owner's turns it off (``fallback.methods``);
- Threshold Verify on a device, confirmed and not revoked, while ``allow_device_app_sign_in``
  and no group of its owner's turns it off, and with ``require_hardware_device_key`` only a
  key held in a TPM (``devices.actions.usable_devices``).

``COUNTED`` names those kinds; tests/integration/test_admin_week_review.py checks that they
are the registry's and that the counts here are the registry's, person by person.
"""

from __future__ import annotations

import uuid
from functools import reduce
from operator import or_
from typing import Any

from django.db.models import (
    BooleanField,
    Case,
    Count,
    Exists,
    ExpressionWrapper,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Left
from django.db.models.lookups import Exact

from threshold.accounts.methods import MethodKind
from threshold.accounts.models import User
from threshold.core.policy import GroupRules, Policy
from threshold.core.vocabulary import AttestationFormat
from threshold.devices.models import Device, KeyProtection
from threshold.fallback.models import TotpDevice
from threshold.groups.models import Group, Membership
from threshold.passkeys.models import Passkey

# The kinds of method counted here: every kind the registry holds.
COUNTED = frozenset({MethodKind.PASSKEY, MethodKind.PASSWORD_AND_APP, MethodKind.DEVICE_APP})

# A device app installation that is set up: confirmed, not revoked (``devices.actions
# .list_devices``, what the registry counts as set up).
DEVICE_SET_UP = Q(is_active=True, revoked_at__isnull=True)

# The anchors whose chains prove a passkey's AAGUID (``core.attestation.anchor_proves_aaguid``):
# the metadata entry's own roots and the organisation's configured anchors, never through a
# fido-u2f statement. Compared with "=", which is case-sensitive on both databases (SQLite's
# LIKE is not).
_MDS_ANCHOR = "FIDO MDS: "
_CONFIGURED_ANCHOR = "configured trust anchor"
_AAGUID_PROVEN = (
    Q(attestation_trusted=True)
    & ~Q(attestation_format=AttestationFormat.FIDO_U2F.value)
    & (
        Q(Exact(Left("trust_anchor", len(_MDS_ANCHOR)), Value(_MDS_ANCHOR)))
        | Q(trust_anchor=_CONFIGURED_ANCHOR)
    )
)


def _aaguids(listed: tuple[str, ...]) -> list[uuid.UUID]:
    return [uuid.UUID(aaguid) for aaguid in listed]


def _rule_refusals(
    *,
    block_synced: bool,
    require_trusted: bool,
    allow_list: tuple[str, ...],
    deny_list: tuple[str, ...],
) -> list[Q]:
    """The clauses of the rules a group may make stricter (``core.policy.GROUP_SETTINGS``),
    each matching the passkeys it refuses."""
    refusals = []
    if deny_list:
        refusals.append(Q(aaguid__in=_aaguids(deny_list)))
    if allow_list:
        refusals.append(~(Q(aaguid__in=_aaguids(allow_list)) & _AAGUID_PROVEN))
    if require_trusted:
        refusals.append(Q(attestation_trusted=False))
    if block_synced:
        refusals.append(Q(backup_eligible=True))
    return refusals


def _group_refusals(rules: GroupRules) -> list[Q]:
    return _rule_refusals(
        block_synced=rules.block_synced_passkeys,
        require_trusted=rules.require_trusted_attestation,
        allow_list=rules.aaguid_allow_list,
        deny_list=rules.aaguid_deny_list,
    )


def refused_passkeys(policy: Policy) -> Q:
    """The passkeys ``policy`` or their owners' groups' rules refuse, as a filter on
    ``Passkey`` (``core.policy.evaluate``). One query reads the groups that have rules."""
    refusals = _rule_refusals(
        block_synced=policy.block_synced_passkeys,
        require_trusted=policy.require_trusted_attestation,
        allow_list=policy.aaguid_allow_list,
        deny_list=policy.aaguid_deny_list,
    )
    if policy.refuse_u2f_authenticators:
        refusals.append(Q(attestation_format=AttestationFormat.FIDO_U2F.value))
    refusals.append(~Q(alg__in=list(policy.allowed_algorithms)))
    for pk, name, document in Group.objects.exclude(rules={}).values_list("pk", "name", "rules"):
        by_group = _group_refusals(GroupRules.from_document(name, document))
        if by_group:
            member = Exists(Membership.objects.filter(group_id=pk, user_id=OuterRef("user_id")))
            refusals.append(Q(member) & reduce(or_, by_group))
    return reduce(or_, refusals)


def usable_passkeys(policy: Policy) -> QuerySet[Passkey]:
    """Every passkey ``policy`` lets sign in (with its owner's groups' rules)."""
    return Passkey.objects.exclude(refused_passkeys(policy))


def passkey_allowed(policy: Policy) -> ExpressionWrapper[Q]:
    """Whether ``policy`` lets a passkey sign in, as a column of a query of passkeys."""
    return ExpressionWrapper(~refused_passkeys(policy), output_field=BooleanField())


def _turned_off_for(way_in: str, person: str) -> Exists | None:
    """Whether the person ``person`` names (an ``OuterRef`` path) is in a group whose rules
    turn ``way_in`` (``core.policy.GROUP_WAYS_IN``) off; None when no group does. One query
    reads the groups that have rules."""
    groups = [
        pk
        for pk, name, document in Group.objects.exclude(rules={}).values_list("pk", "name", "rules")
        if not getattr(GroupRules.from_document(name, document), way_in)
    ]
    if not groups:
        return None
    return Exists(Membership.objects.filter(group_id__in=groups, user_id=OuterRef(person)))


def _device_rule(policy: Policy) -> Q | None:
    """Which devices that are set up ``policy`` lets sign in (a filter on ``Device``); None:
    none (``allow_device_app_sign_in`` false). A device of someone in a group that turns the
    push off signs in nowhere (``devices.actions.usable_devices``)."""
    if not policy.allow_device_app_sign_in:
        return None
    rule = Q(key_protection=KeyProtection.TPM) if policy.require_hardware_device_key else Q()
    off = _turned_off_for("allow_device_app_sign_in", "user_id")
    return rule if off is None else rule & ~Q(off)


def usable_devices(policy: Policy) -> QuerySet[Device]:
    """Every device ``policy`` lets sign in (none when it allows no device app sign-in)."""
    rule = _device_rule(policy)
    return Device.objects.none() if rule is None else Device.objects.filter(DEVICE_SET_UP, rule)


def device_allowed(policy: Policy) -> Value | ExpressionWrapper[Q]:
    """Whether ``policy`` lets a device that is set up sign in, as a column of a query of
    devices."""
    rule = _device_rule(policy)
    if rule is None or not rule:
        return Value(rule is not None, output_field=BooleanField())
    return ExpressionWrapper(rule, output_field=BooleanField())


def _count_of(rows: QuerySet[Any]) -> Coalesce:
    """A correlated count of ``rows`` for each person, 0 when none."""
    counted = (
        rows.filter(user=OuterRef("pk")).order_by().values("user").annotate(n=Count("pk"))
    ).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def _one_if(condition: Exists | Q) -> Case:
    return Case(When(condition, then=Value(1)), default=Value(0), output_field=IntegerField())


def has_usable_passkey(policy: Policy) -> Exists:
    return Exists(usable_passkeys(policy).filter(user=OuterRef("pk")))


def has_usable_device(policy: Policy) -> Q:
    if not policy.allow_device_app_sign_in:
        return Q(pk__in=[])
    return Q(Exists(usable_devices(policy).filter(user=OuterRef("pk"))))


def has_fallback() -> Exists:
    return Exists(TotpDevice.objects.filter(user=OuterRef("pk")))


def has_usable_fallback(policy: Policy) -> Q:
    """Has the fallback set up, and neither the policy nor a group of theirs turns it off
    (``fallback.actions.fallback_refusal``)."""
    if not policy.allow_password_fallback:
        return Q(pk__in=[])
    off = _turned_off_for("allow_password_fallback", "pk")
    return Q(has_fallback()) if off is None else Q(has_fallback()) & ~Q(off)


def refused_methods(policy: Policy) -> Q:
    """Of people with no way in ``policy`` allows, those who set one up (``count_sign_in_methods``
    of 1 or more: an invite is refused them). Whatever they set up, it refuses, so only the
    kinds it may refuse are asked."""
    arms = [Q(Exists(Passkey.objects.filter(user=OuterRef("pk"))))]
    if not policy.allow_password_fallback:
        arms.append(Q(has_fallback()))
    else:
        off = _turned_off_for("allow_password_fallback", "pk")
        if off is not None:
            arms.append(Q(has_fallback()) & Q(off))
    if _device_rule(policy) != Q():
        arms.append(Q(Exists(Device.objects.filter(DEVICE_SET_UP, user=OuterRef("pk")))))
    return reduce(or_, arms)


def has_a_usable_method(policy: Policy) -> Q:
    """Can sign in some way ``policy`` allows (``count_usable_sign_in_methods`` of 1 or more),
    whether or not the account is locked or deactivated."""
    return Q(has_usable_passkey(policy)) | has_usable_fallback(policy) | has_usable_device(policy)


def with_usable(people: QuerySet[User], policy: Policy, *, total: bool = True) -> QuerySet[Any]:
    """``people``, each with the ways ``policy`` lets them sign in counted as the registry
    counts them (``count_usable_sign_in_methods``): ``usable_passkeys``, ``usable_fallback``
    (0 or 1), ``usable_devices`` and, with ``total``, ``usable_methods``, their sum (which
    the database computes each of them again for)."""
    none = Value(0, output_field=IntegerField())
    people = people.annotate(
        usable_passkeys=_count_of(usable_passkeys(policy)),
        usable_fallback=(
            _one_if(has_usable_fallback(policy)) if policy.allow_password_fallback else none
        ),
        usable_devices=(
            _count_of(usable_devices(policy)) if policy.allow_device_app_sign_in else none
        ),
    )
    if not total:
        return people
    return people.annotate(
        usable_methods=F("usable_passkeys") + F("usable_fallback") + F("usable_devices")
    )


def with_methods(people: QuerySet[User], policy: Policy) -> QuerySet[Any]:
    """``people`` with their ways to sign in counted: those set up (``passkey_count``,
    ``device_count``, ``has_fallback``, ``methods``, whether or not the policy allows them)
    and those ``policy`` allows (``with_usable``)."""
    people = people.annotate(
        passkey_count=_count_of(Passkey.objects.all()),
        device_count=_count_of(Device.objects.filter(DEVICE_SET_UP)),
        has_fallback=has_fallback(),
    )
    people = people.annotate(
        methods=F("passkey_count") + F("device_count") + _one_if(Q(has_fallback=True))
    )
    return with_usable(people, policy)
