"""Which address a link was emailed to (``sent_to``), so that using it can prove the person
reads that mailbox (``User.email_verified_at``, the ID token's ``email_verified``).

Before this, every ID token said ``email_verified: true``. People who already used a link keep
that (verified at their first use): which of their links went by email was not recorded, and
their apps have relied on the claim. Everyone else is unverified until they use a link emailed
to them.
"""

from django.apps.registry import Apps
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.models import Min, OuterRef, Subquery


def keep_what_was_claimed(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    user_model = apps.get_model("accounts", "User")
    invite_model = apps.get_model("enrollment", "EnrollmentInvite")
    first_use = (
        invite_model.objects.filter(user=OuterRef("pk"), used_at__isnull=False)
        .values("user")
        .annotate(first=Min("used_at"))
        .values("first")
    )
    user_model.objects.filter(
        email_verified_at__isnull=True, invites__used_at__isnull=False
    ).exclude(email="").update(email_verified_at=Subquery(first_use))


class Migration(migrations.Migration):
    dependencies = [
        ("enrollment", "0002_invite_purpose"),
        ("accounts", "0005_email_verified"),
    ]

    operations = [
        migrations.AddField(
            model_name="enrollmentinvite",
            name="sent_to",
            field=models.EmailField(blank=True, default="", max_length=254),
        ),
        migrations.RunPython(keep_what_was_claimed, migrations.RunPython.noop),
    ]
