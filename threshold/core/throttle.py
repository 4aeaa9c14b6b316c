"""How long to wait after failed fallback sign-in attempts (password, code).

Four counters, each keyed so that it answers alike whether or not an account
has the username:

- the username from one network (an IPv4 address, an IPv6 /64), for both
  steps: after ``FREE_FAILURES`` each failure doubles the wait, up to
  ``MAX_DELAY_SECONDS``, and at the policy's threshold the password path locks
  for ``LOCKOUT_SECONDS`` from that network. NIST SP 800-63B-4 §3.2.2 allows at
  most 100 consecutive failures; the default threshold is 10. Keyed by network,
  so that a stranger's wrong passwords from elsewhere never lock the person's
  own: the password path is slow for the guesser, never shut for its owner;
- the username from anywhere, for the password step: once the policy's threshold
  is passed, each wrong password doubles every network's wait, up to
  ``MAX_DELAY_SECONDS``, and never locks. A guesser spread over many networks
  gets a few guesses an hour, not unlimited ones that end in learning the
  password; a stranger can slow the person's password, never shut it, and not
  their passkeys;
- the username's wrong codes (authenticator app or recovery code), from any
  network: the same doubling wait for the code step. Only someone who gave the
  right password reaches that step, so strangers cannot feed it, and it keeps
  guessing codes across many networks slow;
- the network alone: at most ``ADDRESS_FAILURES`` failures per
  ``ADDRESS_WINDOW_SECONDS``, whichever usernames they were for (guessing
  across many accounts).

A password alone signs no one in: the second factor stays throttled per person,
and its wrong codes are never forgotten by a pause, only by a sign-in.
An address every client shares (unknown, as on a Unix socket, or loopback, as
behind a proxy Threshold is not told about: ``tells_clients_apart``) has no
network counter and no lockout: its failures only slow the username, so that no
stranger can shut the password path for its owner or for everyone.
None of this touches passkey sign-in: there is nothing to guess there. Its
options requests are only rate-limited per network (``RateLimiter``), in memory.
"""

from __future__ import annotations

import ipaddress
import threading
from collections import OrderedDict

FREE_FAILURES = 3
MAX_DELAY_SECONDS = 15 * 60
LOCKOUT_SECONDS = 60 * 60
# A username's failures (from a network, or its codes) this long after the last one are forgotten.
FORGET_AFTER_SECONDS = 24 * 60 * 60

ADDRESS_FAILURES = 50
ADDRESS_WINDOW_SECONDS = 15 * 60
# A username's wrong codes in a row (NIST SP 800-63B-4 §3.2.2: at most 100 consecutive failed
# attempts on one account): then the code step is shut until the fallback is set up again.
# Its delays alone (at most 15 minutes) would let someone who has the password guess about a
# hundred codes a day, for ever.
MOST_CODE_FAILURES = 100
SHUT_SECONDS = 100 * 365 * 24 * 60 * 60


def username_wait(failures: int) -> int:
    """Seconds to wait after the last of ``failures`` consecutive failures for a username
    (from one network, or its codes from anywhere)."""
    if failures < FREE_FAILURES:
        return 0
    return min(1 << (failures - FREE_FAILURES), MAX_DELAY_SECONDS)


def anywhere_wait(failures: int, lockout_threshold: int) -> int:
    """Seconds every network waits for a username's password after ``failures`` wrong ones
    in a row from anywhere: none below the policy's threshold (a person's own mistakes and
    a few strangers' never slow them), then doubling up to ``MAX_DELAY_SECONDS``; never a lock."""
    if failures < lockout_threshold:
        return 0
    return min(1 << (failures - lockout_threshold), MAX_DELAY_SECONDS)


def code_wait(failures: int) -> int:
    """Seconds a username's code step waits after ``failures`` wrong codes in a row: the
    doubling wait, and shut for good (``SHUT_SECONDS``) at ``MOST_CODE_FAILURES``."""
    return SHUT_SECONDS if failures >= MOST_CODE_FAILURES else username_wait(failures)


def lockout_wait(failures: int, lockout_threshold: int) -> int:
    """Seconds the password path stays locked for a username from one network."""
    return LOCKOUT_SECONDS if failures >= lockout_threshold else 0


def address_wait(failures: int, window_elapsed: float) -> float:
    """Seconds a network waits: until its window ends, once it has too many failures."""
    if failures < ADDRESS_FAILURES:
        return 0.0
    return max(0.0, ADDRESS_WINDOW_SECONDS - window_elapsed)


def tells_clients_apart(network: str) -> bool:
    """Whether ``network`` (from ``network_of``) stands for some clients, not all of them.

    An unknown address (a Unix socket) or a loopback one (a proxy on this machine that
    Threshold is not told about) is every client's: counting failures by it would let
    one stranger shut the password path for everyone, or lock a person out.
    """
    if network == "unknown":
        return False
    try:
        return not ipaddress.ip_network(network, strict=False).is_loopback
    except ValueError:
        return False


def network_of(ip: str | None) -> str:
    """The network an address stands for: itself for IPv4, its /64 for IPv6.

    One IPv6 host usually has a whole /64 to pick addresses from.
    """
    if not ip:
        return "unknown"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address) and not address.is_loopback:
        mapped = address.ipv4_mapped
        if mapped is not None:
            return str(mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


# --- Requests per network, in memory -------------------------------------------------------------


class RateLimiter:
    """A token bucket per key (a network), in this process's memory, for at most ``max_keys`` keys.

    Each key may spend ``burst`` requests at once and gets ``rate`` back per second.
    It writes nothing, so a flood costs no database writes. Per process: with
    N workers a network gets up to N times the rate. When ``max_keys`` keys are
    held, the one seen least recently is forgotten (its next request starts with
    a full bucket): many networks can make the limiter more lenient, never
    refuse anyone who stays under the rate.
    """

    def __init__(self, *, rate: float, burst: int, max_keys: int) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at
        self._lock = threading.Lock()

    def take(self, key: str, now: float) -> float:
        """Spend one request for ``key``: 0 when allowed, else seconds until the next one is."""
        with self._lock:
            tokens, at = self._buckets.pop(key, (float(self.burst), now))
            # A clock stepped back gives nothing back, and takes nothing.
            tokens = min(float(self.burst), tokens + max(0.0, now - at) * self.rate)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return 0.0 if allowed else (1.0 - tokens) / self.rate

    def clear(self) -> None:
        with self._lock:
            self._buckets.clear()

    def __len__(self) -> int:
        return len(self._buckets)
