"""Outside review (security and correctness) of the day's changes, fe62f60..HEAD.

Read: ``sessions.actions.with_the_session`` and ``SessionStore.save_now`` at every call site
(enrollment, passkey sign-in, Sign in again, Verify it's you, the push sign-in, the fallback's
code step, its set-up and removal), the step-up push left out of it, the password attempt given
back on a database failure, ``sso/cors.py`` on /token, /userinfo and /revoke, the redirect_uri
and nonce changes, /userinfo's insufficient_scope, groups 0003 and accounts 0006,
``portal/usable.py`` against ``core.policy.evaluate``, the CLI's refused commands, diffsettings,
``invite --admin``, ``recover`` and ``groups remove``, attestation's ``path_failed``, the
id/rawId rule and the fido-u2f AAGUID, the access log's redaction, ``Config``'s repr and the
300 s ceremony timeout.

Each test is one defect it found, fixed since. Database faults are the driver's own
``OperationalError`` raised at one statement (``tests.support.faults``), never a mock.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.db import IntegrityError, transaction
from django.test import Client

from tests.integration.conftest import (
    ORIGIN,
    Browser,
    FrozenClock,
    Person,
    begin_sign_in,
    enrolled_person,
)
from tests.integration.test_cli_review import run
from tests.integration.test_db_fault_review import (
    PASSWORD,
    browser,
    device_api,
    post_form,
    with_device,
    with_fallback,
)
from tests.integration.test_db_fault_review import first_fails as statement_fails
from tests.support.faults import database_fails
from threshold.audit.actions import Origin
from threshold.core import throttle
from threshold.devices.models import SignInApproval
from threshold.fallback.models import RecoveryCode
from threshold.groups.models import Group, group_key
from threshold.sso.actions import do_add_app

AUDIT_INSERT = 'INSERT INTO "audit_auditevent"'


def password_step(visitor: Browser, person: Person, password: str) -> Any:
    return post_form(visitor, "/sign-in/password", username=person.user.username, password=password)


# --- with_the_session: what runs after its commit ---------------------------------------------


def test_a_recovery_code_answered_try_again_after_the_commit_still_signs_in(db: None) -> None:
    ada = enrolled_person("ada@example.com", "Ada Lovelace")
    code = with_fallback(ada)[0]
    visitor = browser()
    assert password_step(visitor, ada, PASSWORD).status_code == 303

    # passkey_prompt_due's SELECT, after the code, the audit row and the session committed.
    with database_fails(at=0, where=lambda sql: '"fallback_passkeyprompt"' in sql):
        first = post_form(visitor, "/sign-in/code", code=code)
    assert first.status_code == 503
    used = RecoveryCode.objects.filter(user=ada.user, used_at__isnull=False).count()
    again = post_form(visitor, "/sign-in/code", code=code)
    # Today: 400 "Session Expired" (the anonymous session was replaced, its cookie never
    # came), the code burnt, and a signed-in session row nobody holds the key of.
    assert again.status_code == 303 or used == 0, (again.status_code, used)
    assert visitor.is_signed_in()


def test_a_step_up_push_answered_try_again_still_verifies(db: None) -> None:
    ada = enrolled_person("ada@example.com", "Ada Lovelace")
    device = with_device(ada)
    visitor = browser()
    credential = ada.authenticator.get(begin_sign_in(visitor), ORIGIN)
    assert visitor.post_json("/sign-in/result", credential).status_code == 200
    assert post_form(visitor, "/settings/verify/push").status_code == 303
    approval = SignInApproval.objects.order_by("-id").first()
    assert approval is not None
    pending = device_api(device, "/api/device/v1/approvals/pending").json()["approvals"][0]
    answered = device_api(
        device,
        "/api/device/v1/approvals/answer",
        {
            "id": pending["id"],
            "decision": "approve",
            "number": approval.number,
            "user_verified": True,
        },
    )
    assert answered.status_code == 200, answered.content

    with statement_fails('UPDATE "web_session"'):  # the session's note of the step-up
        assert post_form(visitor, "/settings/verify/push/finish").status_code == 503
    again = post_form(visitor, "/settings/verify/push/finish")
    assert again.status_code == 303, again.status_code  # 400 "Session Expired": push used


# --- The password attempt given back on a database failure ----------------------------------


def test_wrong_passwords_count_even_when_their_audit_row_fails(
    transactional_db: None, clock: FrozenClock
) -> None:
    # Real commits: in a test's own transaction, Django's save() marks it for rollback.
    ada = enrolled_person("ada@example.com", "Ada Lovelace")
    with_fallback(ada)
    attacker = browser()
    for attempt in range(12):  # past password_lockout_threshold (10)
        with statement_fails(AUDIT_INSERT):
            answer = password_step(attacker, ada, f"guess number {attempt:02d} of many")
        assert answer.status_code in (429, 503), answer.status_code
        # Past the doubling wait each wrong one starts, so that every guess is checked (with the
        # real clock, the guesses after the third met a 1 s wait and were not checked, and the
        # right password went through whenever the loop took longer than that second).
        clock.advance(throttle.MAX_DELAY_SECONDS + 1)
    with statement_fails(AUDIT_INSERT):
        right = password_step(attacker, ada, PASSWORD)
    # Today every guess answered 503 and was given back; the right password then goes through.
    assert right.status_code != 303, "twelve checked wrong passwords left the password path open"


# --- Single sign-on: CORS ---------------------------------------------------------------------


def test_a_public_app_at_an_internationalized_domain_gets_cors(db: None) -> None:
    do_add_app("Bücher", Origin.cli(), redirect_uris=["https://bücher.example/cb"], public=True)
    origin = "https://xn--bcher-kva.example"  # what the browser's Origin header says
    preflight = Client().options(
        "/userinfo", HTTP_ORIGIN=origin, HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET"
    )
    assert preflight.status_code == 204
    assert preflight.get("Access-Control-Allow-Origin") == origin


# --- Groups -------------------------------------------------------------------------------


def test_removing_a_group_does_not_say_nobody_may_use_an_app_other_groups_keep(
    db: None, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "groups", "add", "Eng")
    run(capsys, "groups", "add", "Ops")
    _, out, _ = run(
        capsys, "apps", "add", "Wiki", "--redirect-uri", "https://wiki.example.com/cb", "--json"
    )
    client_id = json.loads(out)["client_id"]
    assert run(capsys, "apps", "assign", client_id, "--group", "Eng", "--group", "Ops")[0] == 0
    status, removed, _ = run(capsys, "groups", "remove", "Eng")
    assert status == 0
    assert "stays assigned to its other groups" in removed, removed  # "Nobody may use Wiki now"


def test_the_group_key_migration_tells_apart_long_names_that_fold_alike(db: None) -> None:
    fill_keys = importlib.import_module("threshold.groups.migrations.0003_group_name_key").fill_keys
    upper, lower = "É" + "q" * 99, "é" + "q" * 99  # two groups SQLite's lower() told apart
    Group.objects.create(name=upper)
    second = Group.objects.create(name="placeholder")
    Group.objects.filter(pk=second.pk).update(name=lower)  # as a database before 0003 held it
    assert group_key(upper) == group_key(lower)
    try:
        with transaction.atomic():
            fill_keys(django_apps, None)
    except IntegrityError as exc:  # here at the save; in the migration at AlterField's index
        pytest.fail(f"the migration fails: {exc}")
    keys = list(Group.objects.values_list("name_key", flat=True))
    assert len(set(keys)) == len(keys)
