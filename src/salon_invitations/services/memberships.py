"""Memberships: remove one (the owner's cannot be removed)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils.translation import gettext_lazy as _

from salon_invitations import roles
from salon_invitations.exceptions import Conflict
from salon_invitations.models import AbstractMembership, get_membership_model
from salon_invitations.notifications import Event, dispatch
from salon_invitations.services import base
from salon_invitations.services.base import MSG_MEMBERSHIP_GONE, OWNER_MEMBERSHIP


def remove_membership(membership: AbstractMembership, *, actor: Any) -> None:
    """Remove a membership, freeing its role. The owner's membership cannot be removed."""
    Membership = get_membership_model()
    with transaction.atomic():
        base.lock_salon(membership.salon_id)
        current = base.lock_row(Membership, membership.pk, MSG_MEMBERSHIP_GONE)
        if current.role == roles.owner_role().name:
            raise Conflict(
                _("The owner's membership cannot be removed while the salon exists."),
                code=OWNER_MEMBERSHIP,
                instance=current,
            )
        pk = current.pk
        current.delete()
        current.pk = pk
        dispatch(Event("membership.deleted", current, actor))
