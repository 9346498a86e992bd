"""Representation and input validation of the serializers (SPEC §3)."""

from __future__ import annotations

import copy

import pytest
from django.test import override_settings
from django.utils.dateparse import parse_datetime

from salon_invitations import services
from salon_invitations.conf import DEFAULTS
from salon_invitations.models import Invitation, get_membership_model, get_salon_model
from salon_invitations.serializers import (
    InvitationSerializer,
    MembershipSerializer,
    RejectSerializer,
    SalonSerializer,
    invitation_serializer_class,
    membership_serializer_class,
    salon_serializer_class,
)
from tests import factories

pytestmark = pytest.mark.django_db

INVITATION_FIELDS = [
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
]
MEMBERSHIP_FIELDS = ["id", "user", "salon", "role", "created_at"]


@pytest.fixture
def invitation(salon, requester):
    return factories.make_invitation(salon=salon, user=requester, role="seller", message="hi")


# InvitationSerializer ---------------------------------------------------------------------------


def test_invitation_representation_has_exactly_the_spec_fields(invitation):
    data = InvitationSerializer(invitation).data

    assert list(data) == INVITATION_FIELDS


def test_pending_invitation_representation(invitation, salon, requester):
    stored = Invitation.objects.get(pk=invitation.pk)

    data = InvitationSerializer(stored).data

    assert data["id"] == stored.pk
    assert data["user"] == requester.pk
    assert data["salon"] == salon.pk
    assert data["role"] == "seller"
    assert data["status"] == "pending"
    assert data["message"] == "hi"
    assert data["reason"] == ""
    assert data["decided_by"] is None
    assert data["decided_at"] is None
    assert data["expires_at"] is None
    assert parse_datetime(data["created_at"]) == stored.created
    assert parse_datetime(data["updated_at"]) == stored.modified


def test_relations_are_primary_keys(invitation, owner, salon, requester):
    decided = services.reject_invitation(invitation, actor=owner, reason="Full")

    data = InvitationSerializer(decided).data

    assert (data["user"], data["salon"], data["decided_by"]) == (requester.pk, salon.pk, owner.pk)
    assert all(isinstance(data[name], int) for name in ("user", "salon", "decided_by"))
    assert data["status"] == "rejected"
    assert data["reason"] == "Full"
    assert parse_datetime(data["decided_at"]) == decided.decided_at


def test_representation_runs_no_query_for_relations(invitation, django_assert_num_queries):
    stored = Invitation.objects.get(pk=invitation.pk)

    with django_assert_num_queries(0):
        InvitationSerializer(stored).data  # noqa: B018 - rendering is the point


def test_client_writes_only_salon_role_and_message(salon, owner, requester):
    serializer = InvitationSerializer(
        data={
            "id": 999,
            "salon": salon.pk,
            "role": "mechanic",
            "message": "Let me in",
            "user": owner.pk,
            "status": "approved",
            "reason": "forged",
            "decided_by": owner.pk,
            "decided_at": "2020-01-01T00:00:00Z",
            "expires_at": "2020-01-01T00:00:00Z",
            "created_at": "2020-01-01T00:00:00Z",
            "updated_at": "2020-01-01T00:00:00Z",
        }
    )

    assert serializer.is_valid(), serializer.errors
    assert set(serializer.validated_data) == {"salon", "role", "message"}
    assert serializer.validated_data["role"] == "mechanic"
    assert serializer.validated_data["message"] == "Let me in"
    assert serializer.validated_data["salon"].pk == salon.pk
    assert isinstance(serializer.validated_data["salon"], get_salon_model())
    assert not Invitation.objects.exists()


def test_message_defaults_to_empty(salon):
    serializer = InvitationSerializer(data={"salon": salon.pk, "role": "seller"})

    assert serializer.is_valid(), serializer.errors
    assert serializer.validated_data["message"] == ""


def test_role_choices_are_the_requestable_roles():
    assert list(InvitationSerializer().fields["role"].choices) == ["admin", "seller", "mechanic"]


@pytest.mark.parametrize("role", ["superuser", "owner", "", None, 10])
def test_other_roles_are_invalid(salon, role):
    serializer = InvitationSerializer(data={"salon": salon.pk, "role": role})

    assert not serializer.is_valid()
    assert list(serializer.errors) == ["role"]


def test_role_choices_follow_override_settings(salon):
    table = copy.deepcopy(DEFAULTS["ROLES"])
    table["mechanic"]["requestable"] = False
    table["intern"] = {"label": "Intern", "rank": 5, "limit": None, "requestable": True}

    with override_settings(SALON_INVITATIONS={"ROLES": table}):
        choices = list(InvitationSerializer().fields["role"].choices)
        mechanic = InvitationSerializer(data={"salon": salon.pk, "role": "mechanic"})
        intern = InvitationSerializer(data={"salon": salon.pk, "role": "intern"})
        assert not mechanic.is_valid()
        assert intern.is_valid(), intern.errors

    assert choices == ["admin", "seller", "intern"]
    assert list(mechanic.errors) == ["role"]
    assert list(InvitationSerializer().fields["role"].choices) == ["admin", "seller", "mechanic"]


def test_owner_role_is_never_a_choice_even_if_marked_requestable():
    table = copy.deepcopy(DEFAULTS["ROLES"])
    table["superuser"]["requestable"] = True

    with override_settings(SALON_INVITATIONS={"ROLES": table}):
        choices = list(InvitationSerializer().fields["role"].choices)

    assert "superuser" not in choices


@pytest.mark.parametrize("salon_pk", ["abc", [], {}, None, True, 1.5, ""])
def test_salon_must_be_a_salon_id(salon, salon_pk):
    serializer = InvitationSerializer(data={"salon": salon_pk, "role": "seller"})

    assert not serializer.is_valid()
    assert list(serializer.errors) == ["salon"]


def test_the_salon_is_read_no_further_than_its_id(salon, django_assert_num_queries):
    """Whether it exists is the service's question, when it locks the row (one query fewer
    per request; test_invitation_api covers the 400 for an unknown id)."""
    with django_assert_num_queries(0):
        serializer = InvitationSerializer(data={"salon": str(salon.pk), "role": "seller"})
        assert serializer.is_valid(), serializer.errors
    assert serializer.validated_data["salon"].pk == salon.pk
    with django_assert_num_queries(1):  # the other fields load when first read
        assert serializer.validated_data["salon"].name == salon.name


def test_message_length_follows_settings(salon):
    at_limit = InvitationSerializer(
        data={"salon": salon.pk, "role": "seller", "message": "x" * 1000}
    )
    over = InvitationSerializer(data={"salon": salon.pk, "role": "seller", "message": "x" * 1001})
    with override_settings(SALON_INVITATIONS={"MESSAGE_MAX_LENGTH": 5}):
        short_limit = InvitationSerializer(
            data={"salon": salon.pk, "role": "seller", "message": "x" * 6}
        )
        assert not short_limit.is_valid()

    assert at_limit.is_valid(), at_limit.errors
    assert not over.is_valid()
    assert list(over.errors) == ["message"]
    assert list(short_limit.errors) == ["message"]


def test_message_rejects_nul_characters(salon):
    serializer = InvitationSerializer(
        data={"salon": salon.pk, "role": "seller", "message": "a\x00b"}
    )

    assert not serializer.is_valid()
    assert list(serializer.errors) == ["message"]


# RejectSerializer -------------------------------------------------------------------------------


def test_reject_reason_is_optional_and_limited():
    empty = RejectSerializer(data={})
    fine = RejectSerializer(data={"reason": "Full"})
    too_long = RejectSerializer(data={"reason": "x" * 1001})

    assert empty.is_valid()
    assert empty.validated_data == {"reason": ""}
    assert fine.is_valid()
    assert fine.validated_data == {"reason": "Full"}
    assert not too_long.is_valid()
    assert list(too_long.errors) == ["reason"]


# SalonSerializer --------------------------------------------------------------------------------


def _salon_model_field_names():
    return {
        field.name
        for field in get_salon_model()._meta.concrete_fields
        if field.name not in ("created", "modified")
    }


def test_salon_representation_has_every_field_of_the_active_model(salon, owner):
    data = SalonSerializer(salon).data

    assert set(data) == _salon_model_field_names() | {"created_at", "updated_at"}
    assert data["id"] == salon.pk
    assert data["name"] == "Salon A"
    assert data["owner"] == owner.pk
    assert parse_datetime(data["created_at"]) == salon.created


def test_salon_serializer_uses_the_active_salon_model():
    assert SalonSerializer.Meta.model is get_salon_model()


def test_swapped_salon_model_fields_are_included(owner):
    model = get_salon_model()
    if model._meta.label != "testapp.CustomSalon":
        pytest.skip("runs with DJANGO_SETTINGS_MODULE=tests.settings_swapped")
    salon = factories.make_salon(owner=owner, name="Swapped", location="Lisbon")

    data = SalonSerializer(salon).data
    written = SalonSerializer(data={"name": "New", "location": "Porto"})

    assert data["location"] == "Lisbon"
    assert written.is_valid(), written.errors
    assert written.validated_data == {"name": "New", "location": "Porto"}


def test_salon_owner_is_read_only(requester):
    serializer = SalonSerializer(data={"name": "Mine", "owner": requester.pk})

    assert serializer.is_valid(), serializer.errors
    assert "owner" not in serializer.validated_data
    assert serializer.validated_data["name"] == "Mine"


def test_salon_name_is_required():
    serializer = SalonSerializer(data={})

    assert not serializer.is_valid()
    assert "name" in serializer.errors


# MembershipSerializer ---------------------------------------------------------------------------


def test_membership_representation(salon, owner):
    membership = get_membership_model()._default_manager.get(salon=salon, user=owner)

    data = MembershipSerializer(membership).data

    assert list(data) == MEMBERSHIP_FIELDS
    assert (data["id"], data["user"], data["salon"], data["role"]) == (
        membership.pk,
        owner.pk,
        salon.pk,
        "superuser",
    )
    assert parse_datetime(data["created_at"]) == membership.created


def test_membership_serializer_is_read_only(salon, requester):
    serializer = MembershipSerializer(
        data={"user": requester.pk, "salon": salon.pk, "role": "admin", "id": 5}
    )

    assert serializer.is_valid(), serializer.errors
    assert serializer.validated_data == {}
    assert MembershipSerializer.Meta.model is get_membership_model()


# Configurable serializer classes ----------------------------------------------------------------


class LoudInvitationSerializer(InvitationSerializer):
    pass


def test_serializer_classes_default_to_the_packages():
    assert invitation_serializer_class() is InvitationSerializer
    assert salon_serializer_class() is SalonSerializer
    assert membership_serializer_class() is MembershipSerializer


def test_serializer_class_follows_override_settings():
    path = f"{__name__}.LoudInvitationSerializer"

    with override_settings(SALON_INVITATIONS={"INVITATION_SERIALIZER": path}):
        overridden = invitation_serializer_class()

    assert overridden is LoudInvitationSerializer
    assert invitation_serializer_class() is InvitationSerializer


def test_the_fields_are_built_once_per_settings_and_copied_per_instance(monkeypatch):
    from salon_invitations import serializers as module

    builds: list[type] = []
    build = module._FieldsOnce.build_fields

    def counted(self):
        builds.append(type(self))
        return build(self)

    monkeypatch.setattr(module._FieldsOnce, "build_fields", counted)
    module._BUILT_FIELDS.clear()
    first, second = InvitationSerializer(), InvitationSerializer()
    assert list(first.fields) == list(second.fields)
    assert first.fields["role"] is not second.fields["role"]  # each bound to its serializer
    assert first.fields["role"].parent is first
    assert builds == [InvitationSerializer]

    with override_settings(SALON_INVITATIONS={"MESSAGE_MAX_LENGTH": 10}):
        assert InvitationSerializer().fields["message"].max_length == 10
    assert InvitationSerializer().fields["message"].max_length == 1000
    assert builds == [InvitationSerializer] * 3

    class Mine(InvitationSerializer):
        pass

    assert Mine().fields and Mine().fields  # built as usual, each time
    assert builds[3:] == [Mine, Mine]
