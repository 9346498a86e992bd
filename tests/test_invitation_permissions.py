"""Who may see, decide, delete, cancel, change and remove (SPEC §2.5): the policy as a table."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import override_settings
from django.utils import timezone

from salon_invitations.models import Invitation, get_membership_model, get_salon_model
from salon_invitations.policies import RolePolicy, get_policy
from tests import factories

pytestmark = pytest.mark.django_db

ROLES = ("admin", "seller", "mechanic")

ACTORS = (
    "owner",
    "admin",
    "seller",
    "mechanic",
    "requester",
    "stranger",
    "staff",
    "superuser",
    "anonymous",
    "inactive_staff",
)


@dataclass
class World:
    """Salon A with an owner, an admin, a seller and a mechanic; salon B with its own owner."""

    salon: object
    other_salon: object
    users: dict

    def actor(self, kind):
        return AnonymousUser() if kind == "anonymous" else self.users[kind]

    def membership(self, kind, salon=None):
        return get_membership_model()._default_manager.get(
            salon=salon or self.salon, user=self.users[kind]
        )


@pytest.fixture
def world(salon, other_salon, owner, admin_member, seller_member, requester, staff):
    mechanic = factories.add_member(salon, factories.make_user("salon_mechanic"), "mechanic").user
    users = {
        "owner": owner,
        "admin": admin_member,
        "seller": seller_member,
        "mechanic": mechanic,
        "requester": requester,
        "stranger": factories.make_user("stranger"),
        "staff": staff,
        "superuser": factories.make_user("root", is_superuser=True),
        "inactive_staff": factories.make_user("retired", is_staff=True, is_active=False),
        "other_owner": other_salon.owner,
    }
    return World(salon=salon, other_salon=other_salon, users=users)


def invitation_to(salon, user, role):
    """A pending invitation saved directly: the policy does not care whether the role is free."""
    return Invitation.objects.create(salon=salon, user=user, role=role)


# can_decide / can_delete ----------------------------------------------------------------------

# actor -> (roles decidable in the actor's salon A, roles decidable in salon B)
DECIDES = {
    "owner": ({"admin", "seller", "mechanic"}, set()),
    "admin": ({"seller", "mechanic"}, set()),
    "seller": (set(), set()),
    "mechanic": (set(), set()),
    "requester": (set(), set()),
    "stranger": (set(), set()),
    "staff": ({"admin", "seller", "mechanic"}, {"admin", "seller", "mechanic"}),
    "superuser": ({"admin", "seller", "mechanic"}, {"admin", "seller", "mechanic"}),
    "anonymous": (set(), set()),
    "inactive_staff": (set(), set()),
}

DECISION_TABLE = [
    (actor, target, role, role in DECIDES[actor][target == "other"])
    for actor in ACTORS
    for target in ("same", "other")
    for role in ROLES
]


def test_the_decision_table_covers_every_actor():
    assert set(DECIDES) == set(ACTORS)
    assert len(DECISION_TABLE) == len(ACTORS) * 2 * len(ROLES)


@pytest.mark.parametrize(("actor", "target", "role", "expected"), DECISION_TABLE)
def test_can_decide_and_can_delete(world, actor, target, role, expected):
    salon = world.salon if target == "same" else world.other_salon
    invitation = invitation_to(salon, world.users["requester"], role)
    policy = get_policy()

    assert policy.can_decide(world.actor(actor), invitation) is expected
    assert policy.can_delete(world.actor(actor), invitation) is expected


def test_a_role_missing_from_the_table_is_decided_by_managers_only(world):
    invitation = invitation_to(world.salon, world.users["requester"], "retired-role")
    policy = get_policy()

    assert policy.can_decide(world.actor("admin"), invitation) is True
    assert policy.can_decide(world.actor("seller"), invitation) is False
    assert policy.can_decide(world.actor("stranger"), invitation) is False


# can_cancel: the requester only ---------------------------------------------------------------


@pytest.mark.parametrize(("actor", "expected"), [(a, a == "requester") for a in ACTORS])
def test_can_cancel(world, actor, expected):
    invitation = invitation_to(world.salon, world.users["requester"], "seller")

    assert get_policy().can_cancel(world.actor(actor), invitation) is expected


# can_change_salon: the owner or staff ---------------------------------------------------------

CHANGES_SALON = {"owner", "staff", "superuser"}


@pytest.mark.parametrize(("actor", "expected"), [(a, a in CHANGES_SALON) for a in ACTORS])
def test_can_change_salon(world, actor, expected):
    assert get_policy().can_change_salon(world.actor(actor), world.salon) is expected


def test_an_owner_cannot_change_another_salon(world):
    assert get_policy().can_change_salon(world.actor("owner"), world.other_salon) is False
    assert get_policy().can_change_salon(world.actor("other_owner"), world.other_salon) is True


# can_create_invitation / can_create_salon: authenticated, active users -------------------------

CREATES = {"owner", "admin", "seller", "mechanic", "requester", "stranger", "staff", "superuser"}


@pytest.mark.parametrize(("actor", "expected"), [(a, a in CREATES) for a in ACTORS])
def test_can_create(world, actor, expected):
    policy = get_policy()

    assert policy.can_create_invitation(world.actor(actor), world.salon, "seller") is expected
    assert policy.can_create_salon(world.actor(actor)) is expected


# can_remove_membership ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actor", "member", "where", "expected"),
    [
        # leaving a salon
        ("seller", "seller", "same", True),
        ("admin", "admin", "same", True),
        # a manager removes a lower rank
        ("owner", "admin", "same", True),
        ("owner", "seller", "same", True),
        ("admin", "seller", "same", True),
        ("admin", "mechanic", "same", True),
        # ... but not an equal or higher rank
        ("admin", "owner", "same", False),
        ("seller", "mechanic", "same", False),
        ("mechanic", "seller", "same", False),
        # ... nor a member of another salon
        ("other_owner", "seller", "same", False),
        ("owner", "other_owner", "other", False),
        # platform operators, strangers, anonymous
        ("staff", "seller", "same", True),
        ("superuser", "admin", "same", True),
        ("inactive_staff", "seller", "same", False),
        ("requester", "seller", "same", False),
        ("stranger", "mechanic", "same", False),
        ("anonymous", "seller", "same", False),
    ],
)
def test_can_remove_membership(world, actor, member, where, expected):
    target_salon = world.salon if where == "same" else world.other_salon
    membership = world.membership(member, target_salon)

    assert get_policy().can_remove_membership(world.actor(actor), membership) is expected


# visible_* querysets --------------------------------------------------------------------------


@pytest.fixture
def invitations(world):
    applicant = factories.make_user("applicant")
    return {
        "requester_to_a": invitation_to(world.salon, world.users["requester"], "seller"),
        "applicant_to_a": invitation_to(world.salon, applicant, "admin"),
        "requester_to_b": invitation_to(world.other_salon, world.users["requester"], "mechanic"),
    }


ALL_INVITATIONS = {"requester_to_a", "applicant_to_a", "requester_to_b"}


@pytest.mark.parametrize(
    ("actor", "expected"),
    [
        ("owner", {"requester_to_a", "applicant_to_a"}),
        ("admin", {"requester_to_a", "applicant_to_a"}),
        ("seller", set()),
        ("mechanic", set()),
        ("requester", {"requester_to_a", "requester_to_b"}),
        ("stranger", set()),
        ("staff", ALL_INVITATIONS),
        ("superuser", ALL_INVITATIONS),
        ("anonymous", set()),
        ("inactive_staff", set()),
        ("other_owner", {"requester_to_b"}),
    ],
)
def test_visible_invitations(world, invitations, actor, expected):
    visible = get_policy().visible_invitations(world.actor(actor), Invitation.objects.all())

    names = {name for name, inv in invitations.items() if inv in visible}
    assert names == expected
    assert visible.count() == len(expected)


def test_visible_invitations_keeps_the_callers_filters(world, invitations):
    queryset = Invitation.objects.filter(role="seller")

    visible = get_policy().visible_invitations(world.actor("owner"), queryset)

    assert list(visible) == [invitations["requester_to_a"]]


SALON_A_MEMBERS = {"owner", "admin", "seller", "mechanic"}


@pytest.mark.parametrize(
    ("actor", "expected"),
    [
        ("owner", SALON_A_MEMBERS),
        ("admin", SALON_A_MEMBERS),
        ("seller", SALON_A_MEMBERS),
        ("mechanic", SALON_A_MEMBERS),
        ("requester", set()),
        ("stranger", set()),
        ("staff", {*SALON_A_MEMBERS, "other_owner"}),
        ("superuser", {*SALON_A_MEMBERS, "other_owner"}),
        ("anonymous", set()),
        ("inactive_staff", set()),
        ("other_owner", {"other_owner"}),
    ],
)
def test_visible_memberships(world, actor, expected):
    queryset = get_membership_model()._default_manager.all()

    visible = get_policy().visible_memberships(world.actor(actor), queryset)

    by_user = {user.pk: kind for kind, user in world.users.items()}
    assert {by_user[user_id] for user_id in visible.values_list("user_id", flat=True)} == expected
    assert visible.count() == len(expected)


@pytest.mark.parametrize(
    ("actor", "sees_salons"), [(a, a != "anonymous") for a in (*ACTORS, "other_owner")]
)
def test_visible_salons(world, actor, sees_salons):
    queryset = get_salon_model()._default_manager.all()

    visible = set(get_policy().visible_salons(world.actor(actor), queryset))

    assert visible == ({world.salon, world.other_salon} if sees_salons else set())


# recipients -----------------------------------------------------------------------------------


def test_recipients_are_the_requester_and_the_salons_managers(world):
    recipients = get_policy().recipients(world.salon.pk, world.users["requester"].pk)

    assert recipients == {
        world.users["requester"].pk,
        world.users["owner"].pk,
        world.users["admin"].pk,
    }


# PERMISSION_POLICY swaps the class ------------------------------------------------------------


class DenyEverything(RolePolicy):
    """Sees what RolePolicy sees, may do nothing."""

    def can_create_invitation(self, user, salon, role):
        return False

    def can_decide(self, user, invitation):
        return False

    def can_cancel(self, user, invitation):
        return False

    def can_delete(self, user, invitation):
        return False

    def can_create_salon(self, user):
        return False

    def can_change_salon(self, user, salon):
        return False

    def can_remove_membership(self, user, membership):
        return False


DENY = {"PERMISSION_POLICY": "tests.test_invitation_permissions.DenyEverything"}


def approve_url(invitation):
    return f"/api/invitation_to_auto_salon/{invitation.pk}/approved"


def test_permission_policy_setting_selects_the_class():
    assert type(get_policy()) is RolePolicy
    with override_settings(SALON_INVITATIONS=DENY):
        assert type(get_policy()) is DenyEverything
    assert type(get_policy()) is RolePolicy


def test_a_swapped_policy_is_used_by_the_api(world, api):
    owner = world.users["other_owner"]
    invitation = factories.make_invitation(world.other_salon, world.users["requester"], "admin")

    with override_settings(SALON_INVITATIONS=DENY):
        response = api(owner).patch(approve_url(invitation))

    assert response.status_code == 403
    invitation.refresh_from_db()
    assert invitation.status == "pending"
    assert invitation.decided_at is None
    memberships = get_membership_model()._default_manager
    assert not memberships.filter(user=world.users["requester"]).exists()


def test_the_default_policy_lets_the_owner_approve_through_the_api(world, api):
    owner = world.users["other_owner"]
    invitation = factories.make_invitation(world.other_salon, world.users["requester"], "admin")
    before = timezone.now()

    response = api(owner).patch(approve_url(invitation))

    assert response.status_code == 200
    assert response.json()["status"] == "approved"
    invitation.refresh_from_db()
    assert invitation.status == "approved"
    assert invitation.decided_at >= before
    memberships = get_membership_model()._default_manager
    assert memberships.get(user=world.users["requester"], salon=world.other_salon).role == "admin"


def test_an_admin_of_one_salon_cannot_approve_for_another(world, api):
    """The original app's bug: any admin of *some* salon could approve anywhere."""
    invitation = factories.make_invitation(world.other_salon, world.users["requester"], "seller")

    response = api(world.users["admin"]).patch(approve_url(invitation))

    assert response.status_code == 404  # not even visible
    invitation.refresh_from_db()
    assert invitation.status == "pending"


def test_an_admin_cannot_approve_an_invitation_for_an_equal_rank(world, api):
    invitation = invitation_to(world.salon, world.users["requester"], "admin")

    response = api(world.users["admin"]).patch(approve_url(invitation))

    assert response.status_code == 403  # visible to the admin, but not theirs to decide
    invitation.refresh_from_db()
    assert invitation.status == "pending"
