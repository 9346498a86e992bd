"""Memberships after joining: change a member's role, transfer ownership, remove one (SPEC §8)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils.translation import gettext_lazy as _

from salon_invitations import roles
from salon_invitations.exceptions import Conflict, InvalidInvitation
from salon_invitations.models import AbstractMembership, AbstractSalon, get_membership_model
from salon_invitations.notifications import Event, dispatch, send_after_commit
from salon_invitations.services import base
from salon_invitations.services.base import (
    INACTIVE_USER,
    MSG_MEMBERSHIP_GONE,
    MSG_ROLE_TAKEN,
    OWNER_MEMBERSHIP,
    ROLE_TAKEN,
)
from salon_invitations.signals import ownership_transferred

MSG_INACTIVE_OWNER = _("An inactive account cannot own a salon.")
MSG_OWNER_MEMBERSHIP_ROLE = _(
    "The owner's role changes only by transferring the ownership of the salon."
)


def _lock_membership(membership: AbstractMembership, authorize: base.Authorize) -> Any:
    """Lock the salon, then the membership (:class:`Gone` if it went), and ask ``authorize``."""
    base.lock_salon(membership.salon_id)
    current = base.lock_row(get_membership_model(), membership.pk, MSG_MEMBERSHIP_GONE)
    base.authorize(authorize, current)
    return current


def _set_role(membership: Any, role: str, actor: Any) -> None:
    previous = membership.role
    membership.role = role
    membership.save(update_fields=["role", "modified"])
    dispatch(Event("membership.updated", membership, actor, extra={"previous_role": previous}))


def changes_only_by_transfer(membership: AbstractMembership) -> bool:
    """The owner's membership: its role changes only when the salon is handed on."""
    return membership.role == roles.owner_role().name


def change_role(
    membership: AbstractMembership, *, role: str, actor: Any, authorize: base.Authorize = None
) -> AbstractMembership:
    """Give a member another role, under the salon lock.

    The new role must be one that can be requested (a 400 naming ``role`` otherwise) and have
    room (:class:`Conflict` ``role_taken``); the owner's membership changes only by a transfer
    (``owner_membership``). Who may do it is the policy's ``can_change_role``. Announced as
    ``membership.updated`` with ``previous_role``; the same role again changes nothing.
    """
    role_obj = base.requestable_role(role)
    with transaction.atomic():
        current = _lock_membership(membership, authorize)
        if changes_only_by_transfer(current):
            raise Conflict(MSG_OWNER_MEMBERSHIP_ROLE, code=OWNER_MEMBERSHIP, instance=current)
        if current.role == role_obj.name:
            return current
        if base.role_is_full(current.salon_id, role_obj):
            raise Conflict(MSG_ROLE_TAKEN, code=ROLE_TAKEN, instance=current)
        _set_role(current, role_obj.name, actor)
    return current


def transfer_ownership(
    salon: AbstractSalon,
    *,
    new_owner: Any,
    previous_owner_role: str | None = None,
    actor: Any,
    authorize: base.Authorize = None,
) -> AbstractSalon:
    """Hand ``salon`` to ``new_owner``, a member, in one transaction under the salon lock.

    The salon's ``owner`` moves, the new owner's membership takes the owner role and the
    previous owner's takes ``previous_owner_role`` (any role but the owner's; by default the
    highest-ranked other role, ``admin`` in the default table; it must have room once the new
    owner has left it: :class:`Conflict` ``role_taken``). An inactive account cannot take
    the salon (:class:`Conflict` ``inactive_user``). Refused with a
    400 naming ``user`` when ``new_owner`` is not a member or owns the salon already. Sends two
    ``membership.updated`` events and the ``ownership_transferred`` signal after commit.
    """
    owner_role = roles.owner_role()
    if previous_owner_role is None:
        previous_owner_role = roles.next_to_owner().name
    role_obj = roles.get_role(previous_owner_role) if isinstance(previous_owner_role, str) else None
    if role_obj is None or role_obj.name == owner_role.name:
        raise InvalidInvitation(
            _('"%(role)s" is not a role the previous owner can take.')
            % {"role": previous_owner_role},
            code="invalid_role",
            field="previous_owner_role",
        )
    Membership = get_membership_model()
    with transaction.atomic():
        locked = base.lock_salon(salon.pk)
        base.authorize(authorize, locked)
        if new_owner.pk == locked.owner_id:
            raise InvalidInvitation(
                _("This user owns the salon already."), code="already_owner", field="user"
            )
        members = Membership._default_manager.select_for_update().filter(salon_id=locked.pk)
        incoming = members.filter(user_id=new_owner.pk).first()
        if incoming is None:
            raise InvalidInvitation(
                _("The new owner must be a member of the salon."), code="not_a_member", field="user"
            )
        if not base.is_active(new_owner.pk):
            raise Conflict(MSG_INACTIVE_OWNER, code=INACTIVE_USER, instance=locked)
        outgoing = members.filter(user_id=locked.owner_id).first()
        holders = members.filter(role=role_obj.name).exclude(pk=incoming.pk).count()
        if role_obj.limit is not None and holders >= role_obj.limit:
            raise Conflict(MSG_ROLE_TAKEN, code=ROLE_TAKEN, instance=locked)
        previous_owner_id = locked.owner_id
        locked.owner = new_owner
        locked.save(update_fields=["owner", "modified"])
        _set_role(incoming, owner_role.name, actor)
        if outgoing is not None:
            _set_role(outgoing, role_obj.name, actor)
        send_after_commit(
            ownership_transferred,
            type(locked),
            salon=locked,
            previous_owner=type(new_owner)._default_manager.filter(pk=previous_owner_id).first(),
            new_owner=new_owner,
            actor=actor,
        )
    return locked


def remove_membership(
    membership: AbstractMembership, *, actor: Any, authorize: base.Authorize = None
) -> None:
    """Remove a membership, freeing its role. The owner's membership cannot be removed."""
    with transaction.atomic():
        current = _lock_membership(membership, authorize)
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
