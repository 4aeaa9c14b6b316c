"""Keeping ceremony state server-side between ``begin`` and ``finish``."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import connection

from threshold import clock
from threshold.core import errors
from threshold.passkeys.models import PendingCeremony

REGISTRATION = "registration"
AUTHENTICATION = "authentication"
# Re-verifying a signed-in person before they change their sign-in methods.
STEP_UP = "step_up"


def _binding(session_key: str) -> str:
    return hashlib.sha256(session_key.encode()).hexdigest()


def save_pending(
    session_key: str, kind: str, state: Any, context: dict[str, Any] | None = None
) -> None:
    """Remember ``state`` for this session, replacing any earlier ceremony of ``kind``."""
    row = PendingCeremony(
        session_binding=_binding(session_key),
        kind=kind,
        state=state.to_json(),
        context=context or {},
        expires_at=datetime.fromtimestamp(state.expires_at, UTC),
    )
    # One statement (INSERT ... ON CONFLICT DO UPDATE) on SQLite and PostgreSQL.
    PendingCeremony.objects.bulk_create(
        [row],
        update_conflicts=True,
        unique_fields=["session_binding", "kind"],
        update_fields=["state", "context", "expires_at"],
    )


@dataclass(frozen=True)
class TakenCeremony:
    state: dict[str, Any]
    context: dict[str, Any]


def take_pending(session_key: str | None, kind: str) -> TakenCeremony:
    """Consume this session's pending ceremony of ``kind``; it can be taken once.

    One ``DELETE ... RETURNING`` statement (SQLite 3.35+, PostgreSQL) finds and
    consumes the row: when two requests race for the same ceremony, only the
    one whose DELETE removed the row gets it.
    """
    if not session_key:
        raise errors.ChallengeMissing("no session")
    table = connection.ops.quote_name(PendingCeremony._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            # The table name comes from the model; the values are parameters.
            f"DELETE FROM {table} WHERE session_binding = %s AND kind = %s"  # noqa: S608
            " RETURNING state, context",
            [_binding(session_key), kind],
        )
        row = cursor.fetchone()
    if row is None:
        raise errors.ChallengeMissing()
    return TakenCeremony(state=_json(row[0]), context=_json(row[1]))


def _json(value: Any) -> dict[str, Any]:
    # psycopg decodes JSON columns itself; SQLite returns the text.
    return json.loads(value) if isinstance(value, str | bytes) else value


def delete_expired() -> int:
    """Remove abandoned ceremonies (run by ``threshold cleanup`` and at start-up)."""
    deleted, _ = PendingCeremony.objects.filter(expires_at__lt=clock.now_datetime()).delete()
    return deleted
