from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("sessions", "0002_session_app_name"),
    ]

    operations = [
        migrations.AddField(
            model_name="session",
            name="app_client_id",
            field=models.CharField(blank=True, default="", max_length=100),
        ),
    ]
