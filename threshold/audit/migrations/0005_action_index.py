"""The log's events of one action in its order: (action, at, id) instead of action alone.

The portal's filter by action (and the readiness dashboard's count of sign-ins) read one
action's newest events first: SQLite found them through the action's index and sorted them
all (61 ms for 41,667 rows of one action among 1,000,000); (action, at, id) gives them in
order. The single-column indexes on ``action`` and ``at`` go: (action, at, id) and
(at, id) (``audit_at_id``) serve every query they served, and each audit row, on the
sign-in path too, has one index fewer to write.

The fields lose ``db_index`` in the migration state only. In the database their indexes are
dropped by name, found by introspection (Django named them; PostgreSQL also has a
``varchar_pattern_ops`` copy for ``action``): ``AlterField`` would have rebuilt the table on
SQLite, which copies every row and drops the append-only trigger (0002) with the old table.
"""

from typing import Any

import django.utils.timezone
from django.apps.registry import Apps
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

TABLE = "audit_auditevent"
COLUMNS = (["at"], ["action"])


def drop_single_column_indexes(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        constraints: dict[str, dict[str, Any]] = connection.introspection.get_constraints(
            cursor, TABLE
        )
    for name, info in sorted(constraints.items()):
        if (
            info["index"]
            and not info["unique"]
            and not info["primary_key"]
            and info["columns"] in COLUMNS
        ):
            schema_editor.execute(f"DROP INDEX {schema_editor.quote_name(name)}")


def create_single_column_indexes(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    # Back to the plain indexes (not PostgreSQL's pattern-ops copy, which no query here uses).
    model = apps.get_model("audit", "AuditEvent")
    for (column,) in COLUMNS:
        field = model._meta.get_field(column)
        sql = schema_editor._create_index_sql(model, fields=[field])  # type: ignore[attr-defined]  # noqa: SLF001
        schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("audit", "0004_app_index")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="auditevent",
                    name="action",
                    field=models.CharField(max_length=64),
                ),
                migrations.AlterField(
                    model_name="auditevent",
                    name="at",
                    field=models.DateTimeField(default=django.utils.timezone.now),
                ),
            ],
            database_operations=[
                migrations.RunPython(drop_single_column_indexes, create_single_column_indexes),
            ],
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["action", "at", "id"], name="audit_action_at_id"),
        ),
    ]
