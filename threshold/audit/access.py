"""Read-only fetches of the audit log."""

from __future__ import annotations

from django.db.models import QuerySet

from threshold.audit.models import AuditEvent


def list_events(limit: int = 50) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.select_related("subject").order_by("-at", "-id")[:limit]
