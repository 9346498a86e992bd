"""Every state change of salons, memberships and invitations.

Each function runs in one ``transaction.atomic()`` block that locks the salon row
(``select_for_update``) before it reads what it checks, so concurrent calls for one salon
queue up instead of racing. Events and signals go out only after commit.

Services enforce the domain rules (SPEC §2). They do not decide *who* may call them: ask the
permission policy (:func:`salon_invitations.policies.get_policy`) first, as the views and the
admin do.
"""

from salon_invitations.services.base import (
    ALREADY_DECIDED,
    ALREADY_INVITED,
    ALREADY_MEMBER,
    DUPLICATE_PENDING,
    INACTIVE_USER,
    MSG_ALREADY_DECIDED,
    MSG_ALREADY_MEMBER,
    MSG_DUPLICATE_PENDING,
    MSG_INACTIVE_ACCOUNT,
    MSG_INACTIVE_USER,
    MSG_INVITATION_GONE,
    MSG_MEMBERSHIP_GONE,
    MSG_ROLE_TAKEN,
    MSG_SALON_GONE,
    NOT_A_REQUEST,
    OWNER_MEMBERSHIP,
    PENDING_REQUEST,
    RESEND_TOO_SOON,
    ROLE_TAKEN,
)
from salon_invitations.services.invitations import (
    approve_invitation,
    cancel_invitation,
    create_invitation,
    decide_many,
    delete_invitation,
    expire_invitations,
    reject_invitation,
)
from salon_invitations.services.invites import (
    MAX_BATCH,
    accept_invite,
    decline_invite,
    find_invite,
    invite,
    invite_many,
    normalize_email,
    resend_invite,
)
from salon_invitations.services.memberships import (
    change_role,
    changes_only_by_transfer,
    remove_membership,
    transfer_ownership,
)
from salon_invitations.services.salons import (
    create_salon,
    delete_salon,
    remove_salon_records,
    remove_user_records,
    update_salon,
)

#: Revoking an invite is cancelling it.
revoke_invite = cancel_invitation

__all__ = [
    "ALREADY_DECIDED",
    "ALREADY_INVITED",
    "ALREADY_MEMBER",
    "DUPLICATE_PENDING",
    "INACTIVE_USER",
    "MAX_BATCH",
    "MSG_ALREADY_DECIDED",
    "MSG_ALREADY_MEMBER",
    "MSG_DUPLICATE_PENDING",
    "MSG_INACTIVE_ACCOUNT",
    "MSG_INACTIVE_USER",
    "MSG_INVITATION_GONE",
    "MSG_MEMBERSHIP_GONE",
    "MSG_ROLE_TAKEN",
    "MSG_SALON_GONE",
    "NOT_A_REQUEST",
    "OWNER_MEMBERSHIP",
    "PENDING_REQUEST",
    "RESEND_TOO_SOON",
    "ROLE_TAKEN",
    "accept_invite",
    "approve_invitation",
    "cancel_invitation",
    "change_role",
    "changes_only_by_transfer",
    "create_invitation",
    "create_salon",
    "decide_many",
    "decline_invite",
    "delete_invitation",
    "delete_salon",
    "expire_invitations",
    "find_invite",
    "invite",
    "invite_many",
    "normalize_email",
    "reject_invitation",
    "remove_membership",
    "remove_salon_records",
    "remove_user_records",
    "resend_invite",
    "revoke_invite",
    "transfer_ownership",
    "update_salon",
]
