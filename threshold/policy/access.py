"""Reading the organisation policy: once per request."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest

from threshold.core.policy import Policy
from threshold.policy.models import OrganisationPolicy

# Where policy_for keeps the request's policy, and how it reads it.
_ON_REQUEST = "_threshold_policy"
_READER = "_threshold_policy_reader"


def get_policy() -> Policy:
    """The policy in force; the defaults until someone changes a setting.

    One SELECT of one column (no ORDER BY: the key is the primary key).
    """
    documents = list(OrganisationPolicy.objects.filter(pk=1).values_list("document", flat=True))
    return Policy.from_document(documents[0]) if documents else Policy()


def policy_for(request: HttpRequest) -> Policy:
    """The policy in force for this request, read at its first use and kept for the rest of it.

    Every view and the actions it calls see the same policy: one SELECT per
    request, and no request that applies half of an old policy and half of a
    new one.
    """
    policy = request.__dict__.get(_ON_REQUEST)
    if not isinstance(policy, Policy):
        policy = request.__dict__.get(_READER, get_policy)()
        request.__dict__[_ON_REQUEST] = policy
    return policy


def read_policy_with(request: HttpRequest, read: Callable[[], Policy]) -> None:
    """Have ``policy_for(request)`` read the policy with ``read`` instead of ``get_policy``
    (the lean sign-in path's raw SELECT of the same column), still once and only if used."""
    request.__dict__[_READER] = read
