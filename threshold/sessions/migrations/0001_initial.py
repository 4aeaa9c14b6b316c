"""The Session model moves here from threshold.web, keeping its table (web_session).

Only Django's idea of where the model lives changes: the table, its rows and its
indexes stay as web's first migration made them, so nobody is signed out.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        # That migration creates the table.
        ("web", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Session",
                    fields=[
                        (
                            "session_key",
                            models.CharField(
                                max_length=40,
                                primary_key=True,
                                serialize=False,
                                verbose_name="session key",
                            ),
                        ),
                        ("session_data", models.TextField(verbose_name="session data")),
                        (
                            "expire_date",
                            models.DateTimeField(db_index=True, verbose_name="expire date"),
                        ),
                        ("ip", models.GenericIPAddressField(null=True)),
                        ("user_agent", models.CharField(blank=True, max_length=512)),
                        ("sign_in_method", models.CharField(blank=True, max_length=32)),
                        ("signed_in_at", models.DateTimeField(null=True)),
                        ("last_activity", models.DateTimeField(null=True)),
                        (
                            "user",
                            models.ForeignKey(
                                null=True,
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="sessions",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                    ],
                    options={
                        "verbose_name": "session",
                        "verbose_name_plural": "sessions",
                        "db_table": "web_session",
                        "abstract": False,
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
