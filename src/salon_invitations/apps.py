from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SalonInvitationsConfig(AppConfig):
    name = "salon_invitations"
    verbose_name = _("Salon invitations")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from salon_invitations import checks, conf, receivers  # noqa: F401 - registers checks

        receivers.connect()
