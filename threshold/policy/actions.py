"""Changing the organisation policy."""

from __future__ import annotations

from django.db import transaction

from threshold.accounts.models import User
from threshold.audit.actions import Action, Origin, record
from threshold.core.policy import SETTINGS, Policy
from threshold.policy.access import get_policy
from threshold.policy.models import OrganisationPolicy

# get_policy is read from here too (the tests do).
__all__ = ["do_update_policy", "get_policy", "lock_policy"]


def lock_policy() -> Policy:
    """The policy in force, its row held until the transaction ends (``SELECT … FOR UPDATE``
    on PostgreSQL; SQLite's IMMEDIATE transactions already serialise). Every change of the
    policy or of a group's rules takes it first, before any other row, so that two such
    changes take turns and the second is checked against what the first saved (the admin
    portal's ``policies.save_policy`` and ``save_group_rules``); so do the other changes that
    can take a way in away: the portal's guarded ones, a person's own removals and a
    registration, deciding by the policy it returns. Creates the row, with the
    defaults, when there is none yet. Only inside a transaction."""
    locked = OrganisationPolicy.objects.select_for_update().filter(pk=1)
    documents = list(locked.values_list("document", flat=True))
    if not documents:
        # A change creating it at the same moment: get_or_create reads the row it created.
        OrganisationPolicy.objects.get_or_create(pk=1)
        documents = list(locked.values_list("document", flat=True))
    return Policy.from_document(documents[0])


@transaction.atomic
def do_update_policy(new: Policy, origin: Origin, actor: User | None = None) -> Policy:
    """Store ``new`` (already validated: it is a Policy) and audit what changed."""
    old = lock_policy()
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
