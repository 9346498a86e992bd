"""What the dashboard shows a user, read through the package's permission policy.

Every control on the page is there because the policy allows it (``can_cancel``,
``can_decide``, ``can_invite``, ``can_change_role``); the REST endpoints the buttons call ask
the same policy again, so the page never grants anything by itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from salon_invitations import events, roles
from salon_invitations.models import Invitation, get_membership_model, get_salon_model
from salon_invitations.policies import BasePolicy, get_policy, remembered_roles
from salon_invitations.services import changes_only_by_transfer

#: Rows per list; the dashboard is an overview, the REST API pages through the rest.
LIMIT = 50


@dataclass
class Member:
    membership: Any
    #: (name, label) of the roles the user may give this member instead of the current one.
    role_options: list[tuple[str, str]]


@dataclass
class ManagedSalon:
    salon: Any
    my_role: str
    pending: list[tuple[Invitation, bool]] = field(default_factory=list)
    invite_roles: list[tuple[str, str]] = field(default_factory=list)
    members: list[Member] = field(default_factory=list)


@dataclass
class Dashboard:
    #: The event id the page's live updates resume after (the newest in the log; the replay
    #: sends only what the user may see): read before anything else, so an event committed
    #: while the page is built is replayed rather than missed.
    since: int
    mine: list[tuple[Invitation, bool]]
    memberships: list[Any]
    managed: list[ManagedSalon]
    salons: list[Any]
    requestable_roles: list[tuple[str, str]]


def build(user: Any, policy: BasePolicy | None = None) -> Dashboard:
    """Everything the page shows ``user``; a fixed number of queries per managed salon (the
    user's roles are read once, see ``remembered_roles``)."""
    with remembered_roles():
        return _build(user, policy or get_policy())


def _build(user: Any, policy: BasePolicy) -> Dashboard:
    since = events.newest_id()
    invitations = Invitation.objects.select_related("salon").order_by("-created", "-pk")
    mine = [
        (invitation, invitation.is_pending and policy.can_cancel(user, invitation))
        for invitation in policy.visible_invitations(user, invitations.filter(user=user))[:LIMIT]
    ]
    memberships = list(
        get_membership_model()
        ._default_manager.filter(user=user)
        .select_related("salon")
        .order_by("salon__name", "pk")[:LIMIT]
    )
    managed = [_managed(user, policy, m) for m in memberships]
    member_of = {m.salon_id for m in memberships}
    return Dashboard(
        since=since,
        mine=mine,
        memberships=memberships,
        managed=[salon for salon in managed if salon is not None],
        # The salons one may ask to join: not those one is a member of already.
        salons=list(
            policy.visible_salons(
                user, get_salon_model()._default_manager.exclude(pk__in=member_of).order_by("name")
            )[:LIMIT]
        ),
        requestable_roles=[(role.name, str(role.label)) for role in roles.requestable_roles()],
    )


def _managed(user: Any, policy: BasePolicy, membership: Any) -> ManagedSalon | None:
    """The salon's panel, if ``user`` may invite to it in any role (what makes a manager)."""
    salon = membership.salon
    # The roles one can be invited to or given: the requestable ones. The owner's membership
    # changes only by a transfer, which the page does not offer.
    offered = roles.requestable_roles()
    invite_roles = [
        (role.name, str(role.label))
        for role in offered
        if policy.can_invite(user, salon, role.name)
    ]
    if not invite_roles:
        return None
    pending = policy.visible_invitations(
        user,
        Invitation.objects.filter(
            salon=salon, status=Invitation.STATUS.pending, direction=Invitation.DIRECTION.request
        )
        .select_related("user")
        .order_by("created", "pk"),
    )[:LIMIT]
    members = (
        policy.visible_memberships(
            user, get_membership_model()._default_manager.filter(salon=salon)
        )
        .select_related("user")
        .order_by("pk")[:LIMIT]
    )
    return ManagedSalon(
        salon=salon,
        my_role=membership.role,
        pending=[(invitation, policy.can_decide(user, invitation)) for invitation in pending],
        invite_roles=invite_roles,
        members=[
            Member(
                membership=member,
                role_options=[]
                if changes_only_by_transfer(member)
                else [
                    (role.name, str(role.label))
                    for role in offered
                    if role.name != member.role and policy.can_change_role(user, member, role.name)
                ],
            )
            for member in members
        ],
    )
