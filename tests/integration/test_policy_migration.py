"""policy 0005: a column per setting becomes one document, and back (SQLite and PostgreSQL).

The migrations run for real (Django's MigrationExecutor) on the test database, which
is put back at the latest migrations afterwards, whatever happens.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from threshold.audit.actions import Origin
from threshold.core.policy import Policy
from threshold.policy.access import get_policy
from threshold.policy.actions import do_update_policy

pytestmark = pytest.mark.django_db(transaction=True)

COLUMNS = [("policy", "0004_fallback_and_prompt")]
DOCUMENT = [("policy", "0005_policy_document")]
DENIED = "ba86dc56-635f-4141-aef6-00227b1b9af6"

# A row as an administrator left it under 0004: every column set, most away from the default.
OLD_ROW: dict[str, Any] = {
    "ceremony_timeout_seconds": 90,
    "user_verification": "preferred",
    "passkey_limit": 3,
    "invite_lifetime_hours": 48,
    "step_up_max_age_seconds": 600,
    "flow_idle_timeout_minutes": 15,
    "allow_password_fallback": False,
    "password_lockout_threshold": 5,
    "passkey_prompt_snooze_sign_ins": 4,
    "passkey_prompt_snooze_days": 2,
    "recovery_link_lifetime_minutes": 30,
    "require_trusted_attestation": True,
    "aaguid_allow_list": [],
    "aaguid_deny_list": [DENIED],
    "block_synced_passkeys": True,
    "allowed_algorithms": [-7, -257],
    "refuse_u2f_authenticators": False,
}


def migrate(targets: list[tuple[str, str]]) -> Any:
    """Migrate the test database to ``targets``; the app registry of that state."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return MigrationExecutor(connection).loader.project_state(targets).apps


@pytest.fixture
def executor_restores_the_schema() -> Iterator[None]:
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_the_columns_become_the_document_and_the_current_code_reads_it(
    executor_restores_the_schema,
):
    old = migrate(COLUMNS).get_model("policy", "OrganisationPolicy")
    old.objects.create(pk=1, **OLD_ROW)

    new = migrate(DOCUMENT).get_model("policy", "OrganisationPolicy")
    assert new.objects.get(pk=1).document == OLD_ROW
    assert get_policy() == Policy.from_document(OLD_ROW)
    assert get_policy().aaguid_deny_list == (DENIED,)
    assert get_policy().allowed_algorithms == (-7, -257)


def test_an_empty_algorithm_column_takes_the_default(executor_restores_the_schema):
    # Rows from before allowed_algorithms existed hold an empty list there.
    old = migrate(COLUMNS).get_model("policy", "OrganisationPolicy")
    old.objects.create(pk=1, passkey_limit=4, allowed_algorithms=[])

    new = migrate(DOCUMENT).get_model("policy", "OrganisationPolicy")
    assert "allowed_algorithms" not in new.objects.get(pk=1).document
    assert get_policy() == Policy(passkey_limit=4, ceremony_timeout_seconds=60)  # as stored


def test_the_reverse_migration_puts_the_document_back_into_the_columns(
    executor_restores_the_schema,
):
    do_update_policy(Policy.from_document(OLD_ROW), Origin.cli())

    old = migrate(COLUMNS).get_model("policy", "OrganisationPolicy")
    row = old.objects.get(pk=1)
    assert {name: getattr(row, name) for name in OLD_ROW} == OLD_ROW

    # And forward again, unchanged.
    migrate(DOCUMENT)
    assert get_policy() == Policy.from_document(OLD_ROW)


def test_no_row_migrates_to_no_row(executor_restores_the_schema):
    assert not migrate(COLUMNS).get_model("policy", "OrganisationPolicy").objects.exists()
    assert not migrate(DOCUMENT).get_model("policy", "OrganisationPolicy").objects.exists()
    assert get_policy() == Policy()
