"""Read-only fetches of the audit log."""

from __future__ import annotations

from django.db.models import QuerySet

from threshold.audit.models import AuditEvent


def list_events(limit: int = 50) -> QuerySet[AuditEvent]:
    """The latest ``limit`` events, newest first, each with its actor (None: anonymous, the
    command line, or a person since removed)."""
    return AuditEvent.objects.select_related("actor").order_by("-at", "-id")[:limit]
