"""Guessing setup codes (issue 12): besides the 60-bit codes and their ten minutes, wrong codes
are limited per network and overall for a quarter of an hour, answered as "Too Many Attempts"
(429) and audited. Real keys sign real requests; only the clock is pinned."""

from __future__ import annotations

from typing import Any

import pytest

import threshold.clock
from tests.integration.conftest import Browser, assert_failed, assert_ok, last_event
from tests.integration.test_device_app import (
    TOO_MANY,
    new_device,
    show_setup_code,
    signed_in,
)
from threshold.audit.models import AuditEvent
from threshold.devices.actions import (
    SETUP_CODE_FAILURES,
    SETUP_CODE_NETWORK_FAILURES,
    delete_expired_requests,
)
from threshold.devices.models import Device, SetupCodeFailure

pytestmark = pytest.mark.django_db

SETUP_CODE_INVALID = "Setup Code Not Valid"
ENROLL = "/api/device/v1/enroll"


def redeem_from(ip: str, code: str):
    """A new device (a fresh key, as a guesser would make) redeems ``code`` from ``ip``."""
    device = new_device()
    body: dict[str, Any] = {"setup_code": code, "name": "Guess", "platform": "linux"}
    compact = device.sign(ENROLL, body, with_jwk=True)
    return Browser(REMOTE_ADDR=ip).client.post(ENROLL, compact, content_type="application/jose")


def wrong_code(number: int) -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(alphabet[(number >> (5 * i)) % 32] for i in range(8))


def test_wrong_setup_codes_from_one_network_are_limited(ada, clock):
    for number in range(SETUP_CODE_NETWORK_FAILURES):
        assert_failed(redeem_from("203.0.113.50", wrong_code(number)), 400, SETUP_CODE_INVALID)
    refused = last_event("device.setup_code_refused")
    assert refused.reason == "setup_code_invalid"
    assert refused.ip == "203.0.113.50"
    assert refused.detail["limit_reached"] == "network"
    # Now even the right code waits: nothing is checked from this network.
    code, _ = show_setup_code(signed_in(ada))
    assert_failed(redeem_from("203.0.113.50", code), 429, TOO_MANY)
    assert Device.objects.count() == 0
    # A throttled guess writes nothing: no failure row, no audit row.
    failures, events = SetupCodeFailure.objects.count(), AuditEvent.objects.count()
    assert_failed(redeem_from("203.0.113.50", wrong_code(99)), 429, TOO_MANY)
    assert (SetupCodeFailure.objects.count(), AuditEvent.objects.count()) == (failures, events)
    # Another network is not held back, and a quarter of an hour later this one is not either.
    assert_ok(redeem_from("198.51.100.20", code))
    clock.advance(15 * 60 + 1)
    assert_failed(redeem_from("203.0.113.50", wrong_code(100)), 400, SETUP_CODE_INVALID)
    other, _ = show_setup_code(signed_in(ada))
    assert_ok(redeem_from("203.0.113.50", other))


def test_an_ipv6_network_counts_as_one(ada, clock):
    for number in range(SETUP_CODE_NETWORK_FAILURES):
        redeem_from(f"2001:db8:1:2::{number + 1:x}", wrong_code(number))
    assert_failed(redeem_from("2001:db8:1:2::ffff", wrong_code(50)), 429, TOO_MANY)


def test_wrong_setup_codes_from_everywhere_are_limited(ada, clock):
    # All but the last guess written as the guesses write them (thousands of requests would
    # take minutes), each from its own network.
    now = threshold.clock.now_datetime()
    SetupCodeFailure.objects.bulk_create(
        SetupCodeFailure(network=f"198.18.{number // 250}.{number % 250 + 1}", at=now)
        for number in range(SETUP_CODE_FAILURES - 1)
    )
    assert_failed(redeem_from("198.19.0.1", wrong_code(1)), 400, SETUP_CODE_INVALID)
    assert last_event("device.setup_code_refused").detail["limit_reached"] == "overall"
    code, _ = show_setup_code(signed_in(ada))
    assert_failed(redeem_from("192.0.2.77", code), 429, TOO_MANY)
    clock.advance(15 * 60 + 1)
    code, _ = show_setup_code(signed_in(ada))
    assert_ok(redeem_from("192.0.2.77", code))


def test_an_address_every_client_shares_is_limited_only_overall(ada, clock):
    for number in range(SETUP_CODE_NETWORK_FAILURES + 5):
        assert_failed(redeem_from("127.0.0.1", wrong_code(number)), 400, SETUP_CODE_INVALID)
    code, _ = show_setup_code(signed_in(ada))
    assert_ok(redeem_from("127.0.0.1", code))


def test_the_right_code_counts_nothing_and_old_failures_are_forgotten(ada, clock):
    code, _ = show_setup_code(signed_in(ada))
    assert_ok(redeem_from("203.0.113.50", code))
    assert SetupCodeFailure.objects.count() == 0
    redeem_from("203.0.113.50", wrong_code(1))
    assert SetupCodeFailure.objects.count() == 1
    clock.advance(15 * 60 + 1)
    delete_expired_requests()
    assert SetupCodeFailure.objects.count() == 0
