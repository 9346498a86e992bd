"""What every service shares: conflict codes and messages, locks, membership helpers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError
from django.db.models import Count, Exists, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils.translation import gettext_lazy as _

from salon_invitations import roles
from salon_invitations.exceptions import Gone, InvalidInvitation, NotAllowed
from salon_invitations.models import (
    AbstractMembership,
    AbstractSalon,
    Invitation,
    active_users,
    get_membership_model,
    get_salon_model,
)
from salon_invitations.notifications import Event, dispatch
from salon_invitations.policies import current_roles, get_policy

ROLE_TAKEN = "role_taken"
ALREADY_MEMBER = "already_member"
ALREADY_DECIDED = "already_decided"
OWNER_MEMBERSHIP = "owner_membership"
DUPLICATE_PENDING = "duplicate_pending"
INACTIVE_USER = "inactive_user"
NOT_A_REQUEST = "not_a_request"
ALREADY_INVITED = "already_invited"
PENDING_REQUEST = "pending_request"
RESEND_TOO_SOON = "resend_too_soon"

MSG_ROLE_TAKEN = _("This role is already taken in this salon.")
MSG_ALREADY_MEMBER = _("The user is already a member of this salon.")
MSG_ALREADY_DECIDED = _("This invitation has already been decided.")
MSG_DUPLICATE_PENDING = _("You already have a pending invitation to this salon.")
MSG_INACTIVE_USER = _("The requester's account is inactive.")
MSG_INACTIVE_ACCOUNT = _("Your account is inactive.")
MSG_SALON_GONE = _("This salon no longer exists.")
MSG_INVITATION_GONE = _("This invitation no longer exists.")
MSG_MEMBERSHIP_GONE = _("This membership no longer exists.")
MSG_NOT_A_REQUEST = _(
    "This is an invite sent by the salon: the invitee accepts or declines it, and a manager "
    "revokes it by cancelling."
)
MSG_ALREADY_INVITED = _("This address already has a pending invite to this salon.")
MSG_PENDING_REQUEST = _(
    "This person has a pending request to join this salon: decide the request instead."
)
MSG_ALREADY_MEMBER_ADDRESS = _("This address belongs to a member of this salon.")
MSG_INVITE_GONE = _("This invite link is not valid: it is unknown, used, expired or revoked.")


MSG_NOT_ALLOWED = _("You do not have permission to perform this action on this object.")
MSG_MAY_NOT_JOIN = _("You may not ask to join this salon.")
MSG_NO_SUCH_SALON = _("There is no salon with this id.")

#: ``authorize``: the policy's check for the caller, asked again under the salon's lock.
Authorize = Callable[[Any], bool] | None


def authorize(
    check: Authorize,
    obj: Any,
    message: Any = MSG_NOT_ALLOWED,
    known: dict[tuple[Any, Any], str | None] | None = None,
) -> None:
    """Ask ``check`` about ``obj`` now that the salon is locked.

    The views ask the policy before the lock, to answer quickly; between that and the lock a
    concurrent request may have taken the caller's rights (a demotion, a transfer). Asked
    again here, the answer cannot change until the transaction ends.
    """
    if check is None:
        return
    with current_roles(known):  # never from roles remembered before the lock
        allowed = check(obj)
    if not allowed:
        raise NotAllowed(message)


def requestable_role(role: str) -> roles.Role:
    """The role named ``role`` if it may be asked or invited for; else a 400 naming ``role``."""
    role_obj = roles.get_role(role)
    if role_obj is None or role_obj not in roles.requestable_roles():
        raise InvalidInvitation(
            _('"%(role)s" is not a role that can be requested.') % {"role": role},
            code="invalid_role",
            field="role",
        )
    return role_obj


def lock_salon_to_join(salon: Any) -> AbstractSalon:
    """Lock the salon a new invitation is for; one that does not exist (or no longer) is a
    400 naming ``salon``."""
    try:
        return lock_salon(salon.pk)
    except Gone:
        raise InvalidInvitation(MSG_NO_SUCH_SALON, code="does_not_exist", field="salon") from None


def lock_salon(salon_id: Any) -> AbstractSalon:
    """Lock the salon row; :class:`Gone` when it was deleted meanwhile."""
    Salon = get_salon_model()
    try:
        return Salon._default_manager.select_for_update().get(pk=salon_id)
    except Salon.DoesNotExist:
        raise Gone(MSG_SALON_GONE, field="salon") from None


def lock_row(model: Any, pk: Any, message: Any) -> Any:
    """Lock one row (after its salon); :class:`Gone` when it was deleted meanwhile."""
    try:
        return model._default_manager.select_for_update().get(pk=pk)
    except model.DoesNotExist:
        raise Gone(message) from None


@dataclass(frozen=True)
class Standing:
    """What a change re-checks under the salon's lock about one user, read in one query."""

    #: The user holds a membership in the salon.
    member: bool
    #: The role has no room left (never for a role without a limit).
    full: bool
    #: The user has a pending invitation to the salon (read only when asked for).
    pending: bool = False
    #: The user's account is active (read only when asked for).
    active: bool = True
    #: The acting user's role in the salon (read only when asked for; None: not a member).
    actor_role: str | None = None


def standing(salon_id: Any, user_id: Any, role: roles.Role | None, **asks: Any) -> Standing:
    """The user's :class:`Standing` in the salon, in one statement of scalar sub-queries.
    ``asks``: ``pending=True`` and ``active=True`` read those too; ``actor=<user pk>`` that
    user's role there, for :func:`authorize`.

    Call it after the salon's lock: a statement of its own sees what the transactions that
    held the lock before committed (one fused into the salon's locking ``SELECT`` would not,
    in PostgreSQL's READ COMMITTED). :func:`lock_with_standing` reads it with a row's lock.
    """
    checks = _standing_checks(salon_id, user_id, role, **asks)
    salons = get_salon_model()._default_manager.filter(pk=salon_id).order_by()
    return _standing_of(salons.annotate(**checks).values(*checks).get(), role)


def lock_with_standing(
    model: Any,
    pk: Any,
    gone: Any,
    salon_id: Any,
    user_id: Any,
    role: roles.Role | None,
    **asks: Any,
) -> tuple[Any, Standing]:
    """Lock one row of the salon (after the salon's lock, like :func:`lock_row`) and read
    :func:`standing` in the same statement; :class:`Gone` when the row was deleted.

    Sound because the salon is locked already: the statement starts after the transactions
    that held that lock committed, so its sub-queries see their changes; and the row itself
    is the latest version once its lock is granted."""
    checks = _standing_checks(salon_id, user_id, role, **asks)
    try:
        locked = (
            model._default_manager.select_for_update()
            .order_by()
            .annotate(**{f"_standing_{k}": v for k, v in checks.items()})
            .get(pk=pk)
        )
    except model.DoesNotExist:
        raise Gone(gone) from None
    values = {k: locked.__dict__.pop(f"_standing_{k}") for k in checks}
    return locked, _standing_of(values, role)


def _standing_checks(
    salon_id: Any,
    user_id: Any,
    role: roles.Role | None,
    pending: bool = False,
    active: bool = False,
    actor: Any = None,
) -> dict[str, Any]:
    memberships = get_membership_model()._default_manager.filter(salon_id=salon_id)
    checks: dict[str, Any] = {"member": Exists(memberships.filter(user_id=user_id))}
    if role is not None and role.limit is not None:
        holders = (
            memberships.filter(role=role.name)
            .order_by()
            .values("salon_id")
            .annotate(n=Count("pk"))
            .values("n")
        )
        checks["holders"] = Coalesce(Subquery(holders), Value(0))
    if pending:
        checks["pending"] = Exists(
            Invitation.objects.filter(
                salon_id=salon_id, user_id=user_id, status=Invitation.STATUS.pending
            )
        )
    if active:
        checks["active"] = Exists(active_users().filter(pk=user_id))
    if actor is not None:
        checks["actor_role"] = Subquery(
            memberships.filter(user_id=actor).order_by().values("role")[:1]
        )
    return checks


def _standing_of(row: dict[str, Any], role: roles.Role | None) -> Standing:
    return Standing(
        member=bool(row["member"]),
        full=role is not None and no_room(role, row.get("holders", 0)),
        pending=bool(row.get("pending", False)),
        active=bool(row.get("active", True)),
        actor_role=row.get("actor_role"),
    )


@contextmanager
def refused_as_duplicate(duplicate: Exception) -> Iterator[None]:
    """Around a change that inserts an invitation, outside its transaction: a database
    constraint refusing the row (the concurrent twin that the checks under the lock could not
    see) raises ``duplicate`` once the change is rolled back. No savepoint of its own: the
    whole change goes, as it must."""
    try:
        yield
    except IntegrityError as exc:
        raise duplicate from exc


def is_active(user_id: Any) -> bool:
    return active_users().filter(pk=user_id).exists()


def no_room(role: roles.Role, holders: int) -> bool:
    """Whether ``holders`` members fill ``role`` (never for a role without a limit)."""
    return role.limit is not None and holders >= role.limit


def role_is_full(salon_id: Any, role: roles.Role) -> bool:
    if role.limit is None:
        return False
    holders = get_membership_model()._default_manager.filter(salon_id=salon_id, role=role.name)
    return no_room(role, holders.count())


def add_member(salon_id: Any, user_id: Any, role: str, actor: Any) -> AbstractMembership:
    membership = get_membership_model()._default_manager.create(
        salon_id=salon_id, user_id=user_id, role=role
    )
    dispatch(Event("membership.created", membership, actor))
    return membership


def remove_announced(kind: str, rows: list[Any], actor: Any) -> None:
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
