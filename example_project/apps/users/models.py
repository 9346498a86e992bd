from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from apps.users.managers import UserManager

#: The message of a sign-up (or an admin form) with an address already taken, in any case.
EMAIL_TAKEN = _("A user with this e-mail address already exists.")


class User(AbstractBaseUser, PermissionsMixin):
    """A user who logs in with an e-mail address and a password.

    One account per address, compared case-insensitively (see ``UserManager``).
    """

    # unique=True as well: Django's auth checks want the USERNAME_FIELD itself unique.
    email = models.EmailField(_("e-mail address"), unique=True)
    is_staff = models.BooleanField(
        _("staff status"),
        default=False,
        help_text=_("Platform operator: may log in to the admin and decide any invitation."),
    )
    is_active = models.BooleanField(_("active"), default=True)
    date_joined = models.DateTimeField(_("date joined"), default=timezone.now)

    objects = UserManager()

    EMAIL_FIELD = "email"
    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ("email",)
        constraints = [
            models.UniqueConstraint(
                Lower("email"),
                name="users_user_email_lower_unique",
                violation_error_message=EMAIL_TAKEN,
            ),
        ]
        verbose_name = _("user")
        verbose_name_plural = _("users")

    def __str__(self) -> str:
        return self.email
