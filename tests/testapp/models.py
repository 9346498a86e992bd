"""A project's own salon and membership models, used when the suite runs swapped."""

from django.db import models

from salon_invitations.models import AbstractMembership, AbstractSalon


class CustomSalon(AbstractSalon):
    location = models.CharField(max_length=255, blank=True, default="")


class CustomMembership(AbstractMembership):
    note = models.CharField(max_length=100, blank=True, default="")
