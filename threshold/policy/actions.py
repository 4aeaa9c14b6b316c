"""Changing the organisation policy."""

from __future__ import annotations

from django.db import transaction

from threshold.accounts.models import User
from threshold.audit.actions import Action, Origin, record
from threshold.core.policy import SETTINGS, Policy
from threshold.policy.access import get_policy
from threshold.policy.models import OrganisationPolicy


@transaction.atomic
def do_update_policy(new: Policy, origin: Origin, actor: User | None = None) -> Policy:
    """Store ``new`` (already validated: it is a Policy) and audit what changed."""
    old = get_policy()
    before, after = old.as_json(), new.as_json()
    changed = {
        setting.name: {"from": before[setting.name], "to": after[setting.name]}
        for setting in SETTINGS
        if before[setting.name] != after[setting.name]
    }
    OrganisationPolicy.objects.update_or_create(pk=1, defaults={"document": after})
    if changed:
        record(Action.POLICY_CHANGED, origin, actor=actor, changes=changed)
    return new
