"""The Session model moved from threshold.web to threshold.sessions without moving a row.

Its table stays ``web_session``: a database migrated before the move keeps every
session, so nobody is signed out by an upgrade (SQLite and PostgreSQL).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from threshold.sessions.models import Session

MOVE = {("sessions", "0001_initial"), ("web", "0002_session_moved_to_sessions")}


@pytest.mark.django_db(transaction=True)
def test_a_session_stored_before_the_move_is_read_after_it():
    assert Session._meta.db_table == "web_session"
    expires = datetime.now(UTC) + timedelta(hours=1)
    try:
        # Back to before the move: web's table, web's model.
        call_command("migrate", "sessions", "zero", verbosity=0)
        applied = set(MigrationExecutor(connection).loader.applied_migrations)
        assert ("web", "0001_initial") in applied
        assert not MOVE & applied
        # What a server before the move wrote, through the table it knew.
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO web_session (session_key, session_data, expire_date, user_agent,"
                " sign_in_method) VALUES (%s, %s, %s, %s, %s)",
                ["k" * 32, "data", expires, "Firefox", "passkey"],
            )
    finally:
        call_command("migrate", verbosity=0)

    assert set(MigrationExecutor(connection).loader.applied_migrations) >= MOVE
    session = Session.objects.get(session_key="k" * 32)
    assert (session.session_data, session.user_agent, session.sign_in_method) == (
        "data",
        "Firefox",
        "passkey",
    )
