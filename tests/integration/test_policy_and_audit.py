"""The organisation policy as the ceremonies apply it, and the append-only audit log."""

from __future__ import annotations

import dataclasses

import pytest
from django.db import DatabaseError, connection, transaction

from tests.integration.conftest import (
    LIMIT_REACHED,
    ORIGIN,
    SESSION_EXPIRED,
    Browser,
    assert_failed,
    assert_ok,
    audit_trail,
    begin_sign_in,
    invite,
    last_event,
    sign_in,
)
from tests.support.authenticator import SoftAuthenticator
from threshold.audit.actions import Origin
from threshold.audit.models import AuditEvent
from threshold.core.policy import Policy
from threshold.passkeys.models import Passkey
from threshold.policy.actions import do_update_policy, get_policy

pytestmark = pytest.mark.django_db


def set_policy(**changes) -> Policy:
    return do_update_policy(dataclasses.replace(get_policy(), **changes), Origin.cli())


def test_policy_defaults():
    assert get_policy() == Policy(
        ceremony_timeout_seconds=300,
        user_verification="required",
        passkey_limit=10,
        invite_lifetime_hours=168,
    )


def test_policy_change_is_audited():
    set_policy(passkey_limit=1)
    event = last_event("policy.changed")
    assert event.via == "cli"
    assert event.detail["changes"] == {"passkey_limit": {"from": 10, "to": 1}}
    assert get_policy().passkey_limit == 1
    # Setting the same values again changes nothing and records nothing.
    set_policy(passkey_limit=1)
    assert [a for a, _ in audit_trail()].count("policy.changed") == 1


def test_passkey_limit_refuses_another_registration_at_options(ada, browser):
    set_policy(passkey_limit=1)
    assert_ok(sign_in(browser, ada.authenticator))
    add = "/settings/security-methods/add"
    body = assert_failed(browser.post_json(f"{add}/options", {}), 400, LIMIT_REACHED)
    assert body["error"]["code"] == "limit_reached"
    assert "registration" not in browser.ceremonies
    assert Passkey.objects.filter(user=ada.user).count() == 1

    # Raised again, another passkey can be added.
    set_policy(passkey_limit=2)
    options = assert_ok(browser.post_json(f"{add}/options", {}))["publicKey"]
    credential = SoftAuthenticator().create(options, ORIGIN)
    assert_ok(browser.post_json(f"{add}/result", credential))
    assert Passkey.objects.filter(user=ada.user).count() == 2


def test_passkey_limit_holds_for_a_ceremony_begun_twice(browser):
    """Two tabs begin with one slot left; only the first to finish gets it."""
    set_policy(passkey_limit=1)
    _, token = invite()
    other_tab = Browser()
    first = assert_ok(browser.post_json(f"/enroll/{token}/options"))["publicKey"]
    second = assert_ok(other_tab.post_json(f"/enroll/{token}/options"))["publicKey"]
    assert_ok(
        browser.post_json(f"/enroll/{token}/result", SoftAuthenticator().create(first, ORIGIN))
    )
    late = other_tab.post_json(
        f"/enroll/{token}/result", SoftAuthenticator().create(second, ORIGIN)
    )
    assert late.status_code == 400
    assert late.json()["status"] == "failed"
    assert Passkey.objects.count() == 1
    assert last_event("passkey.registration_failed").reason == "passkey_limit_reached"


def test_ceremony_timeout_applies_to_options_and_challenges(ada, clock):
    set_policy(ceremony_timeout_seconds=120)
    browser = Browser()
    options = begin_sign_in(browser)
    assert options["timeout"] == 120_000
    clock.advance(100)  # past the default 60 s, inside the policy's 120 s
    assert_ok(browser.post_json("/sign-in/result", ada.authenticator.get(options, ORIGIN)))

    late = Browser()
    options = begin_sign_in(late)
    clock.advance(121)
    response = late.post_json("/sign-in/result", ada.authenticator.get(options, ORIGIN))
    assert_failed(response, 400, SESSION_EXPIRED)
    assert last_event("sign_in.failed").reason == "challenge_expired"

    _, token = invite("grace@example.com", "Grace Hopper")
    registration = assert_ok(Browser().post_json(f"/enroll/{token}/options"))["publicKey"]
    assert registration["timeout"] == 120_000


def test_user_verification_preferred_lets_a_security_key_without_pin_sign_in(ada, browser):
    set_policy(user_verification="preferred")
    options = begin_sign_in(browser)
    assert options["userVerification"] == "preferred"
    assert_ok(
        browser.post_json(
            "/sign-in/result", ada.authenticator.get(options, ORIGIN, user_verified=False)
        )
    )
    assert last_event("sign_in.succeeded").detail["user_verified"] is False


def test_invite_lifetime_applies_to_new_links(clock):
    set_policy(invite_lifetime_hours=1)
    _, token = invite()
    assert Browser().get(f"/enroll/{token}").status_code == 200
    clock.advance(3601)
    assert Browser().get(f"/enroll/{token}").status_code == 404


# --- The audit log is append-only --------------------------------------------------------------


def test_audit_events_cannot_be_changed_through_the_orm(ada):
    event = AuditEvent.objects.filter(action="passkey.registered").get()
    event.action = "nothing.happened"
    with pytest.raises(ValueError, match="append-only"):
        event.save()
    with pytest.raises(ValueError, match="append-only"):
        event.delete()
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(action="nothing.happened")
    assert AuditEvent.objects.get(pk=event.pk).action == "passkey.registered"


def test_audit_events_cannot_be_changed_in_sql(ada):
    before = audit_trail()
    table = connection.ops.quote_name(AuditEvent._meta.db_table)
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET action = 'x'")  # noqa: S608 - a constant table name
    assert audit_trail() == before
    # The database is still usable after the refused statement.
    assert AuditEvent.objects.count() == len(before)


def test_new_audit_events_can_still_be_written(ada):
    count = AuditEvent.objects.count()
    set_policy(passkey_limit=3)
    assert AuditEvent.objects.count() == count + 1
