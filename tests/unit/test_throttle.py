"""The fallback's throttle schedule and how addresses are grouped."""

from __future__ import annotations

import pytest

from threshold.core import throttle


def test_a_username_waits_longer_after_each_failure_but_is_never_locked():
    waits = [throttle.username_wait(n) for n in range(1, 30)]
    assert waits[: throttle.FREE_FAILURES - 1] == [0, 0]
    assert waits[throttle.FREE_FAILURES - 1 : throttle.FREE_FAILURES + 3] == [1, 2, 4, 8]
    assert max(waits) == throttle.MAX_DELAY_SECONDS
    assert waits == sorted(waits)


def test_the_lockout_starts_at_the_threshold():
    assert throttle.lockout_wait(9, 10) == 0
    assert throttle.lockout_wait(10, 10) == throttle.LOCKOUT_SECONDS


def test_an_address_waits_out_its_window():
    assert throttle.address_wait(throttle.ADDRESS_FAILURES - 1, 10) == 0
    assert (
        throttle.address_wait(throttle.ADDRESS_FAILURES, 60) == throttle.ADDRESS_WINDOW_SECONDS - 60
    )


@pytest.mark.parametrize(
    ("ip", "network"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        (None, "unknown"),
        ("garbage", "unknown"),
    ],
)
def test_networks(ip, network):
    assert throttle.network_of(ip) == network
