"""The models and the rules the database itself enforces (SPEC §2.4, §2.6, §5)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from salon_invitations import services
from salon_invitations.models import (
    AbstractMembership,
    AbstractSalon,
    Invitation,
    Membership,
    Salon,
    get_membership_model,
    get_salon_model,
)
from tests import factories

pytestmark = pytest.mark.django_db

#: MySQL and MariaDB cannot create conditional unique constraints (Django's models.W036); there
#: only the services refuse a second pending invitation (tests/test_services.py, test_race.py).
conditional_unique_constraints = pytest.mark.skipif(
    not connection.features.supports_partial_indexes,
    reason="the database cannot create conditional unique constraints (MySQL, MariaDB)",
)


def _pending(salon, user, role="seller"):
    """A pending invitation saved directly, bypassing the services."""
    return Invitation.objects.create(salon=salon, user=user, role=role)


def _decided(salon, user, status="rejected", role="seller"):
    return Invitation.objects.create(
        salon=salon, user=user, role=role, status=status, decided_at=timezone.now()
    )


# The partial unique constraint: one pending invitation per (user, salon) -----------------------


@conditional_unique_constraints
def test_second_pending_invitation_for_same_user_and_salon_is_refused_by_the_database(
    salon, requester
):
    first = _pending(salon, requester, role="seller")

    with pytest.raises(IntegrityError), transaction.atomic():
        _pending(salon, requester, role="mechanic")

    assert list(Invitation.objects.filter(user=requester, salon=salon)) == [first]


@pytest.mark.parametrize("status", ["approved", "rejected", "cancelled", "expired"])
def test_a_new_pending_invitation_is_allowed_once_the_previous_one_is_decided(
    salon, requester, status
):
    _decided(salon, requester, status=status)

    second = _pending(salon, requester)

    assert second.pk is not None
    assert Invitation.objects.filter(user=requester, salon=salon).count() == 2
    assert Invitation.objects.filter(user=requester, salon=salon, status="pending").count() == 1


def test_pending_invitations_of_one_user_to_two_salons_coexist(salon, other_salon, requester):
    _pending(salon, requester)
    _pending(other_salon, requester)

    assert Invitation.objects.filter(user=requester, status="pending").count() == 2


def test_pending_invitations_of_two_users_to_one_salon_coexist(salon, requester):
    _pending(salon, requester, role="seller")
    _pending(salon, factories.make_user(), role="seller")

    assert Invitation.objects.filter(salon=salon, status="pending").count() == 2


def test_deciding_the_pending_invitation_frees_the_slot_for_a_new_one(salon, requester):
    first = _pending(salon, requester)
    first.status = Invitation.STATUS.rejected
    first.decided_at = timezone.now()
    first.save()

    _pending(salon, requester)

    assert Invitation.objects.filter(user=requester, salon=salon, status="pending").count() == 1


# Memberships: one per (user, salon) -----------------------------------------------------------


def test_membership_is_unique_per_user_and_salon_in_the_database(salon, requester):
    Membership_ = get_membership_model()
    Membership_._default_manager.create(salon=salon, user=requester, role="seller")

    with pytest.raises(IntegrityError), transaction.atomic():
        Membership_._default_manager.create(salon=salon, user=requester, role="mechanic")

    roles = list(
        Membership_._default_manager.filter(salon=salon, user=requester).values_list(
            "role", flat=True
        )
    )
    assert roles == ["seller"]


def test_one_user_may_be_member_of_several_salons(salon, other_salon, requester):
    Membership_ = get_membership_model()
    Membership_._default_manager.create(salon=salon, user=requester, role="seller")
    Membership_._default_manager.create(salon=other_salon, user=requester, role="seller")

    assert Membership_._default_manager.filter(user=requester).count() == 2


# The check constraint: a decided invitation records when -------------------------------------


@pytest.mark.parametrize("status", ["approved", "rejected", "cancelled", "expired"])
def test_decided_status_without_decided_at_is_refused_by_the_database(salon, requester, status):
    with pytest.raises(IntegrityError), transaction.atomic():
        Invitation.objects.create(salon=salon, user=requester, role="seller", status=status)

    assert not Invitation.objects.filter(user=requester).exists()


def test_pending_invitation_needs_no_decided_at(salon, requester):
    invitation = _pending(salon, requester)

    invitation.refresh_from_db()
    assert invitation.status == "pending"
    assert invitation.decided_at is None


def test_clearing_decided_at_of_a_decided_invitation_is_refused(salon, requester):
    invitation = _decided(salon, requester)

    with pytest.raises(IntegrityError), transaction.atomic():
        Invitation.objects.filter(pk=invitation.pk).update(decided_at=None)

    invitation.refresh_from_db()
    assert invitation.decided_at is not None


# Decided invitations are immutable ------------------------------------------------------------


@pytest.mark.parametrize(
    ("decided", "new_status"),
    [
        (decided, new)
        for decided in Invitation.DECIDED_STATUSES
        for new in ("pending", *Invitation.DECIDED_STATUSES)
        if new != decided
    ],
)
def test_a_decided_invitation_cannot_change_status(salon, requester, decided, new_status):
    invitation = _decided(salon, requester, status=decided)

    invitation.status = new_status
    with pytest.raises(ValueError, match="decided invitation"):
        invitation.save()

    assert Invitation.objects.get(pk=invitation.pk).status == decided


def test_a_decided_invitation_loaded_from_the_database_cannot_change_status(salon, requester):
    pk = _decided(salon, requester, status="approved").pk
    invitation = Invitation.objects.get(pk=pk)

    invitation.status = "pending"
    with pytest.raises(ValueError):
        invitation.save()

    assert Invitation.objects.get(pk=pk).status == "approved"


def test_a_decided_invitation_may_be_saved_without_a_status_change(salon, requester):
    invitation = _decided(salon, requester, status="rejected")

    invitation.reason = "Not hiring."
    invitation.save()

    invitation.refresh_from_db()
    assert (invitation.status, invitation.reason) == ("rejected", "Not hiring.")


def test_a_pending_invitation_may_be_decided(salon, requester):
    invitation = _pending(salon, requester)

    invitation.status = "approved"
    invitation.decided_at = timezone.now()
    invitation.save()

    assert Invitation.objects.get(pk=invitation.pk).status == "approved"


def test_is_pending(salon, requester):
    assert _pending(salon, requester).is_pending is True
    assert _decided(salon, factories.make_user(), status="approved").is_pending is False


# Swappable models -----------------------------------------------------------------------------


def test_get_salon_model_returns_the_configured_model():
    configured = settings.SALON_INVITATIONS_SALON_MODEL
    model = get_salon_model()

    assert model._meta.label == configured
    assert issubclass(model, AbstractSalon)
    if configured == "salon_invitations.Salon":
        assert model is Salon
        assert Salon._meta.swapped is None
    else:
        assert model is not Salon
        assert configured == "testapp.CustomSalon"
        assert Salon._meta.swapped == configured


def test_get_membership_model_returns_the_configured_model():
    configured = settings.SALON_INVITATIONS_MEMBERSHIP_MODEL
    model = get_membership_model()

    assert model._meta.label == configured
    assert issubclass(model, AbstractMembership)
    if configured == "salon_invitations.Membership":
        assert model is Membership
        assert Membership._meta.swapped is None
    else:
        assert model is not Membership
        assert configured == "testapp.CustomMembership"
        assert Membership._meta.swapped == configured


def test_foreign_keys_point_at_the_active_models():
    salon_model, membership_model = get_salon_model(), get_membership_model()

    assert Invitation._meta.get_field("salon").related_model is salon_model
    assert membership_model._meta.get_field("salon").related_model is salon_model


def test_salon_created_through_services_is_an_instance_of_the_active_model(salon):
    assert isinstance(salon, get_salon_model())
    assert get_salon_model()._default_manager.filter(pk=salon.pk).exists()


# __str__ --------------------------------------------------------------------------------------


def test_salon_str_is_its_name(salon):
    assert str(salon) == "Salon A"


def test_membership_str(salon, owner):
    membership = get_membership_model()._default_manager.get(salon=salon, user=owner)

    assert str(membership) == "owner — superuser @ Salon A"


def test_invitation_str(salon, requester):
    invitation = _pending(salon, requester, role="mechanic")

    assert str(invitation) == "requester → Salon A (mechanic, pending)"


# status_changed (MonitorField) ----------------------------------------------------------------


def test_status_changed_moves_when_the_invitation_is_decided(salon, owner, requester):
    invitation = services.create_invitation(user=requester, salon=salon, role="seller")
    long_ago = timezone.now() - timedelta(days=30)
    Invitation.objects.filter(pk=invitation.pk).update(status_changed=long_ago)

    services.approve_invitation(invitation, actor=owner)

    invitation.refresh_from_db()
    assert invitation.status == "approved"
    assert invitation.status_changed > long_ago
    assert abs(invitation.status_changed - invitation.decided_at) < timedelta(seconds=5)


def test_status_changed_stays_when_another_field_changes(salon, requester):
    invitation = _pending(salon, requester)
    long_ago = timezone.now() - timedelta(days=30)
    Invitation.objects.filter(pk=invitation.pk).update(status_changed=long_ago)
    invitation = Invitation.objects.get(pk=invitation.pk)

    invitation.message = "Hello"
    invitation.save()

    invitation.refresh_from_db()
    assert invitation.status_changed == long_ago
