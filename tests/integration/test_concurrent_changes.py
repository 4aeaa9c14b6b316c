"""Concurrent changes to one person's sign-in methods, on real connections.

Each request runs in its own thread with its own database connection, as
gunicorn workers would, and they are released together. SQLite serialises the
writers (IMMEDIATE transactions); PostgreSQL locks the person's row.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from types import ModuleType
from typing import Any

import pyotp
import pytest
from django.db import connection, connections

import threshold.clock
from tests.integration.conftest import (
    LIMIT_REACHED,
    ORIGIN,
    Browser,
    assert_failed,
    assert_ok,
    enrolled_person,
    sign_in,
)
from tests.integration.test_device_app import (
    SETUP_CODE_INVALID,
    api,
    new_device,
    show_setup_code,
    signed_in,
)
from tests.support.authenticator import SoftAuthenticator
from threshold.audit.actions import Origin
from threshold.audit.models import AuditEvent
from threshold.core import errors, throttle
from threshold.core.policy import Policy
from threshold.devices import actions as device_actions
from threshold.devices.models import Device, DeviceEnrollment, EnrollmentState
from threshold.fallback import actions as fallback_actions
from threshold.fallback.actions import (
    CounterKind,
    Step,
    delete_stale_counters,
    do_check_password,
    do_set_up_fallback,
)
from threshold.fallback.models import FailureCounter
from threshold.passkeys.models import Passkey
from threshold.policy.actions import do_update_policy

pytestmark = pytest.mark.django_db(transaction=True)

PARALLEL = 8
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def all_at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run ``calls`` in threads released by one barrier; their results, in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait()
            results[index] = call()
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            results[index] = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def while_one_holds(
    monkeypatch: pytest.MonkeyPatch,
    module: ModuleType,
    name: str,
    first: Callable[[], Any],
    second: Callable[[], Any],
    *,
    meanwhile: Callable[[], Any] | None = None,
) -> list[Any]:
    """``first`` runs on its own connection until ``module.name`` (a step that takes row locks
    in its transaction, such as ``lock_user``) has returned the first time: there it waits,
    holding them, while ``second`` begins on another connection, and goes on once ``second``
    waits for a lock (PostgreSQL), is done, or half a second has passed (SQLite's wait shows
    nowhere). Both results, or the exceptions raised, in order; then, with ``meanwhile``,
    what it returned (or raised) when called just before ``first`` went on."""
    held, go_on = threading.Event(), threading.Event()
    step = getattr(module, name)

    def holding(*args: Any, **kwargs: Any) -> Any:
        result = step(*args, **kwargs)
        if not held.is_set():
            held.set()
            go_on.wait(timeout=30)
        return result

    monkeypatch.setattr(module, name, holding)
    results: list[Any] = [None, None]

    def run(index: int, call: Callable[[], Any]) -> None:
        try:
            results[index] = call()
        except BaseException as error:  # noqa: BLE001 - reported by the test
            results[index] = error
        finally:
            held.set()  # should ``first`` end before the step
            connections.close_all()

    holder = threading.Thread(target=run, args=(0, first))
    holder.start()
    assert held.wait(timeout=30)
    other = threading.Thread(target=run, args=(1, second))
    other.start()
    until_it_waits(other)
    if meanwhile is not None:
        try:
            results.append(meanwhile())
        except Exception as error:  # noqa: BLE001 - reported by the test
            results.append(error)
    go_on.set()
    holder.join(timeout=60)
    other.join(timeout=60)
    return results


def until_it_waits(thread: threading.Thread) -> None:
    """Until ``thread`` waits for a row lock or ends (PostgreSQL: up to 10 s; SQLite, whose
    busy wait shows nowhere: half a second)."""
    deadline = time.monotonic() + (10 if connection.vendor == "postgresql" else 0.5)
    while thread.is_alive() and time.monotonic() < deadline and not waits_for_a_lock():
        time.sleep(0.01)


def waits_for_a_lock() -> bool:
    """Is a connection to this database waiting for a row lock (PostgreSQL; SQLite's busy
    wait shows nowhere)? Another test process's database on the same server does not count."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        return bool(cursor.fetchone()[0])


def test_parallel_registrations_at_the_limit_never_exceed_it():
    do_update_policy(Policy(passkey_limit=3), Origin.cli())
    ada = enrolled_person("ada@example.com", "Ada Lovelace")
    # Eight tabs, each signed in and each with a ceremony begun below the limit (1 of 3).
    ready = []
    for _ in range(PARALLEL):
        browser = Browser()
        assert_ok(sign_in(browser, ada.authenticator))
        options = browser.post_json("/settings/security-methods/add/options", {"device": "phone"})
        credential = SoftAuthenticator().create(assert_ok(options)["publicKey"], ORIGIN)
        ready.append((browser, credential))

    def finish(browser: Browser, credential: dict[str, Any]) -> Callable[[], Any]:
        return lambda: browser.post_json("/settings/security-methods/add/result", credential)

    responses = all_at_once([finish(b, c) for b, c in ready])

    assert not [r for r in responses if isinstance(r, BaseException)], responses
    succeeded = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    assert len(succeeded) == 2
    for response in refused:
        assert_failed(response, 400, LIMIT_REACHED)
    assert Passkey.objects.filter(user=ada.user).count() == 3
    assert (
        AuditEvent.objects.filter(
            action="passkey.registration_failed", reason="passkey_limit_reached"
        ).count()
        == PARALLEL - 2
    )


def test_parallel_removals_never_remove_the_last_passkey():
    ada = enrolled_person("ada@example.com", "Ada Lovelace")
    browser = Browser()
    assert_ok(sign_in(browser, ada.authenticator))
    options = browser.post_json("/settings/security-methods/add/options", {"device": "phone"})
    credential = SoftAuthenticator().create(assert_ok(options)["publicKey"], ORIGIN)
    assert_ok(browser.post_json("/settings/security-methods/add/result", credential))
    first, second = Passkey.objects.filter(user=ada.user).order_by("id")

    # Two tabs remove one passkey each, at the same moment.
    tabs = []
    for _ in range(2):
        tab = Browser()
        assert_ok(sign_in(tab, ada.authenticator))
        tab.csrf_token()  # fetched now, not in the race
        tabs.append(tab)
    responses = all_at_once(
        [
            lambda: tabs[0].post_form(f"/settings/security-methods/{first.pk}/remove"),
            lambda: tabs[1].post_form(f"/settings/security-methods/{second.pk}/remove"),
        ]
    )

    assert not [r for r in responses if isinstance(r, BaseException)], responses
    assert sorted(r.status_code for r in responses) == [303, 409]
    assert Passkey.objects.filter(user=ada.user).count() == 1


# --- The fallback ---------------------------------------------------------------------------------


def _form(browser: Browser, path: str, **fields: str) -> Callable[[], Any]:
    token = browser.csrf_token()  # fetched now, not in the race
    return lambda: browser.client.post(path, {"csrfmiddlewaretoken": token, **fields})


def test_parallel_guesses_get_no_more_tries_than_sequential_ones():
    ada = enrolled_person("ada@example.com", "Ada Lovelace")
    do_set_up_fallback(ada.user, "correct horse battery staple", SECRET, 0, Origin.cli())
    guesses = [
        _form(
            Browser(),
            "/sign-in/password",
            username="ada@example.com",
            password=f"wrong guess {n}",
        )
        for n in range(PARALLEL * 2)
    ]
    statuses = sorted(r.status_code for r in all_at_once(guesses))
    # The first three failures are free; then each one must wait (1 s, 2 s, ...).
    assert statuses.count(400) <= throttle.FREE_FAILURES + 1
    assert statuses.count(429) >= PARALLEL * 2 - throttle.FREE_FAILURES - 1
    assert set(statuses) == {400, 429}


def test_one_app_code_signs_in_once_even_in_parallel():
    ada = enrolled_person("ada@example.com", "Ada Lovelace")
    do_set_up_fallback(ada.user, "correct horse battery staple", SECRET, 0, Origin.cli())
    browsers = [Browser() for _ in range(4)]
    for browser in browsers:
        response = _form(
            browser,
            "/sign-in/password",
            username="ada@example.com",
            password="correct horse battery staple",
        )()
        assert response.status_code == 303
    code = pyotp.TOTP(SECRET).now()
    responses = all_at_once([_form(b, "/sign-in/code", code=code) for b in browsers])
    assert not [r for r in responses if isinstance(r, BaseException)], responses
    statuses = [r.status_code for r in responses]
    # One signs in; the others are told the code was used (or, once three have
    # failed, to wait: the throttle counts them too).
    assert statuses.count(303) == 1
    assert set(statuses) - {303} <= {400, 429}


def test_the_cleanup_beside_an_attempt_forgets_old_counters_and_the_attempt_counts(
    ada, clock, monkeypatch
):
    """``threshold cleanup`` forgets old failure counters while a password attempt counts
    against two of them (this username from this network, then the network): the attempt
    holds the first and is about to lock the second when the cleanup begins. The cleanup
    leaves a counter an attempt holds (it is in use, not old), so neither waits for the
    other. It deleted every old counter in the order its scan met them, here the network's
    first: each waited for the other on PostgreSQL, which undid the cleanup."""
    origin = Origin(ip="203.0.113.5")
    keys = fallback_actions._keys("ada@example.com", origin, Step.PASSWORD)
    long_ago = threshold.clock.now_datetime() - timedelta(days=2)
    # Written in this order, the rows are scanned in this order.
    for kind in (CounterKind.NETWORK, CounterKind.USER_NETWORK):
        FailureCounter.objects.create(
            key=keys[kind], failures=1, first_failure_at=long_ago, last_failure_at=long_ago
        )

    guessed, forgotten = while_one_holds(
        monkeypatch,
        fallback_actions,
        "_counter",
        lambda: do_check_password("ada@example.com", "wrong guess", origin, Policy()),
        delete_stale_counters,
    )

    assert isinstance(guessed, errors.PasswordIncorrect), guessed
    assert not isinstance(forgotten, BaseException), forgotten
    # PostgreSQL: the network's counter went (the attempt began it again), the attempt's own
    # stayed. SQLite: the cleanup waited for the attempt's transaction, and found none old.
    assert forgotten == (1 if connection.vendor == "postgresql" else 0)
    counters = dict(FailureCounter.objects.values_list("key", "failures"))
    assert counters == {
        keys[CounterKind.USER_NETWORK]: 1,
        keys[CounterKind.NETWORK]: 1,
        keys[CounterKind.USER_ANYWHERE]: 1,
    }


# --- Threshold Verify -----------------------------------------------------------------------------


def test_a_setup_code_redeemed_while_a_new_one_is_shown_is_refused(ada, clock, monkeypatch):
    """The person asks for a new setup code (which cancels the one shown) just as a device
    redeems the old one: the new code's request holds the person's row and is about to cancel
    the old set-up when the redemption begins. The redemption takes the person's row first,
    as every change of their methods does, then its set-up: it waits, finds the code canceled
    and is refused; the new code is shown. It took the set-up's row first, and the person's
    in the same statement: each waited for the other, and PostgreSQL undid one (a 503)."""
    browser = signed_in(ada)
    code, _ = show_setup_code(browser)
    token = browser.csrf_token()  # fetched now, not in the race
    device = new_device()
    body = {"setup_code": code, "platform": "linux", "key_protection": "software"}

    shown, redeemed = while_one_holds(
        monkeypatch,
        device_actions,
        "lock_user",
        lambda: browser.client.post("/settings/device-app/set-up", {"csrfmiddlewaretoken": token}),
        lambda: api(device, "/api/device/v1/enroll", body, with_jwk=True),
    )

    assert not isinstance(shown, BaseException), shown
    assert not isinstance(redeemed, BaseException), redeemed
    assert shown.status_code == 200, shown.content[:300]
    assert_failed(redeemed, 400, SETUP_CODE_INVALID)
    states = DeviceEnrollment.objects.filter(user=ada.user).order_by("id").values_list("state")
    assert [state for (state,) in states] == [EnrollmentState.CANCELED, EnrollmentState.WAITING]
    assert not Device.objects.filter(user=ada.user).exists()


def test_one_key_redeemed_for_two_people_at_once_sets_up_one_device(ada, clock, monkeypatch):
    """Two setup codes, Ada's and Grace's, redeemed at the same moment with one device key.
    Each redemption holds only its own person's row, so both find the key free; Ada's
    stores its device and is held there while Grace's stores hers. On PostgreSQL Grace's
    INSERT waits for Ada's on the thumbprint's unique index and then fails: that was a
    500. Now it is refused as a key that is already a device is (400, in the catalog's
    words), with nothing stored for it. SQLite runs the second after the first."""
    grace = enrolled_person("grace@example.com", "Grace Hopper")
    ada_code, _ = show_setup_code(signed_in(ada))
    grace_code, _ = show_setup_code(signed_in(grace))
    device = new_device()

    def redeem(code: str) -> Callable[[], Any]:
        body = {"setup_code": code, "platform": "linux", "key_protection": "software"}
        return lambda: api(device, "/api/device/v1/enroll", body, with_jwk=True)

    # ``record``'s first call in a redemption that succeeds comes after its device's INSERT.
    first, second = while_one_holds(
        monkeypatch, device_actions, "record", redeem(ada_code), redeem(grace_code)
    )

    assert not isinstance(first, BaseException), first
    assert not isinstance(second, BaseException), second
    assert first.status_code == 200, first.content[:300]
    assert_failed(second, 400, "Session Expired")
    assert second.json()["error"]["code"] == "bad_request"
    assert list(Device.objects.values_list("user__username", flat=True)) == ["ada@example.com"]
    states = dict(DeviceEnrollment.objects.values_list("user__username", "state"))
    assert states == {
        "ada@example.com": EnrollmentState.REDEEMED,
        "grace@example.com": EnrollmentState.CANCELED,
    }
    refused = AuditEvent.objects.get(action="device.enrollment_refused")
    assert (refused.subject, refused.reason) == (grace.user, "device_request_malformed")
