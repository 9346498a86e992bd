"""Signals sent after the transaction that made the change commits.

Every signal is sent with ``sender`` set to the model class and these keyword arguments:

``invitation`` / ``membership``
    the instance as it is after the change (for ``*_deleted``, as it was before deletion);
``actor``
    the user who made the change, or ``None`` for automatic changes (expiry).

``membership_updated`` also carries ``previous_role``.

Example::

    from django.dispatch import receiver
    from salon_invitations.signals import invitation_approved

    @receiver(invitation_approved)
    def welcome(sender, invitation, actor, **kwargs):
        ...
"""

from __future__ import annotations

from django.dispatch import Signal

invitation_created = Signal()
invitation_approved = Signal()
invitation_rejected = Signal()
invitation_cancelled = Signal()
invitation_deleted = Signal()
invitation_expired = Signal()
invitation_resent = Signal()
membership_created = Signal()
membership_updated = Signal()
membership_deleted = Signal()
#: Sent with ``salon``, ``previous_owner``, ``new_owner`` and ``actor`` when a salon changes
#: hands (the two memberships' changes are ``membership_updated``).
ownership_transferred = Signal()

SIGNALS: dict[str, Signal] = {
    "invitation.created": invitation_created,
    "invitation.approved": invitation_approved,
    "invitation.rejected": invitation_rejected,
    "invitation.cancelled": invitation_cancelled,
    "invitation.deleted": invitation_deleted,
    "invitation.expired": invitation_expired,
    "invitation.resent": invitation_resent,
    "membership.created": membership_created,
    "membership.updated": membership_updated,
    "membership.deleted": membership_deleted,
}
