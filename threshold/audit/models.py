"""The append-only audit log."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.lookups import IsNull
from django.db.models.sql.compiler import SQLCompiler
from django.utils import timezone


class AppOf(models.Func):
    """The client ID of the app an event is about: ``detail["app"]`` as text (single sign-on's
    events and the apps' own changes write it), NULL for an event about no app.

    Written out with its key in the SQL, not as a parameter as Django's ``detail__app`` lookup
    passes it, so that an index on it and the query that filters by it hold the same expression:
    SQLite uses an index on an expression only when the query's is the same, parameters apart.
    """

    template = "json_extract(%(expressions)s, '$.app')"
    output_field = models.TextField()

    def __init__(self) -> None:
        super().__init__(models.F("detail"))

    def as_postgresql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> Any:
        return self.as_sql(compiler, connection, template="(%(expressions)s ->> 'app')", **extra)


class AuditEvent(models.Model):
    """One thing that happened. Rows are written once and never changed.

    ``action`` is free text from ``threshold.audit.actions.Action`` (no
    ``choices=``: new actions must not need migrations). A database trigger
    refuses UPDATE, so the log stays append-only even outside the ORM.
    """

    at = models.DateTimeField(default=timezone.now)  # indexed with id: audit_at_id
    action = models.CharField(max_length=64)  # indexed with at and id: audit_action_at_id
    # Why: a failure's precise reason (a stable ThresholdError code), or what a success says
    # of its cause (sso.tokens_revoked "sessions_ended"); often blank. Whether the row is a
    # failure is its action's (``failed``), not this.
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
        # by action, by address, by failure reason and by app (docs/architecture.md, portal).
        # An action's events come in the log's order from (action, at, id) (the readiness
        # dashboard's sign-ins too); (at, id) serves every query by time alone.
        indexes = [
            models.Index(fields=["at", "id"], name="audit_at_id"),
            models.Index(fields=["action", "at", "id"], name="audit_action_at_id"),
            models.Index(fields=["ip"], name="audit_ip"),
            models.Index(fields=["reason"], name="audit_reason", condition=~models.Q(reason="")),
            # Partial: a sign-in's row names no app and so leaves the index alone. A filter by
            # app (AppOf() = client ID) implies AppOf() IS NOT NULL, which both engines' planners
            # prove; (at, id) after it pages the app's events in the log's order.
            models.Index(
                AppOf(),
                models.F("at"),
                models.F("id"),
                name="audit_app",
                condition=models.Q(IsNull(AppOf(), False)),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.action} {self.reason}".strip()

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ValueError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise ValueError("audit events are append-only")

    @property
    def failed(self) -> bool:
        """Whether this row records a failure or a refusal (``audit.actions.FAILURES``)."""
        from threshold.audit.actions import is_failure  # noqa: PLC0415 - it imports this module

        return is_failure(self.action)
