"""Rows the product wrote into an empty database, recorded once and written again.

Enrolling a person through the invite link costs 30-50 ms of CPU (about fifty statements,
most of them the ORM's), and thousands of tests begin with someone enrolled: a third of the
suite's CPU went there. ``tests/integration/conftest.py``'s ``enrolled_person`` therefore
enrolls for real the first time it is asked for a person in a process, records every row
that enrollment wrote (``capture``), and writes the same rows again (``replay``) whenever it
is asked for the same person again *in the same state*:

- the database holds nothing of its own (``is_empty``: every table but Django's permissions
  and content types has no row), as when the rows were recorded;
- the settings are the same (conftest keeps recordings by ``settings._wrapped``, which a
  change of settings replaces for its duration);
- the clock moved by at most an hour: each date and time is moved by as much as the clock
  moved since the recording, so the rows are as fresh as a real enrollment's would be.

Anything else (a second person, a policy or group set up first, a test that moved the clock
by days) enrolls for real. The rows keep their primary keys; one that is taken makes the
replay roll back and the caller enroll for real.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.apps import apps
from django.db import IntegrityError, connection, models, transaction

# Rows Django's migrations write, which no test changes.
_SEEDED = {"auth.Permission", "contenttypes.ContentType"}


@dataclass(frozen=True)
class Table:
    model: type[models.Model]
    rows: tuple[dict[str, Any], ...]
    moments: frozenset[str]  # the attribute names of the dates a replay moves


def _models() -> list[type[models.Model]]:
    return [
        model
        for model in apps.get_models(include_auto_created=True)
        if model._meta.label not in _SEEDED
        and model._meta.managed
        and not model._meta.proxy
        and not model._meta.swapped
    ]


def is_empty() -> bool:
    """Whether no table but the seeded ones has a row (one statement)."""
    tables = [connection.ops.quote_name(model._meta.db_table) for model in _models()]
    with connection.cursor() as cursor:
        # The models' own table names.
        counts = " + ".join(f"(SELECT COUNT(*) FROM {table})" for table in tables)  # noqa: S608
        cursor.execute(f"SELECT {counts}")
        (count,) = cursor.fetchone()
    return bool(count == 0)


def _plain(value: Any) -> Any:
    return bytes(value) if isinstance(value, memoryview) else value


def capture() -> tuple[Table, ...]:
    """Every row of every table but the seeded ones, in an order that inserts them again
    (a table after the tables its foreign keys point to)."""
    tables: list[Table] = []
    for model in _models():
        rows = tuple(
            {name: _plain(value) for name, value in row.items()}
            for row in model._base_manager.order_by("pk").values()
        )
        if rows:
            # Not an ``auto_now`` or ``auto_now_add`` field: saving dates it now, a replay too.
            moments = frozenset(
                field.attname
                for field in model._meta.concrete_fields
                if isinstance(field, models.DateTimeField)
                and not (field.auto_now or field.auto_now_add)
            )
            tables.append(Table(model, rows, moments))
    ordered: list[Table] = []
    while tables:
        ready = [
            table
            for table in tables
            if not any(
                field.related_model is other.model and other is not table
                for field in table.model._meta.concrete_fields
                if field.is_relation
                for other in tables
            )
        ]
        if not ready:
            raise RuntimeError(f"a cycle of foreign keys among {[t.model for t in tables]}")
        ordered.extend(ready)
        tables = [table for table in tables if table not in ready]
    return tuple(ordered)


def _again(table: Table, name: str, value: Any, moved: timedelta) -> Any:
    if name in table.moments and value is not None:
        return value + moved
    # A JSON value is the test's own to change, not the recording's.
    return copy.deepcopy(value) if isinstance(value, dict | list) else value


def replay(tables: tuple[Table, ...], moved: timedelta) -> dict[type[models.Model], list[Any]]:
    """Insert the rows again, each date and time moved by ``moved``: the model instances
    written, by model. Raises IntegrityError, having written nothing, if a key is taken."""
    written: dict[type[models.Model], list[Any]] = {}
    with transaction.atomic():
        for table in tables:
            objects = [
                table.model(
                    **{name: _again(table, name, value, moved) for name, value in row.items()}
                )
                for row in table.rows
            ]
            written[table.model] = table.model._base_manager.bulk_create(objects)
    return written


__all__ = ["IntegrityError", "Table", "capture", "is_empty", "replay"]
