from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AutoSalonConfig(AppConfig):
    name = "apps.auto_salon"
    label = "auto_salon"
    verbose_name = _("Auto salons")
    default_auto_field = "django.db.models.BigAutoField"
