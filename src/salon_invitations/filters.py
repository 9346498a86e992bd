"""Filter sets for the list endpoints (used when django-filter is installed)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import django_filters
from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from salon_invitations.models import Invitation, get_salon_model


def _pk_filter(get_model: Callable[[], Any], field_name: str) -> django_filters.Filter:
    """Filter on a foreign key by primary key, validating the value as that model's pk.

    Unlike ``ModelChoiceFilter`` it runs no query to check the object exists (a filter on an
    unknown id simply matches nothing) and a malformed id is a 400 naming the parameter.
    """

    class PkField(forms.CharField):
        def to_python(self, value: Any) -> Any:
            value = super().to_python(value)
            if value in self.empty_values:
                return None
            pk = get_model()._meta.pk
            try:
                value = pk.to_python(value)
                # The pk's own range check: an id beyond the column's range is malformed too
                # (SQLite cannot even bind one past 64 bits: OverflowError, a 500).
                pk.run_validators(value)
            except ValidationError as exc:
                raise forms.ValidationError(_("Enter a valid id."), code="invalid") from exc
            return value

    class PkFilter(django_filters.Filter):
        field_class = PkField

    return PkFilter(field_name=field_name)


class InvitationFilterSet(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Invitation.STATUS)
    role = django_filters.CharFilter()
    salon = _pk_filter(get_salon_model, "salon_id")
    user = _pk_filter(get_user_model, "user_id")

    class Meta:
        model = Invitation
        fields = ("status", "role", "salon", "user")


class MembershipFilterSet(django_filters.FilterSet):
    # No Meta.model: the membership model is swappable, so only declared filters are used.
    role = django_filters.CharFilter()
    salon = _pk_filter(get_salon_model, "salon_id")
    user = _pk_filter(get_user_model, "user_id")
