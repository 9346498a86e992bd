"""Salons: create, change, delete (with every removal announced)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from salon_invitations import roles
from salon_invitations.exceptions import Gone
from salon_invitations.models import (
    AbstractSalon,
    Invitation,
    get_membership_model,
    get_salon_model,
)
from salon_invitations.services import base


def create_salon(*, owner: Any, **fields: Any) -> AbstractSalon:
    """Create a salon; ``owner`` gets the owner role in the same transaction."""
    with transaction.atomic():
        salon = get_salon_model()._default_manager.create(owner=owner, **fields)
        base.add_member(salon.pk, owner.pk, roles.owner_role().name, owner)
    return salon


def update_salon(
    salon: AbstractSalon, *, authorize: base.Authorize = None, **fields: Any
) -> AbstractSalon:
    """Change a salon's own fields (its owner is changed only through ownership rules)."""
    fields.pop("owner", None)
    with transaction.atomic():
        locked = base.lock_salon(salon.pk)
        base.authorize(authorize, locked)
        for name, value in fields.items():
            setattr(locked, name, value)
        locked.save()
    return locked


def delete_salon(
    salon: AbstractSalon, *, actor: Any = None, authorize: base.Authorize = None
) -> None:
    """Delete a salon with its invitations and memberships, announcing each removal."""
    with transaction.atomic():
        locked = base.lock_salon(salon.pk)
        base.authorize(authorize, locked)
        remove_salon_records(locked, actor=actor)
        locked.delete()


def remove_salon_records(salon: AbstractSalon, *, actor: Any = None) -> None:
    """Remove a salon's invitations and memberships through the services, each announced.

    Called by :func:`delete_salon`, and for any other deletion of a salon by the ``pre_delete``
    receiver the app connects, so a cascade never removes rows silently. Call it inside the
    transaction that deletes the salon.
    """
    base.remove_announced(
        "invitation.deleted",
        list(Invitation.objects.filter(salon_id=salon.pk).order_by("pk")),
        actor,
    )
    memberships = get_membership_model()._default_manager.filter(salon_id=salon.pk).order_by("pk")
    base.remove_announced("membership.deleted", list(memberships), actor)


def remove_user_records(user: Any, *, actor: Any = None) -> None:
    """Remove a user's invitations and memberships, salon by salon under the salons' locks.

    The app connects it to the user model's ``pre_delete`` signal, so deleting a user announces
    every invitation and membership that goes with them (``invitation.deleted``,
    ``membership.deleted``) after commit. A salon the user owns protects the user from deletion.
    """
    Membership = get_membership_model()
    with transaction.atomic():
        salon_ids = set(
            Invitation.objects.filter(user=user).values_list("salon_id", flat=True)
        ) | set(Membership._default_manager.filter(user=user).values_list("salon_id", flat=True))
        # Every salon locked first, in a fixed order, so two deletions never wait on each
        # other, and the event log's lock (taken by the first removal announced) comes last.
        locked = []
        for salon_id in sorted(salon_ids):
            try:
                base.lock_salon(salon_id)
            except Gone:
                continue
            locked.append(salon_id)
        for salon_id in locked:
            invitations = Invitation.objects.filter(user=user, salon_id=salon_id).order_by("pk")
            base.remove_announced("invitation.deleted", list(invitations), actor)
            memberships = Membership._default_manager.filter(user=user, salon_id=salon_id)
            base.remove_announced("membership.deleted", list(memberships.order_by("pk")), actor)
