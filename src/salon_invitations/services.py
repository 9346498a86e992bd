"""Every state change of salons, memberships and invitations.

Each function runs in one ``transaction.atomic()`` block that locks the salon row
(``select_for_update``) before it reads what it checks, so concurrent calls for one salon
queue up instead of racing. Events and signals go out only after commit.

Services enforce the domain rules (SPEC §2). They do not decide *who* may call them: ask the
permission policy (:func:`salon_invitations.policies.get_policy`) first, as the views and the
admin do.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from salon_invitations import roles
from salon_invitations.conf import app_settings
from salon_invitations.exceptions import Conflict, Gone, InvalidInvitation
from salon_invitations.models import (
    AbstractMembership,
    AbstractSalon,
    Invitation,
    active_users,
    get_membership_model,
    get_salon_model,
)
from salon_invitations.notifications import Event, dispatch
from salon_invitations.policies import get_policy

ROLE_TAKEN = "role_taken"
ALREADY_MEMBER = "already_member"
ALREADY_DECIDED = "already_decided"
OWNER_MEMBERSHIP = "owner_membership"
DUPLICATE_PENDING = "duplicate_pending"
INACTIVE_USER = "inactive_user"

MSG_ROLE_TAKEN = _("This role is already taken in this salon.")
MSG_ALREADY_MEMBER = _("The user is already a member of this salon.")
MSG_ALREADY_DECIDED = _("This invitation has already been decided.")
MSG_DUPLICATE_PENDING = _("You already have a pending invitation to this salon.")
MSG_INACTIVE_USER = _("The requester's account is inactive.")
MSG_SALON_GONE = _("This salon no longer exists.")
MSG_INVITATION_GONE = _("This invitation no longer exists.")
MSG_MEMBERSHIP_GONE = _("This membership no longer exists.")


def _lock_salon(salon_id: Any) -> AbstractSalon:
    """Lock the salon row; :class:`Gone` when it was deleted meanwhile."""
    Salon = get_salon_model()
    try:
        return Salon._default_manager.select_for_update().get(pk=salon_id)
    except Salon.DoesNotExist:
        raise Gone(MSG_SALON_GONE, field="salon") from None


def _lock_row(model: Any, pk: Any, message: Any) -> Any:
    """Lock one row (after its salon); :class:`Gone` when it was deleted meanwhile."""
    try:
        return model._default_manager.select_for_update().get(pk=pk)
    except model.DoesNotExist:
        raise Gone(message) from None


def _is_active(user_id: Any) -> bool:
    return active_users().filter(pk=user_id).exists()


def _role_is_full(salon_id: Any, role: roles.Role) -> bool:
    if role.limit is None:
        return False
    holders = get_membership_model()._default_manager.filter(salon_id=salon_id, role=role.name)
    return holders.count() >= role.limit


def _is_member(salon_id: Any, user: Any) -> bool:
    return get_membership_model()._default_manager.filter(salon_id=salon_id, user=user).exists()


def _add_member(salon_id: Any, user_id: Any, role: str, actor: Any) -> AbstractMembership:
    membership = get_membership_model()._default_manager.create(
        salon_id=salon_id, user_id=user_id, role=role
    )
    dispatch(Event("membership.created", membership, actor))
    return membership


# Salons ---------------------------------------------------------------------------------------


def create_salon(*, owner: Any, **fields: Any) -> AbstractSalon:
    """Create a salon; ``owner`` gets the owner role in the same transaction."""
    with transaction.atomic():
        salon = get_salon_model()._default_manager.create(owner=owner, **fields)
        _add_member(salon.pk, owner.pk, roles.owner_role().name, owner)
    return salon


def update_salon(salon: AbstractSalon, **fields: Any) -> AbstractSalon:
    """Change a salon's own fields (its owner is changed only through ownership rules)."""
    fields.pop("owner", None)
    with transaction.atomic():
        locked = _lock_salon(salon.pk)
        for name, value in fields.items():
            setattr(locked, name, value)
        locked.save()
    return locked


def delete_salon(salon: AbstractSalon, *, actor: Any = None) -> None:
    """Delete a salon with its invitations and memberships, announcing each removal."""
    with transaction.atomic():
        locked = _lock_salon(salon.pk)
        remove_salon_records(locked, actor=actor)
        locked.delete()


def _remove_announced(kind: str, rows: list[Any], actor: Any) -> None:
    """Delete ``rows`` (of one salon) and announce each one after commit.

    Recipients are computed *before* the rows go, while the salon's memberships still say who
    manages it; computed after commit they would miss everyone but the subject.
    """
    if not rows:
        return
    policy = get_policy()
    recipients: dict[Any, set[Any]] = {}
    events = []
    for row in rows:
        key = (row.salon_id, row.user_id)
        if key not in recipients:
            recipients[key] = policy.recipients(row.salon_id, row.user_id)
        events.append(Event(kind, row, actor, _recipients=recipients[key]))
    model = type(rows[0])
    model._default_manager.filter(pk__in=[row.pk for row in rows]).delete()
    for event in events:
        dispatch(event)


def remove_salon_records(salon: AbstractSalon, *, actor: Any = None) -> None:
    """Remove a salon's invitations and memberships through the services, each announced.

    Called by :func:`delete_salon`, and for any other deletion of a salon by the ``pre_delete``
    receiver the app connects, so a cascade never removes rows silently. Call it inside the
    transaction that deletes the salon.
    """
    _remove_announced(
        "invitation.deleted",
        list(Invitation.objects.filter(salon_id=salon.pk).order_by("pk")),
        actor,
    )
    memberships = get_membership_model()._default_manager.filter(salon_id=salon.pk).order_by("pk")
    _remove_announced("membership.deleted", list(memberships), actor)


def remove_user_records(user: Any, *, actor: Any = None) -> None:
    """Remove a user's invitations and memberships, salon by salon under each salon's lock.

    The app connects it to the user model's ``pre_delete`` signal, so deleting a user announces
    every invitation and membership that goes with them (``invitation.deleted``,
    ``membership.deleted``) after commit. A salon the user owns protects the user from deletion.
    """
    Membership = get_membership_model()
    with transaction.atomic():
        salon_ids = set(
            Invitation.objects.filter(user=user).values_list("salon_id", flat=True)
        ) | set(Membership._default_manager.filter(user=user).values_list("salon_id", flat=True))
        # One salon at a time, in a fixed order, so two deletions never wait on each other.
        for salon_id in sorted(salon_ids):
            try:
                _lock_salon(salon_id)
            except Gone:
                continue
            invitations = Invitation.objects.filter(user=user, salon_id=salon_id).order_by("pk")
            _remove_announced("invitation.deleted", list(invitations), actor)
            memberships = Membership._default_manager.filter(user=user, salon_id=salon_id)
            _remove_announced("membership.deleted", list(memberships.order_by("pk")), actor)


# Invitations ----------------------------------------------------------------------------------


def create_invitation(
    *, user: Any, salon: AbstractSalon, role: str, message: str = ""
) -> Invitation:
    """Ask for ``role`` in ``salon`` on behalf of ``user``.

    Raises :class:`InvalidInvitation` (with the field at fault) when the role is unknown, not
    requestable or taken, when ``user`` is already a member, or already has a pending
    invitation to this salon.
    """
    role_obj = roles.get_role(role)
    if role_obj is None or role_obj not in roles.requestable_roles():
        raise InvalidInvitation(
            _('"%(role)s" is not a role that can be requested.') % {"role": role},
            code="invalid_role",
            field="role",
        )
    ttl = app_settings.invitation_ttl
    with transaction.atomic():
        try:
            locked = _lock_salon(salon.pk)
        except Gone as exc:
            # The same answer as for a salon that never existed: the field is at fault.
            raise InvalidInvitation(exc.message, code="does_not_exist", field="salon") from None
        if _is_member(locked.pk, user):
            raise InvalidInvitation(MSG_ALREADY_MEMBER, code=ALREADY_MEMBER, field="salon")
        if _role_is_full(locked.pk, role_obj):
            raise InvalidInvitation(MSG_ROLE_TAKEN, code=ROLE_TAKEN, field="role")
        # The partial unique constraint enforces this too, except on databases without
        # conditional constraints (MySQL, MariaDB); the salon lock makes the check safe there.
        pending = Invitation.objects.filter(status=Invitation.STATUS.pending)
        if pending.filter(salon_id=locked.pk, user=user).exists():
            raise InvalidInvitation(MSG_DUPLICATE_PENDING, code=DUPLICATE_PENDING, field="salon")
        invitation = Invitation(
            user=user,
            salon=locked,  # type: ignore[misc]  # the stubs see the default salon model
            role=role,
            message=message,
            expires_at=timezone.now() + ttl if ttl else None,
        )
        try:
            with transaction.atomic():
                invitation.save()
        except IntegrityError as exc:
            raise InvalidInvitation(
                MSG_DUPLICATE_PENDING, code=DUPLICATE_PENDING, field="salon"
            ) from exc
        dispatch(Event("invitation.created", invitation, user))
    return invitation


def _lock_pending(invitation: Invitation) -> Invitation:
    """Lock the salon, then the invitation; raise unless it is still pending."""
    _lock_salon(invitation.salon_id)
    current = _lock_row(Invitation, invitation.pk, MSG_INVITATION_GONE)
    if not current.is_pending:
        raise Conflict(MSG_ALREADY_DECIDED, code=ALREADY_DECIDED, instance=current)
    return current


def _decide(
    invitation: Invitation, status: str, actor: Any, reason: str = "", when: datetime | None = None
) -> None:
    invitation.status = status
    invitation.decided_by = actor if getattr(actor, "is_authenticated", False) else None
    invitation.decided_at = when or timezone.now()
    invitation.reason = reason
    invitation.save(
        update_fields=["status", "status_changed", "decided_by", "decided_at", "reason", "modified"]
    )
    dispatch(Event(f"invitation.{status}", invitation, actor))


def approve_invitation(invitation: Invitation, *, actor: Any) -> Invitation:
    """Approve a pending invitation and create the membership.

    Re-checks under the salon lock that the requester is not a member yet and the role still
    has room. If not, the invitation is *rejected* (that change is committed) and
    :class:`Conflict` is raised with code ``already_member`` or ``role_taken``. A requester
    whose account is inactive is refused with ``inactive_user`` and the invitation stays
    pending (the account may be reactivated, or the request rejected).
    """
    conflict: Conflict | None = None
    with transaction.atomic():
        current = _lock_pending(invitation)
        if not _is_active(current.user_id):
            raise Conflict(MSG_INACTIVE_USER, code=INACTIVE_USER, instance=current)
        role = roles.get_role(current.role)
        if _is_member(current.salon_id, current.user_id):
            conflict = Conflict(MSG_ALREADY_MEMBER, code=ALREADY_MEMBER, instance=current)
        elif role is None or _role_is_full(current.salon_id, role):
            conflict = Conflict(MSG_ROLE_TAKEN, code=ROLE_TAKEN, instance=current)
        if conflict is not None:
            _decide(current, Invitation.STATUS.rejected, actor, reason=str(conflict.message))
        else:
            _decide(current, Invitation.STATUS.approved, actor)
            _add_member(current.salon_id, current.user_id, current.role, actor)
    if conflict is not None:
        raise conflict
    return current


def reject_invitation(invitation: Invitation, *, actor: Any, reason: str = "") -> Invitation:
    with transaction.atomic():
        current = _lock_pending(invitation)
        _decide(current, Invitation.STATUS.rejected, actor, reason=reason)
    return current


def cancel_invitation(invitation: Invitation, *, actor: Any) -> Invitation:
    """The requester withdraws a pending invitation."""
    with transaction.atomic():
        current = _lock_pending(invitation)
        _decide(current, Invitation.STATUS.cancelled, actor)
    return current


def delete_invitation(invitation: Invitation, *, actor: Any) -> None:
    """Delete a pending invitation (decided invitations are kept as a record)."""
    with transaction.atomic():
        current = _lock_pending(invitation)
        pk = current.pk
        current.delete()
        current.pk = pk
        dispatch(Event("invitation.deleted", current, actor))


def expire_invitations(*, now: datetime | None = None, batch_size: int | None = None) -> int:
    """Mark pending invitations past ``expires_at`` as expired; return how many changed.

    Works in batches of ``EXPIRY_BATCH_SIZE``, one transaction each; running it again changes
    nothing more.
    """
    now = now or timezone.now()
    batch_size = batch_size or app_settings.EXPIRY_BATCH_SIZE
    expired = 0
    while True:
        with transaction.atomic():
            batch = list(
                Invitation.objects.select_for_update(skip_locked=True)
                .filter(status=Invitation.STATUS.pending, expires_at__lte=now)
                .order_by("pk")[:batch_size]
            )
            for invitation in batch:
                _decide(invitation, Invitation.STATUS.expired, None, when=now)
        expired += len(batch)
        if len(batch) < batch_size:
            return expired


def decide_many(
    invitations: Iterable[Invitation], *, actor: Any, approve: bool
) -> dict[str, list[Invitation]]:
    """Approve or reject several invitations, one transaction each (used by the admin).

    Returns ``{"done": [...], "<conflict code>": [...]}``.
    """
    outcome: dict[str, list[Invitation]] = {"done": []}
    for invitation in invitations:
        try:
            if approve:
                approve_invitation(invitation, actor=actor)
            else:
                reject_invitation(invitation, actor=actor)
        except Conflict as exc:
            outcome.setdefault(exc.code, []).append(invitation)
        else:
            outcome["done"].append(invitation)
    return outcome


# Memberships ----------------------------------------------------------------------------------


def remove_membership(membership: AbstractMembership, *, actor: Any) -> None:
    """Remove a membership, freeing its role. The owner's membership cannot be removed."""
    Membership = get_membership_model()
    with transaction.atomic():
        _lock_salon(membership.salon_id)
        current = _lock_row(Membership, membership.pk, MSG_MEMBERSHIP_GONE)
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
