from django.contrib import admin

from apps.auto_salon.models import AutoSalon
from salon_invitations.admin import SalonAdmin


@admin.register(AutoSalon)
class AutoSalonAdmin(SalonAdmin):
    """The package's salon admin (creation goes through the services, so the creator becomes
    the owner) with the location added."""

    list_display = ("name", "location", "owner", "created")
    search_fields = ("name", "location")
