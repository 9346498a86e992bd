"""The project's own salon model, swapped in for the package's default.

``settings.SALON_INVITATIONS_SALON_MODEL = "auto_salon.AutoSalon"`` makes the package's
memberships and invitations point here. This app's migrations must not depend on
``salon_invitations``: the package's first migration depends on this app's, so the table exists
first.
"""

from django.db import models
from django.utils.translation import gettext_lazy as _

from salon_invitations.models import AbstractSalon


class AutoSalon(AbstractSalon):
    """A car dealership: the package's salon (name, owner) plus where it is."""

    location = models.CharField(_("location"), max_length=255, blank=True, default="")

    class Meta(AbstractSalon.Meta):
        verbose_name = _("auto salon")
        verbose_name_plural = _("auto salons")
