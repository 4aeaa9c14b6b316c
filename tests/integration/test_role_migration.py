"""accounts 0003: administrators become people with the administrator role, and back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

FLAG = [("accounts", "0002_user_lock")]
ROLE = [("accounts", "0003_user_role")]


def migrate(targets: list[tuple[str, str]]) -> Any:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return MigrationExecutor(connection).loader.project_state(targets).apps


@pytest.fixture
def restore_schema() -> Iterator[None]:
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_administrators_get_the_administrator_role_and_back(restore_schema):
    apps = migrate(FLAG)
    OldUser = apps.get_model("accounts", "User")
    OldUser.objects.create(
        username="root@example.com", user_handle=b"r" * 32, is_administrator=True
    )
    OldUser.objects.create(username="ada@example.com", user_handle=b"a" * 32)

    apps = migrate(ROLE)
    User = apps.get_model("accounts", "User")
    assert dict(User.objects.values_list("username", "role")) == {
        "root@example.com": "admin",
        "ada@example.com": "",
    }

    User.objects.filter(username="ada@example.com").update(role="helpdesk")
    apps = migrate(FLAG)
    OldUser = apps.get_model("accounts", "User")
    assert dict(OldUser.objects.values_list("username", "is_administrator")) == {
        "root@example.com": True,
        "ada@example.com": False,
    }
