"""Input validation and representation. No state changes happen here: views call services.

The classes the views use are configurable (``INVITATION_SERIALIZER``, ``SALON_SERIALIZER``,
``MEMBERSHIP_SERIALIZER``), e.g. to add the fields of a swapped salon model.
"""

from __future__ import annotations

import copy
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import router
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from salon_invitations import roles
from salon_invitations.conf import MAX_INVITE_BATCH, app_settings
from salon_invitations.models import (
    Invitation,
    SalonEvent,
    get_membership_model,
    get_salon_model,
)

try:
    from drf_spectacular.utils import extend_schema_field
except ImportError:  # pragma: no cover - drf-spectacular is optional

    def extend_schema_field(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
        return lambda field: field


class _SwappedModel:
    """``Meta.model`` resolved when read, so swapped models are honoured at call time."""

    def __init__(self, getter: Any) -> None:
        self.getter = getter

    def __get__(self, instance: Any, owner: Any) -> Any:
        return self.getter()


class _StrictPkField(serializers.PrimaryKeyRelatedField):
    def to_internal_value(self, data: Any) -> Any:
        # JSON numbers like 1.5 or true would otherwise be coerced to an id.
        if isinstance(data, bool | float):
            self.fail("incorrect_type", data_type=type(data).__name__)
        return super().to_internal_value(data)


class _SalonField(_StrictPkField):
    def get_queryset(self) -> Any:
        return get_salon_model()._default_manager.all()


class _SalonReference(_SalonField):
    """The salon of a new request, taken as far as its primary key: the service reads the row
    when it locks it, and answers a salon that does not exist with the same 400 naming
    ``salon`` (one query fewer per request). The value is a salon whose other fields load
    when first read."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, bool | float):
            self.fail("incorrect_type", data_type=type(data).__name__)
        salon_model = get_salon_model()
        try:
            pk = salon_model._meta.pk.to_python(data)
        except (DjangoValidationError, TypeError, ValueError):
            self.fail("incorrect_type", data_type=type(data).__name__)
        if pk is None or isinstance(pk, bool):
            self.fail("incorrect_type", data_type=type(data).__name__)
        using = router.db_for_read(salon_model)
        return salon_model.from_db(using, [salon_model._meta.pk.attname], [pk])


class _UserField(_StrictPkField):
    def get_queryset(self) -> Any:
        return get_user_model()._default_manager.all()


def _text_field() -> serializers.CharField:
    return serializers.CharField(
        required=False, allow_blank=True, default="", max_length=app_settings.MESSAGE_MAX_LENGTH
    )


#: serializer class -> (settings generation, its fields), see :class:`_FieldsOnce`.
_BUILT_FIELDS: dict[type, tuple[int, dict[str, serializers.Field]]] = {}


class _FieldsOnce:
    """Builds the fields of this very class once per settings generation (``ModelSerializer``
    introspects the model on every instance: a sizeable part of a list request); each instance
    gets copies, since DRF binds fields to their serializer. Subclasses build theirs as usual:
    theirs may depend on the request."""

    def get_fields(self) -> dict[str, serializers.Field]:
        if type(self) not in _FIELDS_ONCE:
            return self.build_fields()
        built = _BUILT_FIELDS.get(type(self))
        if built is None or built[0] != app_settings.generation:
            built = (app_settings.generation, self.build_fields())
            _BUILT_FIELDS[type(self)] = built
        return copy.deepcopy(built[1])

    def build_fields(self) -> dict[str, serializers.Field]:
        return super().get_fields()  # type: ignore[misc]


def _with_role_and_message(fields: dict[str, serializers.Field]) -> dict[str, serializers.Field]:
    # Built per serializer: the role table and the message limit are settings, read when used.
    fields["role"] = serializers.ChoiceField(
        choices=[(role.name, role.label) for role in roles.requestable_roles()]
    )
    fields["message"] = _text_field()
    return fields


class InvitationSerializer(_FieldsOnce, serializers.ModelSerializer):
    """An invitation. Clients write ``salon``, ``role`` and ``message`` only."""

    salon = _SalonReference()
    created_at = serializers.DateTimeField(source="created", read_only=True)
    updated_at = serializers.DateTimeField(source="modified", read_only=True)

    class Meta:
        model = Invitation
        fields = (
            "id",
            "direction",
            "user",
            "email",
            "salon",
            "role",
            "requested_role",
            "status",
            "message",
            "reason",
            "invited_by",
            "decided_by",
            "decided_at",
            "expires_at",
            "created_at",
            "updated_at",
        )
        read_only_fields = (
            "id",
            "direction",
            "user",
            "email",
            "requested_role",
            "status",
            "reason",
            "invited_by",
            "decided_by",
            "decided_at",
            "expires_at",
        )

    def build_fields(self) -> dict[str, serializers.Field]:
        return _with_role_and_message(super().build_fields())


class InviteSerializer(serializers.ModelSerializer):
    """Body of ``POST …/invite``: ``{salon, role, email, message?}`` or ``emails: [...]``."""

    salon = _SalonField()
    email = serializers.CharField(required=False, max_length=254, trim_whitespace=True)
    # Each address is checked by the invite service, so a bad one (blank, too long, not an
    # address) is reported in "failed" instead of refusing the whole batch.
    emails = serializers.ListField(
        child=serializers.CharField(allow_blank=True, allow_null=True, trim_whitespace=False),
        required=False,
        min_length=1,
        max_length=MAX_INVITE_BATCH,
    )

    def get_fields(self) -> dict[str, serializers.Field]:
        return _with_role_and_message(super().get_fields())

    class Meta:
        model = Invitation
        fields = ("salon", "role", "email", "emails", "message")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("email" in attrs) == ("emails" in attrs):
            raise serializers.ValidationError(
                {"email": [_('Give either one address in "email" or a list in "emails".')]},
                code="required",
            )
        return attrs


class InviteFailureSerializer(serializers.Serializer):
    email = serializers.CharField()
    code = serializers.CharField()
    detail = serializers.CharField()


class InviteBatchSerializer(serializers.Serializer):
    """Answer of a bulk invite: what was created, and each address refused with why."""

    created = serializers.SerializerMethodField()
    failed = InviteFailureSerializer(many=True)

    @extend_schema_field(InvitationSerializer(many=True))
    def get_created(self, outcome: dict[str, Any]) -> list[Any]:
        serializer_class = invitation_serializer_class()
        return list(serializer_class(outcome["created"], many=True, context=self.context).data)


class _InviteSalonSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="pk")
    name = serializers.CharField()


class PublicInviteSerializer(serializers.Serializer):
    """What the holder of an invite link may see, without logging in."""

    salon = _InviteSalonSerializer()
    role = serializers.CharField()
    role_label = serializers.SerializerMethodField()
    message = serializers.CharField()
    email = serializers.CharField()
    status = serializers.CharField()
    expires_at = serializers.DateTimeField()
    invited_by_name = serializers.SerializerMethodField()

    def get_role_label(self, invitation: Invitation) -> str:
        role = roles.get_role(invitation.role)
        return str(role.label) if role else invitation.role

    def get_invited_by_name(self, invitation: Invitation) -> str:
        inviter = invitation.invited_by
        if inviter is None:
            return ""
        full_name = getattr(inviter, "get_full_name", lambda: "")()
        return str(full_name or inviter.get_username())


class ApproveSerializer(serializers.Serializer):
    """Optional body of ``PATCH …/approved``: ``{"role": "…"}`` to grant another role."""

    def get_fields(self) -> dict[str, serializers.Field]:
        return {
            "role": serializers.ChoiceField(
                choices=[(role.name, role.label) for role in roles.requestable_roles()],
                required=False,
            )
        }


class MembershipRoleSerializer(serializers.Serializer):
    """Body of ``PATCH api/salon_role/<pk>``: ``{"role": "…"}``."""

    def get_fields(self) -> dict[str, serializers.Field]:
        return {
            "role": serializers.ChoiceField(
                choices=[(role.name, role.label) for role in roles.requestable_roles()]
            )
        }


class TransferSerializer(serializers.ModelSerializer):
    """Body of ``POST api/auto_salon/<pk>/transfer``: ``{"user", "previous_owner_role"?}``.

    ``user`` (the new owner) comes out as ``validated_data["owner"]``.
    """

    user = _UserField(source="owner")
    # Any role but the owner's (by default the highest-ranked other one); the transfer service
    # checks it (a 400 naming this field).
    previous_owner_role = serializers.CharField(required=False, max_length=32)

    class Meta:
        model = _SwappedModel(get_salon_model)
        fields = ("user", "previous_owner_role")


class DeclinedSerializer(serializers.Serializer):
    status = serializers.CharField()


class RejectSerializer(serializers.Serializer):
    """Optional body of ``PATCH …/rejected``: ``{"reason": "…"}``."""

    def get_fields(self) -> dict[str, serializers.Field]:
        return {"reason": _text_field()}


class SalonSerializer(serializers.ModelSerializer):
    """A salon: every field of the active salon model; ``owner`` is set from the request."""

    created_at = serializers.DateTimeField(source="created", read_only=True)
    updated_at = serializers.DateTimeField(source="modified", read_only=True)

    class Meta:
        model = _SwappedModel(get_salon_model)
        exclude = ("created", "modified")
        read_only_fields = ("owner",)


class MembershipSerializer(serializers.ModelSerializer):
    """A membership (a user's role in a salon). Its role changes through ``PATCH {"role"}``
    (:class:`MembershipRoleSerializer`), never through this serializer."""

    created_at = serializers.DateTimeField(source="created", read_only=True)

    class Meta:
        model = _SwappedModel(get_membership_model)
        fields = ("id", "user", "salon", "role", "created_at")
        read_only_fields = fields


def invitation_serializer_class() -> type[serializers.Serializer]:
    return app_settings.INVITATION_SERIALIZER


def salon_serializer_class() -> type[serializers.Serializer]:
    return app_settings.SALON_SERIALIZER


def membership_serializer_class() -> type[serializers.Serializer]:
    return app_settings.MEMBERSHIP_SERIALIZER


__all__ = [
    "InvitationSerializer",
    "InviteBatchSerializer",
    "InviteSerializer",
    "MembershipSerializer",
    "PublicInviteSerializer",
    "RejectSerializer",
    "SalonSerializer",
]


class SalonEventSerializer(serializers.ModelSerializer):
    """One row of the event log (``GET …/salon_events``): ``data`` is what the event's
    WebSocket frame carries besides ``id`` and ``type``."""

    type = serializers.CharField(source="kind", read_only=True)

    class Meta:
        model = SalonEvent
        fields = ("id", "type", "salon", "user", "actor", "created_at", "data")
        read_only_fields = fields


class SalonEventQuerySerializer(serializers.Serializer):
    """The audit list's filters: ``since`` (events after that id), ``salon``, ``kind`` (an
    event kind, or a prefix and ``*``: ``invitation.*``)."""

    # ASCII digits only, as the WebSocket's ``since`` (``int()`` would take other scripts').
    since = serializers.RegexField(
        r"^[0-9]{1,19}$",
        required=False,
        error_messages={"invalid": serializers.IntegerField.default_error_messages["invalid"]},
    )
    salon = serializers.CharField(required=False, max_length=255)
    kind = serializers.RegexField(
        r"^[a-z_]+(\.([a-z_]+|\*))?$",
        required=False,
        max_length=64,
        error_messages={"invalid": _("An event kind such as invitation.created or invitation.*.")},
    )

    def validate_since(self, value: str) -> int:
        since = int(value)
        if since >= 2**63:
            raise serializers.ValidationError(
                serializers.IntegerField.default_error_messages["max_value"].format(
                    max_value=2**63 - 1
                )
            )
        return since

    def validate_salon(self, value: str) -> Any:
        from django.core.exceptions import ValidationError

        field = get_salon_model()._meta.pk
        try:
            pk = field.to_python(value)
            field.run_validators(pk)  # the database's range for integer keys
        except (ValidationError, ValueError, TypeError) as exc:
            raise serializers.ValidationError(_("A salon id.")) from exc
        return pk


#: The classes whose fields :class:`_FieldsOnce` builds once.
_FIELDS_ONCE = frozenset({InvitationSerializer})
