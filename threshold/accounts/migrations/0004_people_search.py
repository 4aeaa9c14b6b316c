"""On PostgreSQL, a trigram index for the admin portal's people search by name (pg_trgm, a
trusted extension since PostgreSQL 13). Where the extension cannot be created (an older server,
a role without the right), the name search still works, scanning the table; a warning says so.
SQLite has nothing to add."""

import logging

from django.apps.registry import Apps
from django.db import DatabaseError, migrations, transaction
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

log = logging.getLogger(__name__)

# The search (threshold/portal/people.py): the username starts with the text (the unique
# index's text_pattern_ops twin, which Django creates, serves it) or the name contains it.
# Django's icontains compares UPPER(column) on PostgreSQL.
INDEX = "accounts_user_full_name_trgm"


def add_indexes(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    try:
        with transaction.atomic(using=connection.alias):
            schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except DatabaseError as exc:
        log.warning("people search without trigram indexes (pg_trgm unavailable: %s)", exc)
        return
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {INDEX} ON accounts_user "
        "USING gin (UPPER(full_name) gin_trgm_ops)"
    )


def drop_indexes(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_user_role"),
    ]

    operations = [migrations.RunPython(add_indexes, drop_indexes)]
