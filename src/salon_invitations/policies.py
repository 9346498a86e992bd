"""Who may see, create, decide and delete — the one place that answers.

The REST views, the admin and the WebSocket consumer all ask the active policy, which is the
class named by ``SALON_INVITATIONS["PERMISSION_POLICY"]``. To change the rules, subclass
:class:`RolePolicy` (or :class:`BasePolicy`) and point the setting at your class::

    class StaffOnlyDeletes(RolePolicy):
        def can_delete(self, user, invitation):
            return user.is_staff
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from django.db.models import Q, QuerySet

from salon_invitations import roles
from salon_invitations.conf import app_settings
from salon_invitations.models import active_users, get_membership_model

if TYPE_CHECKING:
    from salon_invitations.models import (
        AbstractMembership,
        AbstractSalon,
        Invitation,
        SalonEvent,
    )


class BasePolicy:
    """The questions every policy answers. ``user`` may be anonymous.

    Querysets in, querysets out: the ``visible_*`` methods only add filters, so callers keep
    their ``select_related`` and ordering and the check stays one SQL query.
    """

    def visible_invitations(
        self, user: Any, queryset: QuerySet[Invitation]
    ) -> QuerySet[Invitation]:
        raise NotImplementedError

    def visible_memberships(
        self, user: Any, queryset: QuerySet[AbstractMembership]
    ) -> QuerySet[AbstractMembership]:
        raise NotImplementedError

    def visible_salons(
        self, user: Any, queryset: QuerySet[AbstractSalon]
    ) -> QuerySet[AbstractSalon]:
        raise NotImplementedError

    def visible_events(self, user: Any, queryset: QuerySet[SalonEvent]) -> QuerySet[SalonEvent]:
        """The event log rows ``user`` may read (the audit endpoint). None unless overridden."""
        return queryset.none()

    def replayable_events(self, user: Any, queryset: QuerySet[SalonEvent]) -> QuerySet[SalonEvent]:
        """The events a WebSocket of ``user`` catching up is sent: what it would have heard
        live under today's roles. Defaults to :meth:`visible_events`."""
        return self.visible_events(user, queryset)

    def event_branches(
        self, user: Any, queryset: QuerySet[SalonEvent]
    ) -> list[QuerySet[SalonEvent]] | None:
        """:meth:`visible_events` as a union of querysets that each filter on one indexed
        column (``user`` or ``salon``), or ``None``. The audit endpoint then reads a page of
        each in id order instead of sorting every visible row: flat at any size of the log.
        ``None`` (the default) uses :meth:`visible_events` as it is."""
        return None

    def can_create_invitation(self, user: Any, salon: AbstractSalon, role: str) -> bool:
        raise NotImplementedError

    def can_decide(self, user: Any, invitation: Invitation) -> bool:
        """May ``user`` approve or reject this invitation?"""
        raise NotImplementedError

    def can_cancel(self, user: Any, invitation: Invitation) -> bool:
        """May ``user`` cancel it? (A request: withdraw it; an invite: revoke it.)"""
        raise NotImplementedError

    def can_invite(self, user: Any, salon: AbstractSalon, role: str) -> bool:
        """May ``user`` invite someone to ``salon`` in ``role`` by e-mail?"""
        raise NotImplementedError

    def can_accept(self, user: Any, invitation: Invitation) -> bool:
        """May ``user`` accept this invite? (The token has been checked already.)"""
        raise NotImplementedError

    def can_resend(self, user: Any, invitation: Invitation) -> bool:
        """May ``user`` e-mail this invite again with a new link?"""
        raise NotImplementedError

    def can_delete(self, user: Any, invitation: Invitation) -> bool:
        raise NotImplementedError

    def can_create_salon(self, user: Any) -> bool:
        raise NotImplementedError

    def can_change_salon(self, user: Any, salon: AbstractSalon) -> bool:
        raise NotImplementedError

    def can_remove_membership(self, user: Any, membership: AbstractMembership) -> bool:
        raise NotImplementedError

    def can_change_role(self, user: Any, membership: AbstractMembership, role: str) -> bool:
        """May ``user`` give ``membership`` the role ``role``?"""
        raise NotImplementedError

    def can_transfer(self, user: Any, salon: AbstractSalon) -> bool:
        """May ``user`` hand ``salon`` to another member?"""
        raise NotImplementedError

    def can_approve_as(self, user: Any, invitation: Invitation, role: str) -> bool:
        """May ``user`` approve this request granting ``role`` instead of the one asked for?"""
        raise NotImplementedError

    def recipients(self, salon_id: Any, user_id: Any) -> set[Any]:
        """Primary keys of the users told about a change to ``salon_id`` concerning ``user_id``.

        Inactive accounts are never among them.
        """
        raise NotImplementedError


#: user pk -> {salon pk: role name}, while :func:`remembered_roles` is active.
_remembered: ContextVar[dict[Any, dict[Any, str]] | None] = ContextVar(
    "salon_invitations_remembered_roles", default=None
)


@contextmanager
def remembered_roles() -> Iterator[None]:
    """Within the block, :class:`RolePolicy` reads each user's roles once (all their salons in
    one query) and answers every later question about that user from them.

    For read-only pages that ask the policy about many rows for one user (a dashboard showing
    which buttons each row gets). The answers may be out of date by the time they are used:
    the services' own re-check under the salon's lock ignores the block
    (:func:`current_roles`)."""
    token = _remembered.set({})
    try:
        yield
    finally:
        _remembered.reset(token)


#: (user pk, salon pk) -> role name (or None: no membership), read under the salon's lock.
_known: ContextVar[dict[tuple[Any, Any], str | None] | None] = ContextVar(
    "salon_invitations_known_roles", default=None
)


@contextmanager
def current_roles(known: dict[tuple[Any, Any], str | None] | None = None) -> Iterator[None]:
    """Within the block the policy reads roles from the database again, even inside
    :func:`remembered_roles` (the services' re-checks under the salon's lock use it).

    ``known`` holds roles the caller has just read under the salon's lock, as
    ``{(user pk, salon pk): role name or None}``: :class:`RolePolicy` answers a question
    about one of those users in that salon from it instead of asking again."""
    token, known_token = _remembered.set(None), _known.set(known)
    try:
        yield
    finally:
        _known.reset(known_token)
        _remembered.reset(token)


def _is_operator(user: Any) -> bool:
    return bool(user.is_active and (user.is_staff or user.is_superuser))


class RolePolicy(BasePolicy):
    """The default rules (SPEC §2).

    - Staff and superusers (platform operators) see and decide everything.
    - A member whose role ``manages`` sees the salon's invitations and decides those for roles
      ranked strictly below their own.
    - Everyone sees their own invitations and may cancel them while pending.
    - Members see the memberships of their salons; any authenticated user sees the salons.
    """

    def _memberships(self) -> QuerySet[Any]:
        # No ordering: the membership model's default ordering would join the salon table.
        return get_membership_model()._default_manager.order_by()

    def _managed_salon_ids(self, user: Any) -> list[Any]:
        names = roles.managing_role_names()
        remembered = _remembered.get()
        if remembered is not None:
            return [pk for pk, name in self._roles_of(user, remembered).items() if name in names]
        managed = self._memberships().filter(user=user, role__in=names)
        return list(managed.values_list("salon_id", flat=True))

    def _roles_of(self, user: Any, remembered: dict[Any, dict[Any, str]]) -> dict[Any, str]:
        """``{salon pk: role name}`` of ``user``, read once inside :func:`remembered_roles`."""
        if user.pk not in remembered:
            rows = self._memberships().filter(user=user).values_list("salon_id", "role")
            remembered[user.pk] = dict(rows)
        return remembered[user.pk]

    def _role_in(self, user: Any, salon_id: Any) -> roles.Role | None:
        if not user.is_authenticated:
            return None
        known = _known.get()
        if known is not None and (user.pk, salon_id) in known:
            name = known[(user.pk, salon_id)]
            return roles.get_role(name) if name else None
        remembered = _remembered.get()
        if remembered is not None:
            name = self._roles_of(user, remembered).get(salon_id)
            return roles.get_role(name) if name else None
        name = (
            self._memberships()
            .filter(user=user, salon_id=salon_id)
            .values_list("role", flat=True)
            .first()
        )
        return roles.get_role(name) if name else None

    def visible_invitations(
        self, user: Any, queryset: QuerySet[Invitation]
    ) -> QuerySet[Invitation]:
        if not user.is_authenticated:
            return queryset.none()
        if _is_operator(user):
            return queryset
        # The managed salons are read first (one small indexed query) and passed as literal
        # ids: an OR with a sub-select would make PostgreSQL filter the whole table instead
        # of combining two index scans (measured in docs/benchmarks.md).
        managed = self._managed_salon_ids(user)
        if not managed:
            return queryset.filter(user=user)
        return queryset.filter(Q(user=user) | Q(salon_id__in=managed))

    def visible_events(self, user: Any, queryset: QuerySet[SalonEvent]) -> QuerySet[SalonEvent]:
        """Staff: all; others: the events about them and those of the salons they manage."""
        if not user.is_authenticated:
            return queryset.none()
        if _is_operator(user):
            return queryset
        return self.replayable_events(user, queryset)

    def event_branches(
        self, user: Any, queryset: QuerySet[SalonEvent]
    ) -> list[QuerySet[SalonEvent]] | None:
        """Staff: ``None`` (everything, in id order already); others: their own events, and
        each managed salon's. ``None`` too in a subclass that changes :meth:`visible_events`
        (these branches would not cover what it shows)."""
        if type(self).visible_events is not RolePolicy.visible_events:
            return None
        if not user.is_authenticated or _is_operator(user):
            return None
        if not user.is_active:
            return [queryset.none()]
        managed = self._managed_salon_ids(user)
        return [queryset.filter(user=user), *(queryset.filter(salon_id=pk) for pk in managed)]

    def replayable_events(self, user: Any, queryset: QuerySet[SalonEvent]) -> QuerySet[SalonEvent]:
        """What :meth:`recipients` would have chosen ``user`` for, with today's roles."""
        if not (user.is_authenticated and user.is_active):
            return queryset.none()
        managed = self._managed_salon_ids(user)
        if not managed:
            return queryset.filter(user=user)
        return queryset.filter(Q(user=user) | Q(salon_id__in=managed))

    def visible_memberships(
        self, user: Any, queryset: QuerySet[AbstractMembership]
    ) -> QuerySet[AbstractMembership]:
        if not user.is_authenticated:
            return queryset.none()
        if _is_operator(user):
            return queryset
        own_salons = self._memberships().filter(user=user).values("salon_id")
        return queryset.filter(salon_id__in=own_salons)

    def visible_salons(
        self, user: Any, queryset: QuerySet[AbstractSalon]
    ) -> QuerySet[AbstractSalon]:
        return queryset if user.is_authenticated else queryset.none()

    def can_create_invitation(self, user: Any, salon: AbstractSalon, role: str) -> bool:
        return bool(user.is_authenticated and user.is_active)

    def _outranks(self, user: Any, salon_id: Any, role_name: str) -> bool:
        if not user.is_authenticated:
            return False
        if _is_operator(user):
            return True
        own = self._role_in(user, salon_id)
        target = roles.get_role(role_name)
        if own is None or not own.manages:
            return False
        # A role missing from the table (removed from settings) can be decided by managers.
        return target is None or own.outranks(target)

    def can_decide(self, user: Any, invitation: Invitation) -> bool:
        return self._outranks(user, invitation.salon_id, invitation.role)

    def can_cancel(self, user: Any, invitation: Invitation) -> bool:
        if invitation.is_invite:
            return self.can_decide(user, invitation)  # revoking
        return bool(user.is_authenticated and invitation.user_id == user.pk)

    def can_invite(self, user: Any, salon: AbstractSalon, role: str) -> bool:
        """Staff: any role; a manager: roles ranked strictly below their own."""
        if not (user.is_authenticated and user.is_active):
            return False
        return self._outranks(user, salon.pk, role)

    def can_accept(self, user: Any, invitation: Invitation) -> bool:
        """The account's e-mail address is the invite's (compared case-insensitively)."""
        if not (user.is_authenticated and user.is_active and invitation.is_invite):
            return False
        address = getattr(user, user.get_email_field_name(), "") or ""
        return bool(address) and address.strip().lower() == invitation.email.lower()

    def can_resend(self, user: Any, invitation: Invitation) -> bool:
        return self.can_decide(user, invitation)

    def can_delete(self, user: Any, invitation: Invitation) -> bool:
        return self.can_decide(user, invitation)

    def can_create_salon(self, user: Any) -> bool:
        return bool(user.is_authenticated and user.is_active)

    def can_change_salon(self, user: Any, salon: AbstractSalon) -> bool:
        if not user.is_authenticated:
            return False
        return _is_operator(user) or salon.owner_id == user.pk

    def can_remove_membership(self, user: Any, membership: AbstractMembership) -> bool:
        if not user.is_authenticated:
            return False
        if membership.user_id == user.pk:
            return True  # leaving a salon
        return self._outranks(user, membership.salon_id, membership.role)

    def can_change_role(self, user: Any, membership: AbstractMembership, role: str) -> bool:
        """Staff, or a manager who outranks both the member's role and the new one; nobody
        changes their own role."""
        if not (user.is_authenticated and user.is_active) or membership.user_id == user.pk:
            return False
        return self._outranks(user, membership.salon_id, membership.role) and self._outranks(
            user, membership.salon_id, role
        )

    def can_transfer(self, user: Any, salon: AbstractSalon) -> bool:
        """The owner, or staff."""
        return bool(user.is_authenticated and user.is_active) and self.can_change_salon(user, salon)

    def can_approve_as(self, user: Any, invitation: Invitation, role: str) -> bool:
        """Who may decide the request, granting a role they outrank."""
        return self.can_decide(user, invitation) and self._outranks(user, invitation.salon_id, role)

    def recipients(self, salon_id: Any, user_id: Any) -> set[Any]:
        """The subject and the salon's managers, active accounts only (one query)."""
        managers = (
            self._memberships()
            .filter(salon_id=salon_id, role__in=roles.managing_role_names())
            .values("user_id")
        )
        users = active_users().filter(Q(pk=user_id) | Q(pk__in=managers))
        return set(users.order_by().values_list("pk", flat=True))


def get_policy() -> BasePolicy:
    """An instance of the configured policy class."""
    return app_settings.PERMISSION_POLICY()
