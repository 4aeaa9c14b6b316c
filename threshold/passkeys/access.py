"""Permission-checked fetches of passkeys."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import QuerySet

from threshold.accounts.models import User
from threshold.core import errors
from threshold.core.policy import Decision, Policy, evaluate
from threshold.groups.access import rules_by_user
from threshold.passkeys.models import Passkey

# Larger IDs cannot be a row's and would overflow the databases' integers.
_MAX_ID = 2**63 - 1


def list_passkeys(user: User) -> QuerySet[Passkey]:
    """``user``'s passkeys, oldest first (the newest is the last)."""
    return user.passkeys.order_by("created_at", "id")


def not_allowed_passkey_ids(passkeys: Iterable[Passkey], policy: Policy) -> set[int]:
    """The IDs of those of ``passkeys`` that ``policy`` (with their owners' groups' rules) no
    longer allows to sign in.

    Home and Settings mark them (web/_passkey.html).
    """
    passkeys = list(passkeys)
    rules = rules_by_user({p.user_id for p in passkeys})
    return {
        p.pk
        for p in passkeys
        if not evaluate(policy, p.policy_facts, rules.get(p.user_id, ())).allowed
    }


def list_passkeys_not_allowed(policy: Policy) -> list[tuple[Passkey, Decision]]:
    """Every passkey ``policy`` (with its owner's groups' rules) refuses, with why, by person
    (``threshold policy check``)."""
    passkeys = list(
        Passkey.objects.select_related("user").order_by("user__username", "created_at", "id")
    )
    rules = rules_by_user({passkey.user_id for passkey in passkeys})
    decisions = (
        (passkey, evaluate(policy, passkey.policy_facts, rules.get(passkey.user_id, ())))
        for passkey in passkeys
    )
    return [(passkey, decision) for passkey, decision in decisions if not decision.allowed]


def access_own_passkey(user: User, passkey_id: int) -> Passkey:
    """One of ``user``'s passkeys.

    Another person's passkey fails exactly like one that never existed or was
    removed already, so IDs reveal nothing about other accounts.
    """
    passkey = None
    if 0 < passkey_id <= _MAX_ID:
        passkey = Passkey.objects.filter(pk=passkey_id, user=user).first()
    if passkey is None:
        raise errors.SecurityMethodNotFound(f"passkey {passkey_id}")
    return passkey
