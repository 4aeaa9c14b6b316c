"""Group names unique whatever their case beyond ASCII: a ``name_key`` column (Unicode case
folding, ``groups.models.group_key``) replaces the unique index on lower(name), which SQLite
folds for ASCII letters only."""

import unicodedata
from typing import Any

from django.db import migrations, models


def _key(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def fill_keys(apps: Any, schema_editor: Any) -> None:
    Group = apps.get_model("groups", "Group")
    taken: set[str] = set()
    for group in Group.objects.order_by("pk"):
        name, key, tries = group.name, _key(group.name), 0
        while key in taken:
            # Two groups that only SQLite's ASCII-only lower() told apart ("Équipe" and
            # "équipe"): the later keeps its members and apps under a name that tells it
            # apart, within the 100 characters a name may have.
            tries += 1
            suffix = f" ({group.pk})" if tries == 1 else f" ({group.pk}-{tries})"
            name = group.name[: 100 - len(suffix)] + suffix
            key = _key(name)
        taken.add(key)
        group.name, group.name_key = name, key
        group.save(update_fields=["name", "name_key"])


class Migration(migrations.Migration):
    dependencies = [
        ("groups", "0002_group_rules"),
    ]

    operations = [
        migrations.AddField(
            model_name="group",
            name="name_key",
            field=models.CharField(default="", editable=False, max_length=300),
            preserve_default=False,
        ),
        migrations.RunPython(fill_keys, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="group",
            name="name_key",
            field=models.CharField(editable=False, max_length=300, unique=True),
        ),
        migrations.RemoveConstraint(
            model_name="group",
            name="groups_group_name_ci_unique",
        ),
    ]
