"""Requests to join: create, approve, reject, cancel, delete, expire."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from salon_invitations import events, roles
from salon_invitations.conf import app_settings
from salon_invitations.exceptions import Conflict, InvalidInvitation
from salon_invitations.models import AbstractSalon, Invitation
from salon_invitations.notifications import Event, dispatch
from salon_invitations.services import base
from salon_invitations.services.base import (
    ALREADY_DECIDED,
    ALREADY_MEMBER,
    DUPLICATE_PENDING,
    INACTIVE_USER,
    MSG_ALREADY_DECIDED,
    MSG_ALREADY_MEMBER,
    MSG_DUPLICATE_PENDING,
    MSG_INACTIVE_USER,
    MSG_INVITATION_GONE,
    MSG_NOT_A_REQUEST,
    MSG_ROLE_TAKEN,
    NOT_A_REQUEST,
    ROLE_TAKEN,
)


def create_invitation(
    *,
    user: Any,
    salon: AbstractSalon,
    role: str,
    message: str = "",
    authorize: base.Authorize = None,
) -> Invitation:
    """Ask for ``role`` in ``salon`` on behalf of ``user``.

    Raises :class:`InvalidInvitation` (with the field at fault) when the salon does not
    exist, when the role is unknown, not requestable or taken, when ``user`` is already a
    member, or already has a pending invitation to this salon; :class:`NotAllowed` when
    ``authorize(locked salon)`` says no.
    """
    role_obj = base.requestable_role(role)
    ttl = app_settings.invitation_ttl
    duplicate = InvalidInvitation(MSG_DUPLICATE_PENDING, code=DUPLICATE_PENDING, field="salon")
    with base.refused_as_duplicate(duplicate), transaction.atomic():
        locked = base.lock_salon_to_join(salon)
        base.authorize(authorize, locked, base.MSG_MAY_NOT_JOIN)
        standing = base.standing(locked.pk, user.pk, role_obj, pending=True)
        if standing.member:
            raise InvalidInvitation(MSG_ALREADY_MEMBER, code=ALREADY_MEMBER, field="salon")
        if standing.full:
            raise InvalidInvitation(MSG_ROLE_TAKEN, code=ROLE_TAKEN, field="role")
        # The partial unique constraint enforces this too, except on databases without
        # conditional constraints (MySQL, MariaDB); the salon lock makes the check safe there.
        if standing.pending and still_pending(
            Invitation.objects.filter(salon_id=locked.pk, user=user)
        ):
            raise duplicate
        invitation = Invitation(
            user=user,
            salon=locked,  # type: ignore[misc]  # the stubs see the default salon model
            role=role,
            requested_role=role,
            message=message,
            expires_at=timezone.now() + ttl if ttl else None,
        )
        invitation.save()
        dispatch(Event("invitation.created", invitation, user))
    return invitation


def still_pending(invitations: Any) -> Invitation | None:
    """The pending invitation among ``invitations`` that blocks a new one, if any.

    One past its ``expires_at`` that the expiry job has not reached yet is expired on the spot
    (locked, announced) and blocks nothing. Call it under the salon lock.
    """
    current = invitations.filter(status=Invitation.STATUS.pending).select_for_update().first()
    now = timezone.now()
    if current is not None and current.expires_at is not None and current.expires_at <= now:
        decide(current, Invitation.STATUS.expired, None, when=now)
        return None
    return current


def lock_pending(invitation: Invitation) -> Invitation:
    """Lock the salon, then the invitation; raise unless it is still pending."""
    base.lock_salon(invitation.salon_id)
    current = base.lock_row(Invitation, invitation.pk, MSG_INVITATION_GONE)
    refuse_unless_pending(current)
    return current


def refuse_unless_pending(current: Invitation) -> None:
    if not current.is_pending:
        raise Conflict(MSG_ALREADY_DECIDED, code=ALREADY_DECIDED, instance=current)


def refuse_unless_pending_request(current: Invitation) -> None:
    """:func:`refuse_unless_pending`, and invites are refused: the invitee decides those."""
    refuse_unless_pending(current)
    if current.is_invite:
        raise Conflict(MSG_NOT_A_REQUEST, code=NOT_A_REQUEST, instance=current)


def decide(
    invitation: Invitation, status: str, actor: Any, reason: str = "", when: datetime | None = None
) -> None:
    invitation.status = status
    invitation.decided_by = actor if getattr(actor, "is_authenticated", False) else None
    invitation.decided_at = when or timezone.now()
    invitation.reason = reason
    invitation.token_digest = ""  # a decided invite's link never works again
    invitation.save(
        update_fields=[
            "status",
            "status_changed",
            "decided_by",
            "decided_at",
            "reason",
            "token_digest",
            "modified",
        ]
    )
    dispatch(Event(f"invitation.{status}", invitation, actor))


def lock_pending_request(invitation: Invitation) -> Invitation:
    """:func:`lock_pending`, refusing invites: those are accepted or declined by the invitee."""
    base.lock_salon(invitation.salon_id)
    current = base.lock_row(Invitation, invitation.pk, MSG_INVITATION_GONE)
    refuse_unless_pending_request(current)
    return current


def approve_invitation(
    invitation: Invitation,
    *,
    actor: Any,
    role: str | None = None,
    authorize: base.Authorize = None,
) -> Invitation:
    """Approve a pending request and create the membership.

    ``role``, when given, grants another requestable role than the one asked for (SPEC §8.3;
    ask the policy's ``can_approve_as`` first): the invitation's ``role`` becomes the granted
    one and ``requested_role`` keeps what was asked. Re-checks under the salon lock that the
    requester is not a member yet and the granted role still has room. If not, the invitation
    is *rejected* (that change is committed) and :class:`Conflict` is raised with code
    ``already_member`` or ``role_taken``. A requester whose account is inactive is refused
    with ``inactive_user`` and the invitation stays pending (the account may be reactivated,
    or the request rejected).
    """
    granted = base.requestable_role(role) if role is not None else None
    conflict: Conflict | None = None
    with transaction.atomic(), events.batched():
        # The salon's lock, then the invitation's with the re-checks in the same statement
        # (its salon, requester and role never change while it is pending).
        base.lock_salon(invitation.salon_id)
        role_obj = granted or roles.get_role(invitation.role)
        actor_pk = actor.pk if getattr(actor, "is_authenticated", False) else None
        current, standing = base.lock_with_standing(
            Invitation,
            invitation.pk,
            MSG_INVITATION_GONE,
            invitation.salon_id,
            invitation.user_id,
            role_obj,
            active=True,
            actor=actor_pk,
        )
        refuse_unless_pending_request(current)
        # The actor's role was read with the rest: the policy's re-check asks no more.
        known = {(actor_pk, current.salon_id): standing.actor_role} if actor_pk else None
        base.authorize(authorize, current, known=known)
        if not standing.active:
            raise Conflict(MSG_INACTIVE_USER, code=INACTIVE_USER, instance=current)
        if standing.member:
            conflict = Conflict(MSG_ALREADY_MEMBER, code=ALREADY_MEMBER, instance=current)
        elif role_obj is None or standing.full:
            conflict = Conflict(MSG_ROLE_TAKEN, code=ROLE_TAKEN, instance=current)
        if conflict is not None:
            # Rejected as asked: the role offered instead was never the requester's.
            decide(current, Invitation.STATUS.rejected, actor, reason=str(conflict.message))
        else:
            if role_obj is not None and role_obj.name != current.role:
                current.role = role_obj.name
                current.save(update_fields=["role", "modified"])
            decide(current, Invitation.STATUS.approved, actor)
            base.add_member(current.salon_id, current.user_id, current.role, actor)
    if conflict is not None:
        raise conflict
    return current


def reject_invitation(
    invitation: Invitation, *, actor: Any, reason: str = "", authorize: base.Authorize = None
) -> Invitation:
    with transaction.atomic():
        current = lock_pending_request(invitation)
        base.authorize(authorize, current)
        decide(current, Invitation.STATUS.rejected, actor, reason=reason)
    return current


def cancel_invitation(
    invitation: Invitation, *, actor: Any, authorize: base.Authorize = None
) -> Invitation:
    """The requester withdraws a pending request, or a manager revokes a pending invite."""
    with transaction.atomic():
        current = lock_pending(invitation)
        base.authorize(authorize, current)
        decide(current, Invitation.STATUS.cancelled, actor)
    return current


def delete_invitation(
    invitation: Invitation, *, actor: Any, authorize: base.Authorize = None
) -> None:
    """Delete a pending invitation (decided invitations are kept as a record)."""
    with transaction.atomic():
        current = lock_pending(invitation)
        base.authorize(authorize, current)
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
            # The event log's lock first: this job then never waits for it while holding the
            # batch's rows, which a request holding that lock might be waiting for.
            events.hold_order()
            batch = list(
                Invitation.objects.select_for_update(skip_locked=True)
                .filter(status=Invitation.STATUS.pending, expires_at__lte=now)
                .order_by("pk")[:batch_size]
            )
            for invitation in batch:
                decide(invitation, Invitation.STATUS.expired, None, when=now)
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
