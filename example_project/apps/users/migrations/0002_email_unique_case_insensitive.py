"""One account per e-mail address, compared case-insensitively: a unique index on LOWER(email).

The data is left as it is. When existing accounts share an address in different cases the
migration stops before creating the index and names them; merge or rename them (for instance
in the admin) and run ``migrate`` again.
"""

import django.db.models.functions.text
from django.core.management.base import CommandError
from django.db import migrations, models
from django.db.models import Count
from django.db.models.functions import Lower


def refuse_duplicate_addresses(apps, schema_editor):
    User = apps.get_model("users", "User")
    duplicates = (
        User.objects.using(schema_editor.connection.alias)
        .annotate(email_lower=Lower("email"))
        .values("email_lower")
        .annotate(accounts=Count("id"))
        .filter(accounts__gt=1)
        .values_list("email_lower", flat=True)
    )
    clashes = sorted(duplicates)
    if clashes:
        raise CommandError(
            f"{len(clashes)} e-mail address(es) belong to more than one account when compared "
            f"case-insensitively: {', '.join(clashes)}. Merge or rename those accounts, then "
            "run migrate again."
        )


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("users", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(refuse_duplicate_addresses, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="user",
            constraint=models.UniqueConstraint(
                django.db.models.functions.text.Lower("email"),
                name="users_user_email_lower_unique",
                violation_error_message="A user with this e-mail address already exists.",
            ),
        ),
    ]
