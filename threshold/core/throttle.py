"""How long to wait after failed fallback sign-ins (password, code).

Per username: the first few failures cost nothing, then each one doubles the
wait, and at the policy's threshold the password path locks for an hour (and
again for each failure after). NIST SP 800-63B-4 §3.2.2 allows at most 100
consecutive failures; the default threshold is 10. Passkeys are never
throttled by this: a stranger typing wrong passwords cannot lock a person out
of their passkey sign-in.

Per network address: at most ``ADDRESS_FAILURES`` failures in a
``ADDRESS_WINDOW_SECONDS`` window, whichever usernames they were for
(guessing across many accounts).
"""

from __future__ import annotations

FREE_FAILURES = 3
MAX_DELAY_SECONDS = 15 * 60
LOCKOUT_SECONDS = 60 * 60
# Failures this long ago are forgotten.
FORGET_AFTER_SECONDS = 24 * 60 * 60

ADDRESS_FAILURES = 50
ADDRESS_WINDOW_SECONDS = 15 * 60


def username_wait(failures: int, lockout_threshold: int) -> int:
    """Seconds to wait after the last of ``failures`` consecutive failures."""
    if failures >= lockout_threshold:
        return LOCKOUT_SECONDS
    if failures < FREE_FAILURES:
        return 0
    return min(2 ** (failures - FREE_FAILURES), MAX_DELAY_SECONDS)


def address_wait(failures: int, window_elapsed: float) -> float:
    """Seconds an address waits: until its window ends, once it has too many failures."""
    if failures < ADDRESS_FAILURES:
        return 0.0
    return max(0.0, ADDRESS_WINDOW_SECONDS - window_elapsed)
