from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.utils.translation import gettext_lazy as _

from apps.users.models import User
from salon_invitations.admin import CascadeThroughServicesMixin


@admin.register(User)
class UserAdmin(CascadeThroughServicesMixin, BaseUserAdmin):
    """Django's user admin, with the e-mail address in place of the username.

    Deleting a user removes their invitations and memberships through the package's services
    (each removal announced); the mixin keeps the invitations' own delete permission (pending
    ones only) from blocking that.
    """

    ordering = ("email",)
    list_display = ("email", "is_staff", "is_active", "date_joined")
    list_filter = ("is_staff", "is_superuser", "is_active")
    search_fields = ("email",)
    readonly_fields = ("last_login", "date_joined")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        (
            _("Permissions"),
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        (_("Important dates"), {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("email", "password1", "password2"),
            },
        ),
    )
