"""Keeping ceremony state server-side between ``begin`` and ``finish``."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from threshold import clock
from threshold.core import errors
from threshold.passkeys.models import PendingCeremony

REGISTRATION = "registration"
AUTHENTICATION = "authentication"


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


def take_pending(session_key: str | None, kind: str) -> PendingCeremony:
    """Consume this session's pending ceremony of ``kind``; it can be taken once.

    The DELETE decides: when two requests race for the same ceremony, only the
    one whose DELETE removed the row may go on.
    """
    if not session_key:
        raise errors.ChallengeMissing("no session")
    binding = _binding(session_key)
    row = PendingCeremony.objects.filter(session_binding=binding, kind=kind).first()
    if row is None:
        raise errors.ChallengeMissing()
    deleted, _ = PendingCeremony.objects.filter(pk=row.pk).delete()
    if deleted != 1:
        raise errors.ChallengeMissing("taken by a concurrent request")
    return row


def delete_expired() -> int:
    """Remove abandoned ceremonies (run by ``threshold cleanup`` and at start-up)."""
    deleted, _ = PendingCeremony.objects.filter(expires_at__lt=clock.now_datetime()).delete()
    return deleted
