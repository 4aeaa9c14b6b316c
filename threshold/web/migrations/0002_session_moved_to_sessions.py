"""The Session model now belongs to threshold.sessions, which keeps this app's table.

State only: web_session and its rows stay (threshold/sessions/migrations/0001_initial.py).
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("web", "0001_initial"),
        ("sessions", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="Session")],
            database_operations=[],
        ),
    ]
