"""Administrators become people with the administrator role (``User.role``), and back."""

from django.apps.registry import Apps
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor


def administrators_to_role(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    User = apps.get_model("accounts", "User")
    User.objects.filter(is_administrator=True).update(role="admin")


def role_to_administrators(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    User = apps.get_model("accounts", "User")
    User.objects.filter(role="admin").update(is_administrator=True)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_user_lock"),
    ]

    operations = [
        migrations.AddField(
            model_name="user",
            name="role",
            field=models.CharField(blank=True, db_index=True, default="", max_length=16),
        ),
        migrations.RunPython(administrators_to_role, role_to_administrators),
        migrations.RemoveField(
            model_name="user",
            name="is_administrator",
        ),
    ]
