"""Refusals that name no one, audited up to a rate per network.

A request no person or app stands behind — an unknown ``client_id`` at ``/token`` or
``/authorize``, a wrong client secret, a body that cannot be read, an unknown code — is refused
and audited like any other. But anyone can send such requests, as fast as they like, and each
would be an audit row kept for good: a flood would fill the database. So each network (an IPv4
address, an IPv6 /64: ``core.throttle.network_of``) may have ``BURST`` such rows at once and one
more every ``1 / RATE`` seconds. Past that:

- the refusal itself is unchanged (the client cannot tell);
- the first refusal not recorded writes one ``audit.refusals_capped`` row (which action, from
  which network), and the next one recorded again carries ``suppressed``: how many were not.

Refusals with a person behind them are always recorded (``record_refusal`` chooses), and so
are those of an app that authenticated (``record``).
Per process, in memory, as ``core.throttle.RateLimiter``: with N workers a network may get up to
N times the rate.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from threshold import clock
from threshold.audit.actions import Action, Origin, record
from threshold.audit.models import AuditEvent
from threshold.core import throttle

BURST = 30
RATE = 0.1
MAX_NETWORKS = 10_000

LIMIT = throttle.RateLimiter(rate=RATE, burst=BURST, max_keys=MAX_NETWORKS)
# Per network: refusals not recorded since its last recorded one.
_suppressed: OrderedDict[str, int] = OrderedDict()
_lock = threading.Lock()


def record_capped(
    action: Action, origin: Origin, *, reason: str = "", **detail: Any
) -> AuditEvent | None:
    """``record`` a refusal that names no one, unless its network is over its rate: then
    None (and at the first such, one ``audit.refusals_capped`` row)."""
    extra = admit(action, origin)
    if extra is None:
        return None
    return record(action, origin, reason=reason, **detail, **extra)


def admit(action: Action, origin: Origin) -> dict[str, int] | None:
    """Whether a refusal that names no one may have its audit row, for a caller that writes
    the row itself (the sign-in's hand-written SQL): the detail to add to it (``suppressed``,
    how many were not written before it), or None when its network is over its rate (the
    first such writes one ``audit.refusals_capped`` row)."""
    network = throttle.network_of(origin.ip)
    if LIMIT.take(network, clock.now()) == 0.0:
        with _lock:
            suppressed = _suppressed.pop(network, 0)
        return {"suppressed": suppressed} if suppressed else {}
    with _lock:
        count = _suppressed.pop(network, 0) + 1
        _suppressed[network] = count
        if len(_suppressed) > MAX_NETWORKS:
            _suppressed.popitem(last=False)
    if count == 1:
        record(Action.AUDIT_REFUSALS_CAPPED, origin, refused=str(action), network=network)
    return None


def record_refusal(
    action: Action, origin: Origin, person: Any, *, reason: str = "", **detail: Any
) -> AuditEvent | None:
    """A refusal with ``person`` behind it (actor and subject) is always recorded; one with
    no one (None) up to its network's rate (``record_capped``)."""
    if person is None:
        return record_capped(action, origin, reason=reason, **detail)
    return record(action, origin, actor=person, subject=person, reason=reason, **detail)


def clear() -> None:
    """Forget every network's count (tests)."""
    LIMIT.clear()
    with _lock:
        _suppressed.clear()
