from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("sso", "0003_app_sign_in_revocation"),
    ]

    operations = [
        migrations.AddField(
            model_name="application",
            name="first_party",
            field=models.BooleanField(default=False),
        ),
    ]
