"""The organisation policy: one row holding one JSON document, read by every ceremony."""

from __future__ import annotations

from django.db import models


class OrganisationPolicy(models.Model):
    """Singleton (pk=1). Read it through ``threshold.policy.access.get_policy``.

    ``document`` maps setting names to values. What the settings are, their
    defaults and ranges, is declared once, in ``threshold.core.policy``: the
    document is validated through that declaration when it is read and written,
    so adding a setting needs no migration.
    """

    document = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return "Organisation policy"
