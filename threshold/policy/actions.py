"""Reading and changing the organisation policy."""

from __future__ import annotations

import dataclasses

from django.db import transaction

from threshold.audit.actions import Action, Origin, record
from threshold.core.policy import Policy
from threshold.policy.models import OrganisationPolicy


def get_policy() -> Policy:
    """The policy in force; the defaults until someone changes a setting."""
    row = OrganisationPolicy.objects.filter(pk=1).first()
    if row is None:
        return Policy()
    return Policy(**{name: getattr(row, name) for name in Policy.field_names()})


@transaction.atomic
def do_update_policy(new: Policy, origin: Origin, actor=None) -> Policy:
    old = get_policy()
    changed = {
        name: {"from": getattr(old, name), "to": getattr(new, name)}
        for name in Policy.field_names()
        if getattr(old, name) != getattr(new, name)
    }
    OrganisationPolicy.objects.update_or_create(pk=1, defaults=dataclasses.asdict(new))
    if changed:
        record(Action.POLICY_CHANGED, origin, actor=actor, changes=changed)
    return new
