import django.db.models.deletion
import django.db.models.functions.text
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("salon_invitations", "0002_delivery"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="invitation",
            name="direction",
            field=models.CharField(
                choices=[("request", "request"), ("invite", "invite")],
                db_default="request",
                default="request",
                max_length=16,
                verbose_name="direction",
            ),
        ),
        migrations.AddField(
            model_name="invitation",
            name="email",
            field=models.CharField(
                blank=True, db_default="", default="", max_length=254, verbose_name="e-mail address"
            ),
        ),
        migrations.AddField(
            model_name="invitation",
            name="invited_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
                verbose_name="invited by",
            ),
        ),
        migrations.AddField(
            model_name="invitation",
            name="requested_role",
            field=models.CharField(
                blank=True, db_default="", default="", max_length=32, verbose_name="requested role"
            ),
        ),
        migrations.AddField(
            model_name="invitation",
            name="sent_at",
            field=models.DateTimeField(
                blank=True, editable=False, null=True, verbose_name="invite sent at"
            ),
        ),
        migrations.AddField(
            model_name="invitation",
            name="token_digest",
            field=models.CharField(
                blank=True,
                db_default="",
                default="",
                editable=False,
                max_length=64,
                verbose_name="token digest",
            ),
        ),
        migrations.AlterField(
            model_name="invitation",
            name="user",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="salon_invitations",
                to=settings.AUTH_USER_MODEL,
                verbose_name="user",
            ),
        ),
        migrations.AddIndex(
            model_name="invitation",
            index=models.Index(fields=["token_digest"], name="salon_inv_token"),
        ),
        migrations.AddConstraint(
            model_name="invitation",
            constraint=models.UniqueConstraint(
                django.db.models.functions.text.Lower("email"),
                models.F("salon"),
                condition=models.Q(("direction", "invite"), ("status", "pending")),
                name="salon_invitations_one_pending_invite_per_email",
                violation_error_message="This address already has a pending invite.",
            ),
        ),
        migrations.AddConstraint(
            model_name="invitation",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("direction", "invite"), ("user__isnull", False), _connector="OR"
                ),
                name="salon_invitations_request_has_user",
            ),
        ),
        migrations.AddConstraint(
            model_name="invitation",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("direction", "request"),
                    models.Q(("email", ""), _negated=True),
                    _connector="OR",
                ),
                name="salon_invitations_invite_has_email",
            ),
        ),
    ]
