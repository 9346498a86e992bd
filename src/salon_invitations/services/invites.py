"""Invites sent by managers: invite by e-mail, accept, decline, resend (SPEC §7).

An invite is an :class:`~salon_invitations.models.Invitation` with ``direction = "invite"``
bound to an e-mail address. Its raw token exists only in memory here and in the e-mail to the
invitee (see :mod:`salon_invitations.tokens`); revoking is cancelling
(:func:`~salon_invitations.services.cancel_invitation`), expiry is the same job as for requests.
The rank ceiling (who may invite, who may accept) is the policy's: ask it first.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from salon_invitations import roles, tokens
from salon_invitations.conf import MAX_INVITE_BATCH, app_settings
from salon_invitations.exceptions import Conflict, Gone, InvalidInvitation, TooSoon
from salon_invitations.models import AbstractSalon, Invitation, get_membership_model
from salon_invitations.notifications import Event, dispatch
from salon_invitations.services import base
from salon_invitations.services.base import (
    ALREADY_INVITED,
    ALREADY_MEMBER,
    MSG_ALREADY_INVITED,
    MSG_ALREADY_MEMBER,
    MSG_ALREADY_MEMBER_ADDRESS,
    MSG_INVITE_GONE,
    MSG_PENDING_REQUEST,
    MSG_ROLE_TAKEN,
    PENDING_REQUEST,
    RESEND_TOO_SOON,
    ROLE_TAKEN,
)
from salon_invitations.services.invitations import (
    decide,
    lock_pending,
    still_pending,
)

MAX_BATCH = MAX_INVITE_BATCH


def normalize_email(email: Any) -> str:
    """The address in NFKC form, trimmed and in lower case; a 400 naming ``email`` when it is
    not one. Invisible characters (zero-width spaces and other format or control characters)
    are refused rather than kept: mail servers drop them, so they would make one mailbox look
    like two."""
    address = unicodedata.normalize("NFKC", email).strip().lower() if isinstance(email, str) else ""
    invisible = any(unicodedata.category(char)[0] in "CZ" and char != " " for char in address)
    try:
        if invisible or " " in address or len(address) > 254:
            raise ValidationError("invalid")
        validate_email(address)
    except ValidationError:
        raise InvalidInvitation(
            _("Enter a valid e-mail address."), code="invalid_email", field="email"
        ) from None
    return address


def _email_lookup(prefix: str, address: str) -> dict[str, str]:
    field = get_user_model().get_email_field_name()
    return {f"{prefix}{field}__iexact": address}


def _expires_at(now: Any) -> Any:
    ttl: timedelta | None = app_settings.raw("INVITE_TTL")
    return now + ttl if ttl else None


def invite(
    *,
    salon: AbstractSalon,
    email: str,
    role: str,
    invited_by: Any,
    message: str = "",
    authorize: base.Authorize = None,
) -> Invitation:
    """Invite ``email`` to ``salon`` in ``role``; the invitee is e-mailed the accept link.

    Refused with :class:`InvalidInvitation` (the field at fault, a ``code``) for an invalid
    address, a role that cannot be requested or is taken, an address of a member, a pending
    invite to the same address (``already_invited``) or a pending request by that person
    (``pending_request``).
    """
    address = normalize_email(email)
    role_obj = base.requestable_role(role)
    duplicate = InvalidInvitation(MSG_ALREADY_INVITED, code=ALREADY_INVITED, field="email")
    with base.refused_as_duplicate(duplicate), transaction.atomic():
        locked = base.lock_salon_to_join(salon)
        base.authorize(authorize, locked)
        if base.role_is_full(locked.pk, role_obj):
            raise InvalidInvitation(MSG_ROLE_TAKEN, code=ROLE_TAKEN, field="role")
        members = get_membership_model()._default_manager.filter(salon_id=locked.pk)
        if members.filter(**_email_lookup("user__", address)).exists():
            raise InvalidInvitation(MSG_ALREADY_MEMBER_ADDRESS, code=ALREADY_MEMBER, field="email")
        salon_rows = Invitation.objects.filter(salon_id=locked.pk)
        # The conditional unique constraint backs this up where the database has one.
        if still_pending(salon_rows.filter(direction=Invitation.DIRECTION.invite, email=address)):
            raise InvalidInvitation(MSG_ALREADY_INVITED, code=ALREADY_INVITED, field="email")
        requests = salon_rows.filter(direction=Invitation.DIRECTION.request)
        if still_pending(requests.filter(**_email_lookup("user__", address))):
            raise InvalidInvitation(MSG_PENDING_REQUEST, code=PENDING_REQUEST, field="email")
        token, token_digest = tokens.new_token()
        now = timezone.now()
        invitation = Invitation(
            direction=Invitation.DIRECTION.invite,
            email=address,
            salon=locked,  # type: ignore[misc]  # the stubs see the default salon model
            role=role_obj.name,
            requested_role=role_obj.name,
            message=message,
            invited_by=invited_by if getattr(invited_by, "is_authenticated", False) else None,
            token_digest=token_digest,
            sent_at=now,
            expires_at=_expires_at(now),
        )
        invitation.save()
        dispatch(Event("invitation.created", invitation, invited_by, token=token))
    return invitation


def invite_many(
    *,
    salon: AbstractSalon,
    emails: Iterable[Any],
    role: str,
    invited_by: Any,
    message: str = "",
    authorize: base.Authorize = None,
) -> dict[str, list[Any]]:
    """Invite each address in its own transaction: one bad address does not sink the batch.

    Returns ``{"created": [invitation, ...], "failed": [{"email", "code", "detail"}, ...]}``.
    At most :data:`MAX_BATCH` addresses (``ValueError`` beyond).
    """
    emails = list(emails)
    if len(emails) > MAX_BATCH:
        raise ValueError(f"At most {MAX_BATCH} addresses per batch.")
    outcome: dict[str, list[Any]] = {"created": [], "failed": []}
    for email in emails:
        try:
            outcome["created"].append(
                invite(salon=salon, email=email, role=role, invited_by=invited_by, message=message)
            )
        except InvalidInvitation as exc:
            outcome["failed"].append({"email": email, "code": exc.code, "detail": str(exc.message)})
    return outcome


def find_invite(token: Any) -> Invitation:
    """The pending, unexpired invite of ``token``; :class:`Gone` for any unusable token.

    Unknown, used, expired and revoked tokens are told apart by nobody: the same error.
    """
    if not isinstance(token, str) or not 20 <= len(token) <= 200:
        raise Gone(MSG_INVITE_GONE)
    token_digest = tokens.digest(token)
    invitation = (
        Invitation.objects.select_related("salon", "invited_by")
        .filter(
            token_digest=token_digest,
            direction=Invitation.DIRECTION.invite,
            status=Invitation.STATUS.pending,
        )
        .first()
    )
    if invitation is None or not tokens.matches(token, invitation.token_digest):
        raise Gone(MSG_INVITE_GONE)
    if invitation.expires_at is not None and invitation.expires_at <= timezone.now():
        raise Gone(MSG_INVITE_GONE)
    return invitation


def _lock_usable(invitation: Invitation) -> Invitation:
    """Lock the salon and the invite; :class:`Gone` unless it can still be used."""
    try:
        current = lock_pending(invitation)
    except Conflict:
        raise Gone(MSG_INVITE_GONE) from None
    if current.expires_at is not None and current.expires_at <= timezone.now():
        raise Gone(MSG_INVITE_GONE)
    return current


def accept_invite(invitation: Invitation, *, user: Any) -> Invitation:
    """``user`` accepts the invite: it becomes ``approved`` and the membership is created.

    Ask the policy (``can_accept``: the account's e-mail is the invite's) first. Under the
    salon lock, like an approval: a role filled meanwhile or an existing membership rejects
    the invite and raises :class:`Conflict` (``role_taken`` / ``already_member``); an invite
    used, revoked or expired meanwhile raises :class:`Gone`.
    """
    conflict: Conflict | None = None
    with transaction.atomic():
        current = _lock_usable(invitation)
        role = roles.get_role(current.role)
        standing = base.standing(current.salon_id, user.pk, role)
        if standing.member:
            conflict = Conflict(MSG_ALREADY_MEMBER, code=ALREADY_MEMBER, instance=current)
        elif role is None or standing.full:
            conflict = Conflict(MSG_ROLE_TAKEN, code=ROLE_TAKEN, instance=current)
        if conflict is not None:
            decide(current, Invitation.STATUS.rejected, user, reason=str(conflict.message))
        else:
            current.user = user
            current.save(update_fields=["user", "modified"])
            decide(current, Invitation.STATUS.approved, user)
            base.add_member(current.salon_id, user.pk, current.role, user)
    if conflict is not None:
        raise conflict
    return current


def decline_invite(invitation: Invitation, *, actor: Any = None) -> Invitation:
    """The invitee declines: the invite becomes ``rejected`` and its link stops working."""
    with transaction.atomic():
        current = _lock_usable(invitation)
        decide(current, Invitation.STATUS.rejected, actor, reason=str(_("Declined.")))
    return current


def resend_invite(
    invitation: Invitation, *, actor: Any, authorize: base.Authorize = None
) -> Invitation:
    """E-mail a pending invite again with a new token (the old link stops working) and a new
    expiry. Within ``INVITE_RESEND_COOLDOWN`` of the last e-mail: :class:`TooSoon`."""
    with transaction.atomic():
        current = lock_pending(invitation)
        base.authorize(authorize, current)
        if not current.is_invite:
            raise Conflict(_("Only invites are e-mailed; this is a request."), code="not_an_invite")
        now = timezone.now()
        cooldown: timedelta = app_settings.raw("INVITE_RESEND_COOLDOWN")
        if current.sent_at is not None and now < current.sent_at + cooldown:
            wait = (current.sent_at + cooldown - now).total_seconds()
            raise TooSoon(
                _("This invite was e-mailed moments ago; try again later."),
                code=RESEND_TOO_SOON,
                retry_after=wait,
            )
        token, current.token_digest = tokens.new_token()
        current.sent_at = now
        current.expires_at = _expires_at(now)
        current.save(update_fields=["token_digest", "sent_at", "expires_at", "modified"])
        dispatch(Event("invitation.resent", current, actor, token=token))
    return current
