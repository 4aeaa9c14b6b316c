"""Idle pages expire: a signed, dated flow token on each sign-in and enrollment page.

A page that starts a ceremony carries a token (``data-flow`` on ``#ceremony``)
that says which flow it is and when the page was served; webauthn.js sends it
back in the X-Threshold-Flow header with the options request, and the options
view refuses it, as "Session Expired", once the page is older than the policy's
``flow_idle_timeout_minutes``. Nothing is stored: an anonymous page view costs
no session row. The token is not a secret and not a replay defence (each
ceremony's one-time challenge is); it only dates the page.

A missing or garbled token reads the same as an old one: only our pages send
it, so its absence means a client that is not one of them (or a page from
before this check existed), and starting again fixes both. The FIDO
conformance API does not use flows.

To date another flow, add a ``Flow`` member, render ``issue_flow_token(Flow.X)``
into its page as ``data-flow`` and call ``check_flow(request, Flow.X)`` first in
its options view.
"""

from __future__ import annotations

from enum import StrEnum

from django.core import signing
from django.http import HttpRequest

from threshold import clock
from threshold.core import errors
from threshold.core.policy import Policy
from threshold.policy.access import policy_for
from threshold.web.signers import signer


class Flow(StrEnum):
    """The dated flows, one kind each: a token for one is refused by the others."""

    SIGN_IN = "sign_in"
    STEP_UP = "step_up"
    ENROLLMENT = "enrollment"  # an enrollment or recovery link's page
    ADD = "add"  # "Set up another"


# How three of them were spelt before: their pages' tokens, signed under those names, are read
# too for as long as such a page may still be open (the policy's flow_idle_timeout_minutes).
_EARLIER_SPELLINGS = {Flow.SIGN_IN: "sign-in", Flow.STEP_UP: "step-up", Flow.ENROLLMENT: "enroll"}

HEADER = "X-Threshold-Flow"
# The same header as Django's request.META (and the test client's) key.
META_KEY = "HTTP_X_THRESHOLD_FLOW"


def _signer(kind: str) -> signing.Signer:
    # A salt per kind: a token signed for one flow does not verify for another. The
    # salt keeps the module's first address, so pages served before it moved still work.
    return signer(f"threshold.web.flow:{kind}")


def issue_flow_token(kind: Flow) -> str:
    """A token for a page of flow ``kind`` served now (``threshold.clock``, which tests move).

    Django's TimestampSigner reads time.time() itself, so the time is signed here
    as the value instead.
    """
    return _signer(kind).sign(str(int(clock.now())))


def check_flow(request: HttpRequest, kind: Flow, *, policy: Policy | None = None) -> None:
    """FlowExpired unless the request carries a ``kind`` token younger than the policy allows."""
    token = request.META.get(META_KEY, "")  # request.headers would build a dict of them all
    issued_at = _issued_at(token, kind)
    if issued_at is None:
        raise errors.FlowExpired(f"no valid {kind} flow token")
    max_age = (policy or policy_for(request)).flow_idle_timeout_minutes * 60
    # Whole seconds on both sides. Only age is checked: a clock stepped back a
    # little must not end a fresh page.
    age = int(clock.now()) - issued_at
    if age > max_age:
        raise errors.FlowExpired(f"the {kind} page was idle for {age} s, over {max_age} s")


def _issued_at(token: str, kind: Flow) -> int | None:
    """When the page of a ``kind`` token was served, or None if it is no such token."""
    for name in (kind, _EARLIER_SPELLINGS.get(kind)):
        if name is None:
            continue
        try:
            return int(_signer(name).unsign(token))
        except (signing.BadSignature, ValueError):
            continue
    return None
