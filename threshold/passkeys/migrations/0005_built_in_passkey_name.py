"""The name of a passkey kept on the device it was made on, when nothing names its
authenticator: "Built-in passkey", not "This device's passkey", which was wrong wherever
else the list is read (another computer, a phone)."""

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

OLD = "This device's passkey"
NEW = "Built-in passkey"


def _rename(apps: Apps, old: str, new: str) -> None:
    passkeys = apps.get_model("passkeys", "Passkey")
    passkeys.objects.filter(authenticator_name=old).update(authenticator_name=new)


def rename(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    _rename(apps, OLD, NEW)


def rename_back(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    _rename(apps, NEW, OLD)


class Migration(migrations.Migration):
    dependencies = [
        ("passkeys", "0004_used_challenges"),
    ]

    operations = [migrations.RunPython(rename, rename_back)]
