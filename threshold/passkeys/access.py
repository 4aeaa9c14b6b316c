"""Permission-checked fetches of passkeys."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import QuerySet

from threshold.accounts.models import User
from threshold.core import errors
from threshold.core.policy import Decision, Policy, evaluate
from threshold.passkeys.models import Passkey

# Larger IDs cannot be a row's and would overflow the databases' integers.
_MAX_ID = 2**63 - 1


def list_passkeys(user: User) -> QuerySet[Passkey]:
    """``user``'s passkeys, oldest first (the newest is the last)."""
    return user.passkeys.order_by("created_at", "id")


def not_allowed_passkey_ids(passkeys: Iterable[Passkey], policy: Policy) -> set[int]:
    """The IDs of those of ``passkeys`` that ``policy`` no longer allows to sign in.

    Home and Settings mark them (web/_passkey.html).
    """
    return {p.pk for p in passkeys if not evaluate(policy, p.policy_facts).allowed}


def list_passkeys_not_allowed(policy: Policy) -> list[tuple[Passkey, Decision]]:
    """Every passkey ``policy`` refuses, with why, by person (``threshold policy check``)."""
    passkeys = Passkey.objects.select_related("user").order_by("user__username", "created_at", "id")
    decisions = ((passkey, evaluate(policy, passkey.policy_facts)) for passkey in passkeys)
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
