"""Reading and changing the organisation policy."""

from __future__ import annotations

from django.db import transaction

from threshold.audit.actions import Action, Origin, record
from threshold.core.policy import Policy
from threshold.policy.models import OrganisationPolicy


def get_policy() -> Policy:
    """The policy in force; the defaults until someone changes a setting."""
    row = OrganisationPolicy.objects.filter(pk=1).first()
    if row is None:
        return Policy()
    values = {name: getattr(row, name) for name in Policy.field_names()}
    if not values["allowed_algorithms"]:  # rows written before the setting existed
        del values["allowed_algorithms"]
    return Policy(**values)


@transaction.atomic
def do_update_policy(new: Policy, origin: Origin, actor=None) -> Policy:
    old = get_policy()
    before, after = old.as_json(), new.as_json()
    changed = {
        name: {"from": before[name], "to": after[name]}
        for name in Policy.field_names()
        if before[name] != after[name]
    }
    OrganisationPolicy.objects.update_or_create(pk=1, defaults=new.as_json())
    if changed:
        record(Action.POLICY_CHANGED, origin, actor=actor, changes=changed)
    return new
