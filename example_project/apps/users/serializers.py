from __future__ import annotations

from typing import Any

from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, serializers, status

from apps.invites import joining
from apps.users.models import EMAIL_TAKEN, User
from salon_invitations import services
from salon_invitations.exceptions import Conflict, Gone
from salon_invitations.models import Invitation

MSG_NOT_THE_INVITED_ADDRESS = _(
    "This is not the address the invite was sent to; leave the e-mail out to use that one."
)


class InviteTokenError(exceptions.APIException):
    """The invite of a registration's ``invite_token`` cannot be accepted:
    ``{"invite_token": ["..."], "code": "..."}`` with 403, 404 or 409."""

    def __init__(self, status_code: int, message: Any, code: str) -> None:
        self.status_code = status_code
        super().__init__({"invite_token": [message], "code": code}, code)


class RegistrationSerializer(serializers.ModelSerializer):
    """``{email, password}`` in, ``{id, email}`` out. Django's password validators apply.

    With ``invite_token`` (the token in an invite's link) the account gets the invited address
    and the invite is accepted, in one transaction: when accepting fails, no account is
    created. ``email`` may then be left out; when given it must be the invited address (in any
    case).
    """

    password = serializers.CharField(
        write_only=True, max_length=128, style={"input_type": "password"}, trim_whitespace=False
    )
    invite_token = serializers.CharField(
        write_only=True,
        required=False,
        max_length=200,
        help_text=_(
            "The token of an invite's link (…/invite/<token>): the account gets the invited "
            "address and joins the salon in the invited role."
        ),
    )

    class Meta:
        model = User
        fields = ("id", "email", "password", "invite_token")
        read_only_fields = ("id",)
        extra_kwargs = {
            # Uniqueness is case-insensitive: checked in validate_email, enforced by the database.
            # Required unless an invite_token gives the address (checked in validate).
            "email": {"validators": [], "required": False},
        }

    def validate_email(self, value: str) -> str:
        email = User.objects.normalize_email(value)
        if User.objects.with_email(email).exists():
            raise serializers.ValidationError(EMAIL_TAKEN, code="unique")
        return email

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        token = attrs.pop("invite_token", None)
        if token is not None:
            attrs["invitation"] = invitation = self.find_invite(token)
            if "email" not in attrs:
                if User.objects.with_email(invitation.email).exists():
                    raise serializers.ValidationError({"email": [EMAIL_TAKEN]}, code="unique")
            elif attrs["email"].lower() != invitation.email.lower():
                raise serializers.ValidationError(
                    {"email": [MSG_NOT_THE_INVITED_ADDRESS]}, code="invite_email_mismatch"
                )
            attrs["email"] = invitation.email
        elif "email" not in attrs:
            message = self.fields["email"].error_messages["required"]
            raise serializers.ValidationError({"email": [message]}, code="required")
        # Validated against an unsaved user so the similarity validator sees the e-mail.
        try:
            password_validation.validate_password(attrs["password"], User(email=attrs["email"]))
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"password": list(exc.messages)}) from exc
        return attrs

    def find_invite(self, token: str) -> Invitation:
        try:
            return services.find_invite(token)
        except Gone as exc:
            raise InviteTokenError(status.HTTP_404_NOT_FOUND, exc.message, "not_found") from None

    def create(self, validated_data: dict[str, Any]) -> User:
        invitation = validated_data.pop("invitation", None)
        if invitation is not None:
            return self.create_invited(invitation, validated_data["password"])
        try:
            return User.objects.create_user(**validated_data)
        except IntegrityError:
            # A concurrent sign-up with this address (in any case) got in between
            # validate_email and the INSERT; the unique index on LOWER(email) refused this one.
            if User.objects.with_email(validated_data["email"]).exists():
                raise serializers.ValidationError({"email": [EMAIL_TAKEN]}, code="unique") from None
            raise

    def create_invited(self, invitation: Invitation, password: str) -> User:
        try:
            user, _accepted = joining.sign_up_and_accept(invitation, password)
        except joining.AddressTaken:
            raise serializers.ValidationError({"email": [EMAIL_TAKEN]}, code="unique") from None
        except joining.NotYourInvite as exc:
            raise InviteTokenError(status.HTTP_403_FORBIDDEN, exc.message, exc.code) from None
        except Gone as exc:
            raise InviteTokenError(status.HTTP_404_NOT_FOUND, exc.message, "not_found") from None
        except Conflict as exc:
            raise InviteTokenError(status.HTTP_409_CONFLICT, exc.message, exc.code) from None
        return user


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ("id", "email", "is_staff", "date_joined")
        read_only_fields = fields
