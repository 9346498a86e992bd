"""After joining (SPEC §8): role changes, ownership transfer, approving as another role."""

from __future__ import annotations

from typing import Any

import pytest

from salon_invitations import services
from salon_invitations.exceptions import Conflict
from salon_invitations.models import Invitation, get_membership_model, get_salon_model
from salon_invitations.notifications import BaseBackend
from salon_invitations.signals import membership_updated, ownership_transferred
from tests import factories

RECORDING = "tests.test_members.RecordingBackend"
ROLES = "/api/salon_role"
SALONS = "/api/auto_salon"
INVITATIONS = "/api/invitation_to_auto_salon"


class RecordingBackend(BaseBackend):
    events: list[Any] = []

    def send(self, event: Any) -> None:
        RecordingBackend.events.append(event)


@pytest.fixture
def recorded(settings, django_capture_on_commit_callbacks):
    RecordingBackend.events = []
    settings.SALON_INVITATIONS = {"NOTIFICATION_BACKENDS": [RECORDING]}
    return RecordingBackend.events


def membership_of(salon: Any, user: Any) -> Any:
    return get_membership_model()._default_manager.get(salon=salon, user=user)


def role_of(salon: Any, user: Any) -> str:
    return membership_of(salon, user).role


# §8.1 Changing a member's role -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "target", "new_role", "status"),
    [
        ("owner", "seller", "mechanic", 200),
        ("owner", "seller", "admin", 409),  # the admin role is held (one holder)
        ("owner", "admin", "mechanic", 200),
        ("admin", "seller", "mechanic", 200),
        ("admin", "seller", "admin", 403),  # not ranked below the admin's own role
        ("admin", "admin", "seller", 403),  # nobody changes their own role
        ("seller", "seller", "mechanic", 403),
        ("staff", "seller", "mechanic", 200),
        ("other_owner", "seller", "mechanic", 404),  # not a member: cannot see it
    ],
)
def test_who_changes_which_role(
    api,
    salon,
    owner,
    admin_member,
    seller_member,
    staff,
    other_salon,
    who,
    target,
    new_role,
    status,
):
    users = {
        "owner": owner,
        "admin": admin_member,
        "seller": seller_member,
        "staff": staff,
        "other_owner": other_salon.owner,
    }
    membership = membership_of(salon, users[target])
    before = membership.role

    response = api(users[who]).patch(f"{ROLES}/{membership.pk}", {"role": new_role})

    assert response.status_code == status, response.content
    membership.refresh_from_db()
    assert membership.role == (new_role if status == 200 else before)
    if status == 409:
        assert response.json()["code"] == "role_taken"


def test_a_role_change_is_announced_with_the_previous_role(
    api, salon, owner, seller_member, recorded, django_capture_on_commit_callbacks
):
    received = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        received.append(kwargs)

    membership_updated.connect(receiver, dispatch_uid="test-members")
    membership = membership_of(salon, seller_member)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = api(owner).patch(f"{ROLES}/{membership.pk}", {"role": "mechanic"})
    finally:
        membership_updated.disconnect(dispatch_uid="test-members")

    assert response.status_code == 200
    assert response.json()["role"] == "mechanic"
    (event,) = recorded
    assert (event.kind, event.extra) == ("membership.updated", {"previous_role": "seller"})
    assert event.recipients >= {owner.pk, seller_member.pk}
    (signal,) = received
    assert (signal["previous_role"], signal["membership"].role) == ("seller", "mechanic")


def test_the_frame_and_the_log_carry_the_previous_role(salon, owner, seller_member):
    from salon_invitations.models import SalonEvent

    services.change_role(membership_of(salon, seller_member), role="mechanic", actor=owner)
    row = SalonEvent.objects.get(kind="membership.updated")
    frame = row.frame
    assert frame["id"] == row.id
    assert frame["type"] == "membership.updated"
    assert frame["membership"]["role"] == "mechanic"
    assert frame["previous_role"] == "seller"
    assert (row.salon_id, row.user_id, row.actor_id) == (salon.pk, seller_member.pk, owner.pk)


@pytest.mark.parametrize("role", ["superuser", "chef", "", 3, None])
def test_the_new_role_must_be_requestable(api, salon, owner, seller_member, role):
    membership = membership_of(salon, seller_member)
    response = api(owner).patch(f"{ROLES}/{membership.pk}", {"role": role}, format="json")
    assert response.status_code == 400
    assert "role" in response.json()
    assert role_of(salon, seller_member) == "seller"


def test_the_owners_membership_is_changed_only_by_a_transfer(api, salon, owner, staff):
    membership = membership_of(salon, owner)
    response = api(staff).patch(f"{ROLES}/{membership.pk}", {"role": "admin"})
    assert response.status_code == 409
    assert response.json()["code"] == "owner_membership"
    assert role_of(salon, owner) == "superuser"


def test_staff_do_not_change_their_own_role_either(api, salon, staff):
    membership = factories.add_member(salon, staff, role="seller")
    assert api(staff).patch(f"{ROLES}/{membership.pk}", {"role": "mechanic"}).status_code == 403


def test_the_same_role_again_changes_and_announces_nothing(salon, owner, seller_member, recorded):
    membership = membership_of(salon, seller_member)
    services.change_role(membership, role="seller", actor=owner)
    assert recorded == []


# §8.2 Transferring ownership ---------------------------------------------------------------------


def test_the_owner_hands_the_salon_to_a_member(
    api, salon, owner, admin_member, recorded, django_capture_on_commit_callbacks
):
    received = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        received.append(kwargs)

    ownership_transferred.connect(receiver, dispatch_uid="test-members")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = api(owner).post(f"{SALONS}/{salon.pk}/transfer", {"user": admin_member.pk})
    finally:
        ownership_transferred.disconnect(dispatch_uid="test-members")

    assert response.status_code == 200, response.content
    assert response.json()["owner"] == admin_member.pk
    salon.refresh_from_db()
    assert salon.owner_id == admin_member.pk
    assert (role_of(salon, admin_member), role_of(salon, owner)) == ("superuser", "admin")
    assert sorted(
        (e.kind, e.instance.user_id, e.extra["previous_role"]) for e in recorded
    ) == sorted(
        [
            ("membership.updated", admin_member.pk, "admin"),
            ("membership.updated", owner.pk, "superuser"),
        ]
    )
    (signal,) = received
    assert (signal["previous_owner"], signal["new_owner"], signal["actor"]) == (
        owner,
        admin_member,
        owner,
    )
    # The new owner's membership cannot be removed; the previous owner may now leave.
    with pytest.raises(Conflict):
        services.remove_membership(membership_of(salon, admin_member), actor=admin_member)
    services.remove_membership(membership_of(salon, owner), actor=owner)


def test_the_previous_owner_takes_the_role_given(api, salon, owner, seller_member):
    response = api(owner).post(
        f"{SALONS}/{salon.pk}/transfer",
        {"user": seller_member.pk, "previous_owner_role": "seller"},
    )
    assert response.status_code == 200, response.content
    # The seller's role was freed by the new owner: the previous owner fits in it.
    assert (role_of(salon, seller_member), role_of(salon, owner)) == ("superuser", "seller")


def test_a_transfer_into_a_full_role_is_409_and_changes_nothing(
    api, salon, owner, admin_member, seller_member
):
    response = api(owner).post(f"{SALONS}/{salon.pk}/transfer", {"user": seller_member.pk})
    assert response.status_code == 409
    assert response.json()["code"] == "role_taken"
    salon.refresh_from_db()
    assert salon.owner_id == owner.pk
    assert (role_of(salon, owner), role_of(salon, seller_member)) == ("superuser", "seller")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user": "stranger"}, "user"),
        ({"user": "owner"}, "user"),
        ({"user": 999_999}, "user"),
        ({"user": True}, "user"),
        ({}, "user"),
        ({"user": "seller", "previous_owner_role": "superuser"}, "previous_owner_role"),
        ({"user": "seller", "previous_owner_role": "chef"}, "previous_owner_role"),
    ],
)
def test_a_bad_transfer_is_a_400_naming_the_field(api, salon, owner, seller_member, body, field):
    users = {
        "stranger": factories.make_user("stranger").pk,
        "owner": owner.pk,
        "seller": seller_member.pk,
    }
    if isinstance(body.get("user"), str):
        body = {**body, "user": users[body["user"]]}
    response = api(owner).post(f"{SALONS}/{salon.pk}/transfer", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    salon.refresh_from_db()
    assert salon.owner_id == owner.pk


@pytest.mark.parametrize(("who", "status"), [("admin", 403), ("seller", 403), ("staff", 200)])
def test_only_the_owner_or_staff_transfer(
    api, salon, owner, admin_member, seller_member, staff, who, status
):
    users = {"admin": admin_member, "seller": seller_member, "staff": staff}
    response = api(users[who]).post(
        f"{SALONS}/{salon.pk}/transfer",
        {"user": seller_member.pk, "previous_owner_role": "mechanic"},
    )
    assert response.status_code == status, response.content


# §8.3 Approving as another role -----------------------------------------------------------------


def test_a_request_is_approved_as_another_role(api, salon, owner, requester):
    invitation = factories.make_invitation(salon, requester, role="seller")

    response = api(owner).patch(f"{INVITATIONS}/{invitation.pk}/approved", {"role": "mechanic"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["role"], body["requested_role"]) == (
        "approved",
        "mechanic",
        "seller",
    )
    assert role_of(salon, requester) == "mechanic"


def test_the_granted_role_must_be_one_the_decider_outranks(api, salon, admin_member, requester):
    invitation = factories.make_invitation(salon, requester, role="seller")
    response = api(admin_member).patch(f"{INVITATIONS}/{invitation.pk}/approved", {"role": "admin"})
    assert response.status_code == 403
    invitation.refresh_from_db()
    assert (invitation.status, invitation.role) == ("pending", "seller")


@pytest.mark.parametrize("role", ["superuser", "chef", 7])
def test_the_granted_role_must_be_requestable(api, salon, owner, requester, role):
    invitation = factories.make_invitation(salon, requester, role="seller")
    response = api(owner).patch(
        f"{INVITATIONS}/{invitation.pk}/approved", {"role": role}, format="json"
    )
    assert response.status_code == 400
    assert "role" in response.json()
    invitation.refresh_from_db()
    assert invitation.status == "pending"


def test_a_granted_role_that_is_full_rejects_the_request(
    api, salon, owner, seller_member, requester
):
    invitation = factories.make_invitation(salon, requester, role="mechanic")
    response = api(owner).patch(f"{INVITATIONS}/{invitation.pk}/approved", {"role": "seller"})
    assert response.status_code == 409
    assert response.json()["code"] == "role_taken"
    invitation.refresh_from_db()
    assert invitation.status == "rejected"
    assert not get_membership_model()._default_manager.filter(salon=salon, user=requester).exists()


def test_approving_without_a_role_grants_the_one_asked_for(api, salon, owner, requester):
    invitation = factories.make_invitation(salon, requester, role="seller")
    response = api(owner).patch(f"{INVITATIONS}/{invitation.pk}/approved")
    assert response.status_code == 200
    assert (response.json()["role"], response.json()["requested_role"]) == ("seller", "seller")


def test_requested_role_is_what_was_asked(salon, requester):
    invitation = factories.make_invitation(salon, requester, role="mechanic")
    assert Invitation.objects.get(pk=invitation.pk).requested_role == "mechanic"
    assert get_salon_model()._default_manager.filter(pk=salon.pk).exists()


def test_an_inactive_member_cannot_take_the_salon(api, salon, owner, admin_member):
    type(admin_member).objects.filter(pk=admin_member.pk).update(is_active=False)
    response = api(owner).post(f"{SALONS}/{salon.pk}/transfer", {"user": admin_member.pk})
    assert response.status_code == 409
    assert response.json()["code"] == "inactive_user"
    salon.refresh_from_db()
    assert salon.owner_id == owner.pk


def test_the_previous_owner_keeps_the_highest_role_below_the_owners(api, salon, owner, settings):
    roles = {
        "boss": {"rank": 30, "limit": 1, "requestable": False, "manages": True},
        "deputy": {"rank": 20, "limit": 1, "requestable": True, "manages": True},
        "clerk": {"rank": 10, "limit": None, "requestable": True, "manages": False},
    }
    settings.SALON_INVITATIONS = {"ROLES": roles, "OWNER_ROLE": "boss"}
    membership_of(salon, owner).__class__._default_manager.filter(salon=salon).update(role="boss")
    heir = factories.add_member(salon, factories.make_user("heir"), role="clerk").user

    response = api(owner).post(f"{SALONS}/{salon.pk}/transfer", {"user": heir.pk})

    assert response.status_code == 200, response.content
    assert (role_of(salon, heir), role_of(salon, owner)) == ("boss", "deputy")


def test_a_refused_approval_as_another_role_keeps_the_role_asked_for(
    salon, owner, seller_member, requester
):
    invitation = factories.make_invitation(salon, requester, role="mechanic")
    with pytest.raises(Conflict):
        services.approve_invitation(invitation, actor=owner, role="seller")
    invitation.refresh_from_db()
    assert (invitation.status, invitation.role, invitation.requested_role) == (
        "rejected",
        "mechanic",
        "mechanic",
    )


# Rights lost while waiting for the lock ---------------------------------------------------------


def _demote(salon: Any, user: Any, role: str = "seller") -> Any:
    return lambda: (
        get_membership_model()._default_manager.filter(salon=salon, user=user).update(role=role)
    )


def test_a_manager_demoted_meanwhile_cannot_approve(api, salon, admin_member, requester):
    invitation = factories.make_invitation(salon, requester, role="mechanic")
    with factories.before_the_lock(_demote(salon, admin_member, "seller")):
        response = api(admin_member).patch(f"{INVITATIONS}/{invitation.pk}/approved")
    assert response.status_code == 403, response.content
    invitation.refresh_from_db()
    assert invitation.status == "pending"


def test_a_manager_demoted_meanwhile_cannot_remove_a_member(api, salon, admin_member):
    mechanic = factories.add_member(salon, factories.make_user("mech"), role="mechanic")
    with factories.before_the_lock(_demote(salon, admin_member, "seller")):
        response = api(admin_member).delete(f"{ROLES}/{mechanic.pk}")
    assert response.status_code == 403, response.content
    assert get_membership_model()._default_manager.filter(pk=mechanic.pk).exists()


def test_a_manager_demoted_meanwhile_cannot_change_roles(api, salon, admin_member, seller_member):
    membership = membership_of(salon, seller_member)
    with factories.before_the_lock(_demote(salon, admin_member, "mechanic")):
        response = api(admin_member).patch(f"{ROLES}/{membership.pk}", {"role": "mechanic"})
    assert response.status_code == 403, response.content
    assert role_of(salon, seller_member) == "seller"


def test_a_manager_demoted_meanwhile_cannot_invite(api, salon, admin_member):
    with factories.before_the_lock(_demote(salon, admin_member, "seller")):
        response = api(admin_member).post(
            f"{INVITATIONS}/invite", {"salon": salon.pk, "role": "mechanic", "email": "x@y.com"}
        )
    assert response.status_code == 403, response.content
    assert not Invitation.objects.filter(direction="invite").exists()


def test_an_owner_who_handed_the_salon_on_meanwhile_cannot_transfer_it(
    api, salon, owner, admin_member, seller_member
):
    def handed_on() -> None:
        get_salon_model()._default_manager.filter(pk=salon.pk).update(owner=admin_member)
        _demote(salon, owner, "admin")()
        _demote(salon, admin_member, "superuser")()

    with factories.before_the_lock(handed_on):
        response = api(owner).post(
            f"{SALONS}/{salon.pk}/transfer",
            {"user": seller_member.pk, "previous_owner_role": "mechanic"},
        )
    assert response.status_code == 403, response.content
    # (The stand-in for the concurrent transfer ran inside the refused one's transaction and
    # was rolled back with it: what matters is that the seller did not get the salon.)
    salon.refresh_from_db()
    assert salon.owner_id != seller_member.pk
    assert role_of(salon, seller_member) == "seller"
