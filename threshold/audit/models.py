"""The append-only audit log."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.utils import timezone


class AuditEvent(models.Model):
    """One thing that happened. Rows are written once and never changed.

    ``action`` is free text from ``threshold.audit.actions.Action`` (no
    ``choices=``: new actions must not need migrations). A database trigger
    refuses UPDATE, so the log stays append-only even outside the ORM.
    """

    at = models.DateTimeField(default=timezone.now, db_index=True)
    action = models.CharField(max_length=64, db_index=True)
    # The precise failure reason: a stable ThresholdError code, blank on success.
    reason = models.CharField(max_length=64, blank=True)
    # Who acted (None: anonymous or the command line) and whom it concerned.
    # No database constraint: deleting a person must not rewrite their history.
    actor = models.ForeignKey(
        "accounts.User",
        null=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    subject = models.ForeignKey(
        "accounts.User",
        null=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    # Snapshot of the username, readable after the account is gone.
    subject_label = models.CharField(max_length=150, blank=True)
    ip = models.GenericIPAddressField(null=True)
    user_agent = models.CharField(max_length=512, blank=True)
    via = models.CharField(max_length=16, default="web")  # audit.actions.Channel
    detail = models.JSONField(default=dict)

    class Meta:
        ordering = ["-at", "-id"]
        # The admin portal's audit log pages by keyset on (at, id), newest first, and filters
        # by address and by failure reason (docs/architecture.md, portal).
        indexes = [
            models.Index(fields=["at", "id"], name="audit_at_id"),
            models.Index(fields=["ip"], name="audit_ip"),
            models.Index(fields=["reason"], name="audit_reason", condition=~models.Q(reason="")),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.action} {self.reason}".strip()

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ValueError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise ValueError("audit events are append-only")
