"""The people search by name, whatever the case or accents on every database: a ``name_key``
column (``accounts.models.search_key``: Unicode case folding, compatibility decomposition, no
combining marks), filled here for everyone added before and kept by ``User.save()``. SQLite's
LIKE folds ASCII letters only, so "östlund" found no "Åsa Östlund".

On PostgreSQL the trigram index moves from UPPER(full_name) (0004), which the search no longer
asks, to the key; where pg_trgm cannot be had, the search still works, scanning the table."""

import logging
import unicodedata
from typing import Any

from django.db import DatabaseError, migrations, models, transaction

log = logging.getLogger(__name__)

BATCH = 1000
OLD_INDEX = "accounts_user_full_name_trgm"
INDEX = "accounts_user_name_key_trgm"


def _key(text: str) -> str:
    # accounts.models.search_key as of this migration.
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def fill_keys(apps: Any, schema_editor: Any) -> None:
    User = apps.get_model("accounts", "User")
    people = User.objects.using(schema_editor.connection.alias).exclude(full_name="")
    last = 0
    while True:
        batch = list(people.filter(pk__gt=last).order_by("pk").only("pk", "full_name")[:BATCH])
        if not batch:
            return
        for user in batch:
            user.name_key = _key(user.full_name)
        User.objects.using(schema_editor.connection.alias).bulk_update(batch, ["name_key"])
        last = batch[-1].pk


def _has_trigrams(schema_editor: Any) -> bool:
    """Whether pg_trgm is there, or can be created (0004 tried)."""
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
        if cursor.fetchone() is not None:
            return True
    try:
        with transaction.atomic(using=connection.alias):
            schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except DatabaseError as exc:
        log.warning("people search without trigram indexes (pg_trgm unavailable: %s)", exc)
        return False
    return True


def move_index(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP INDEX IF EXISTS {OLD_INDEX}")
    if _has_trigrams(schema_editor):
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {INDEX} ON accounts_user USING gin (name_key gin_trgm_ops)"
        )


def move_index_back(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")
    if _has_trigrams(schema_editor):
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {OLD_INDEX} ON accounts_user "
            "USING gin (UPPER(full_name) gin_trgm_ops)"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0005_email_verified"),
    ]

    operations = [
        migrations.AddField(
            model_name="user",
            name="name_key",
            field=models.TextField(blank=True, db_default="", editable=False),
        ),
        migrations.RunPython(fill_keys, migrations.RunPython.noop),
        migrations.RunPython(move_index, move_index_back),
    ]
