"""How often one network may begin a passkey sign-in, in each worker's memory.

The sign-in page's options (``views.sign_in_options``) and a first-party app's challenge
(``threshold.sso.firstparty``) take from the same allowance: both hand out a challenge and
write nothing, so a flood of either is slowed down without a database write.
"""

from __future__ import annotations

import ipaddress

from threshold import clock
from threshold.core import throttle

# Anonymous sign-in options per network (an IPv4 address, an IPv6 /64), in each
# worker's memory: 200 at once, then 20 a second. Enough for an office behind one
# address signing in at nine, with conditional mediation and retries; a flood, or
# someone timing many usernames, is slowed down without a database write. The
# loopback interface and unknown addresses (a Unix socket) are not limited: they
# stand for every client when the server is reached through a local proxy.
SIGN_IN_OPTIONS_LIMIT = throttle.RateLimiter(rate=20.0, burst=200, max_keys=10_000)


def options_wait(ip: str | None) -> float:
    """How long the network of ``ip`` must wait before its next sign-in options (0: none)."""
    try:
        if ip is None or ipaddress.ip_address(ip).is_loopback:
            return 0.0
    except ValueError:
        return 0.0
    return SIGN_IN_OPTIONS_LIMIT.take(throttle.network_of(ip), clock.now())
