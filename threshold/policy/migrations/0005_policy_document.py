"""One JSON document instead of a column per setting.

The settings are declared once, in threshold.core.policy, which validates the
document whenever it is read or written; new settings need no migration. The
values are moved as they are (the next read validates them); an empty
allowed_algorithms, which rows from before that setting hold, is left out so
that it takes its default. The reverse migration puts the document back into
the columns; settings without a column (added after this migration) are lost.
"""

from django.apps.registry import Apps
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

# The columns as 0001-0004 made them, in their order. Frozen here: the
# declaration in threshold.core.policy will grow, these columns will not.
COLUMNS = (
    "ceremony_timeout_seconds",
    "user_verification",
    "passkey_limit",
    "invite_lifetime_hours",
    "step_up_max_age_seconds",
    "flow_idle_timeout_minutes",
    "allow_password_fallback",
    "password_lockout_threshold",
    "passkey_prompt_snooze_sign_ins",
    "passkey_prompt_snooze_days",
    "recovery_link_lifetime_minutes",
    "require_trusted_attestation",
    "aaguid_allow_list",
    "aaguid_deny_list",
    "block_synced_passkeys",
    "allowed_algorithms",
    "refuse_u2f_authenticators",
)


def columns_to_document(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    OrganisationPolicy = apps.get_model("policy", "OrganisationPolicy")
    for row in OrganisationPolicy.objects.all():
        document = {name: getattr(row, name) for name in COLUMNS}
        if not document["allowed_algorithms"]:
            del document["allowed_algorithms"]
        # update(), not save(): updated_at says when the policy changed, and it did not.
        OrganisationPolicy.objects.filter(pk=row.pk).update(document=document)


def document_to_columns(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    OrganisationPolicy = apps.get_model("policy", "OrganisationPolicy")
    for row in OrganisationPolicy.objects.all():
        values = {name: row.document[name] for name in COLUMNS if name in row.document}
        OrganisationPolicy.objects.filter(pk=row.pk).update(**values)


class Migration(migrations.Migration):
    dependencies = [
        ("policy", "0004_fallback_and_prompt"),
    ]

    operations = [
        migrations.AddField(
            model_name="organisationpolicy",
            name="document",
            field=models.JSONField(default=dict),
        ),
        migrations.RunPython(columns_to_document, document_to_columns),
        *(migrations.RemoveField(model_name="organisationpolicy", name=name) for name in COLUMNS),
    ]
