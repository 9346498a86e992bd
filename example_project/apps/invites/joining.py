"""Joining a salon through an invite link, shared by the ``/invite/<token>`` page and
``POST api/user/registration {password, invite_token}``.

The rules (whose invite it is, a role taken meanwhile, a used or expired link) are the
package's: these functions ask its policy and call its services, and add what only the project
knows, the account.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import password_validation
from django.db import IntegrityError, transaction
from django.utils.translation import gettext_lazy as _

from apps.users.models import EMAIL_TAKEN, User
from salon_invitations import roles, services
from salon_invitations.models import Invitation
from salon_invitations.policies import get_policy
from salon_invitations.serializers import PublicInviteSerializer

MSG_NOT_YOURS = _(
    "This invite was sent to another e-mail address than your account's. Log in with the "
    "invited address to accept it."
)


class NotYourInvite(Exception):
    """The policy does not let this account accept the invite (nothing was changed)."""

    code = "email_mismatch"
    message = MSG_NOT_YOURS


class AddressTaken(Exception):
    """The invited address has an account already: log in with it instead."""

    message = EMAIL_TAKEN


def describe(invitation: Invitation) -> dict[str, Any]:
    """What the holder of the link may see (the package's public representation), plus the
    role's label."""
    data = dict(PublicInviteSerializer(invitation).data)
    role = roles.get_role(invitation.role)
    data["role_label"] = role.label if role else invitation.role
    return data


def accept(invitation: Invitation, user: Any) -> Invitation:
    """``user`` accepts ``invitation`` if the policy lets them (:class:`NotYourInvite` if not).

    The package's errors pass through: ``Gone`` (used, revoked or expired meanwhile) and
    ``Conflict`` (``role_taken``, ``already_member``; the invite is then rejected).
    """
    if not get_policy().can_accept(user, invitation):
        raise NotYourInvite(MSG_NOT_YOURS)
    return services.accept_invite(invitation, user=user)


def validate_new_password(password: str, invitation: Invitation) -> None:
    """Django's password validators, for an account with the invited address
    (``django.core.exceptions.ValidationError``)."""
    password_validation.validate_password(password, User(email=invitation.email))


def sign_up_and_accept(invitation: Invitation, password: str) -> tuple[User, Invitation]:
    """Create the account of the invited address and accept the invite, in one transaction:
    when accepting fails, no account is created (and the invite is left as it was).

    Raises :class:`AddressTaken` when the address has an account already, and what
    :func:`accept` raises.
    """
    user = User.objects.build_user(invitation.email, password)  # hashing: outside the lock
    with transaction.atomic():
        try:
            User.objects.save_new(user)
        except IntegrityError:
            # The unique index on LOWER(email): an account with this address exists.
            raise AddressTaken(EMAIL_TAKEN) from None
        accepted = accept(invitation, user)
    return user, accepted
