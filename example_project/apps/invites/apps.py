from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class InvitesConfig(AppConfig):
    name = "apps.invites"
    label = "invites"
    verbose_name = _("Invite links")
