from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import BaseUserManager
from django.db import models, transaction
from django.db.models.functions import Lower


class UserManager(BaseUserManager):
    """Users are identified by their e-mail address; there is no username.

    Addresses are compared case-insensitively, as the database's unique constraint on
    ``LOWER(email)`` does: ``Ann@Example.com`` and ``ann@example.com`` are one account, and
    either logs in. They are stored as given, trimmed, with the domain in lower case.
    """

    use_in_migrations = True

    @classmethod
    def normalize_email(cls, email: str | None) -> str:
        return super().normalize_email((email or "").strip())

    def with_email(self, email: str) -> models.QuerySet[Any]:
        """The user with this address, in any case (a query the unique index answers)."""
        return self.alias(email_lower=Lower("email")).filter(
            email_lower=Lower(models.Value(self.normalize_email(email)))
        )

    def get_by_natural_key(self, username: str | None) -> Any:
        return self.with_email(username or "").get()

    def build_user(self, email: str, password: str | None, **extra_fields: Any) -> Any:
        """An unsaved user with its password hashed: hashing is slow on purpose, so callers
        do it before, not inside, the transaction that saves the user."""
        if not email:
            raise ValueError("An e-mail address is required.")
        user = self.model(email=self.normalize_email(email), **extra_fields)
        user.set_password(password)
        return user

    def save_new(self, user: Any) -> Any:
        """INSERT ``user`` in a savepoint: when the address is taken (``IntegrityError``), a
        caller's transaction stays usable, for instance to look up who holds it."""
        with transaction.atomic(using=self._db):
            user.save(using=self._db)
        return user

    def _create_user(self, email: str, password: str | None, **extra_fields: Any) -> Any:
        return self.save_new(self.build_user(email, password, **extra_fields))

    def create_user(self, email: str, password: str | None = None, **extra_fields: Any) -> Any:
        extra_fields.setdefault("is_staff", False)
        extra_fields.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra_fields)

    def create_superuser(self, email: str, password: str | None = None, **extra_fields: Any) -> Any:
        extra_fields.setdefault("is_staff", True)
        extra_fields.setdefault("is_superuser", True)
        if extra_fields["is_staff"] is not True or extra_fields["is_superuser"] is not True:
            raise ValueError("A superuser must have is_staff=True and is_superuser=True.")
        return self._create_user(email, password, **extra_fields)
