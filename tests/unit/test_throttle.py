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


def test_a_rate_limiter_allows_a_burst_then_the_rate():
    limiter = throttle.RateLimiter(rate=2.0, burst=3, max_keys=10)
    assert [limiter.take("a", 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a", 100.0) == pytest.approx(0.5)
    assert limiter.take("b", 100.0) == 0.0  # another network has its own bucket
    assert limiter.take("a", 100.5) == 0.0  # half a second gives one request back
    assert limiter.take("a", 100.5) > 0
    assert limiter.take("a", 200.0) == 0.0  # refilled, never above the burst
    assert [limiter.take("a", 200.0) for _ in range(3)][-1] > 0


def test_a_rate_limiter_holds_at_most_its_keys_and_forgets_the_oldest():
    limiter = throttle.RateLimiter(rate=1.0, burst=1, max_keys=3)
    for key in "abcd":
        assert limiter.take(key, 0.0) == 0.0
    assert len(limiter) == 3
    assert limiter.take("a", 0.0) == 0.0  # forgotten: a full bucket again
    assert limiter.take("d", 0.0) > 0  # remembered


def test_a_rate_limiter_survives_a_clock_stepped_back():
    limiter = throttle.RateLimiter(rate=1.0, burst=1, max_keys=3)
    assert limiter.take("a", 100.0) == 0.0
    assert limiter.take("a", 50.0) == pytest.approx(1.0)
