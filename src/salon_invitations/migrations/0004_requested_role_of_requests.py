"""Invitations from before invites are requests; they asked for the role they hold.

Data only, apart from the schema change of 0003 (PostgreSQL runs each migration in one
transaction, and mixing row updates with ALTER TABLE there is best avoided).
"""

from django.db import migrations
from django.db.models import F


def requested_role_of_existing_requests(apps, schema_editor):
    Invitation = apps.get_model("salon_invitations", "Invitation")
    Invitation.objects.using(schema_editor.connection.alias).filter(requested_role="").update(
        requested_role=F("role")
    )


class Migration(migrations.Migration):
    dependencies = [("salon_invitations", "0003_invites")]

    operations = [
        migrations.RunPython(requested_role_of_existing_requests, migrations.RunPython.noop),
    ]
