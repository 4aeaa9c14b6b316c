from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("sessions", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="session",
            name="app_name",
            field=models.CharField(blank=True, default="", max_length=100),
        ),
    ]
