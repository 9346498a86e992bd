"""The HTTP API (SPEC §2 and §3), through the seed's paths and the router layout."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from salon_invitations import services
from salon_invitations.conf import DEFAULTS
from salon_invitations.models import Invitation, get_membership_model, get_salon_model
from salon_invitations.policies import RolePolicy
from tests import factories

pytestmark = pytest.mark.django_db

INVITATIONS = "/api/invitation_to_auto_salon"
SALONS = "/api/auto_salon"
ROLES = "/api/salon_role"
ROUTER = "/router"

MSG_ALREADY_DECIDED = "This invitation has already been decided."
MSG_ROLE_TAKEN = "This role is already taken in this salon."
MSG_ALREADY_MEMBER = "The user is already a member of this salon."
MSG_OWNER_MEMBERSHIP = "The owner's membership cannot be removed while the salon exists."

INVITATION_FIELDS = {
    "id",
    "direction",
    "email",
    "requested_role",
    "invited_by",
    "user",
    "salon",
    "role",
    "status",
    "message",
    "reason",
    "decided_by",
    "decided_at",
    "expires_at",
    "created_at",
    "updated_at",
}


def detail(pk):
    return f"{INVITATIONS}/{pk}"


def approve(pk):
    return f"{INVITATIONS}/{pk}/approved"


def reject(pk):
    return f"{INVITATIONS}/{pk}/rejected"


def cancel(pk):
    return f"{INVITATIONS}/{pk}/cancelled"


def delete(pk):
    return f"{INVITATIONS}/delete/invitation/{pk}"


def status_of(invitation):
    return Invitation.objects.get(pk=invitation.pk).status


def memberships(salon, **filters):
    return get_membership_model()._default_manager.filter(salon=salon, **filters)


def ids(response):
    return {item["id"] for item in response.json()["results"]}


def assert_decided(body, invitation, *, status, by):
    """The response shows the decision, and the database holds the same one."""
    stored = Invitation.objects.get(pk=invitation.pk)
    assert body["id"] == invitation.pk
    assert body["status"] == status == stored.status
    assert body["decided_by"] == by.pk == stored.decided_by_id
    assert stored.decided_at is not None
    assert parse_datetime(body["decided_at"]) == stored.decided_at
    assert timezone.now() - stored.decided_at < timedelta(minutes=1)


@pytest.fixture
def invitation(salon, requester):
    """``requester`` asks to become a seller of ``salon``."""
    return factories.make_invitation(salon=salon, user=requester, role="seller", message="hi")


@pytest.fixture
def outsider(db):
    return factories.make_user("outsider")


# Anonymous callers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "{inv}"),
        ("post", "{inv}"),
        ("get", "{inv}/{pk}"),
        ("patch", "{inv}/{pk}/approved"),
        ("patch", "{inv}/{pk}/rejected"),
        ("patch", "{inv}/{pk}/cancelled"),
        ("delete", "{inv}/delete/invitation/{pk}"),
        ("get", "{salons}"),
        ("post", "{salons}"),
        ("get", "{salons}/{salon}"),
        ("put", "{salons}/{salon}"),
        ("patch", "{salons}/{salon}"),
        ("delete", "{salons}/{salon}"),
        ("get", "{roles}"),
        ("get", "{roles}/{membership}"),
        ("delete", "{roles}/{membership}"),
        ("get", "/router/invitations/"),
        ("patch", "/router/invitations/{pk}/approve/"),
    ],
)
def test_anonymous_requests_get_401_and_change_nothing(api, invitation, salon, method, path):
    owner_membership = memberships(salon).get()
    url = path.format(
        inv=INVITATIONS,
        salons=SALONS,
        roles=ROLES,
        pk=invitation.pk,
        salon=salon.pk,
        membership=owner_membership.pk,
    )
    body = {"salon": salon.pk, "role": "mechanic", "name": "Renamed"}
    kwargs = {} if method == "get" else {"data": body, "format": "json"}

    response = getattr(api(), method)(url, **kwargs)

    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication credentials were not provided."}
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert Invitation.objects.count() == 1
    assert status_of(invitation) == "pending"
    assert get_salon_model()._default_manager.get(pk=salon.pk).name == "Salon A"
    assert get_salon_model()._default_manager.count() == 1
    assert memberships(salon).count() == 1


# Creating an invitation ------------------------------------------------------------------------


def test_requester_creates_a_pending_invitation(api, requester, salon):
    response = api(requester).post(
        INVITATIONS, {"salon": salon.pk, "role": "seller", "message": "Hello"}, format="json"
    )

    assert response.status_code == 201
    body = response.json()
    assert set(body) == INVITATION_FIELDS
    stored = Invitation.objects.get()
    assert body["id"] == stored.pk
    assert body["user"] == requester.pk == stored.user_id
    assert body["salon"] == salon.pk == stored.salon_id
    assert body["role"] == "seller" == stored.role
    assert body["status"] == "pending" == stored.status
    assert body["message"] == "Hello" == stored.message
    assert body["reason"] == ""
    assert body["decided_by"] is None
    assert body["decided_at"] is None
    assert body["expires_at"] is None
    assert parse_datetime(body["created_at"]) == stored.created
    assert parse_datetime(body["updated_at"]) == stored.modified


def test_message_is_optional(api, requester, salon):
    response = api(requester).post(
        INVITATIONS, {"salon": salon.pk, "role": "mechanic"}, format="json"
    )

    assert response.status_code == 201
    assert response.json()["message"] == ""
    assert Invitation.objects.get().message == ""


def test_client_cannot_set_requester_status_or_decision(api, requester, salon, owner, outsider):
    response = api(requester).post(
        INVITATIONS,
        {
            "salon": salon.pk,
            "role": "seller",
            "user": outsider.pk,
            "status": "approved",
            "decided_by": owner.pk,
            "decided_at": "2020-01-01T00:00:00Z",
            "reason": "forged",
        },
        format="json",
    )

    assert response.status_code == 201
    body = response.json()
    assert (body["user"], body["status"], body["decided_by"], body["decided_at"]) == (
        requester.pk,
        "pending",
        None,
        None,
    )
    assert body["reason"] == ""
    stored = Invitation.objects.get()
    assert (stored.user_id, stored.status, stored.decided_by_id, stored.decided_at) == (
        requester.pk,
        "pending",
        None,
        None,
    )
    assert stored.reason == ""
    assert not memberships(salon, user=requester).exists()


def _post_and_expect_400(client, data, field, **kwargs):
    before = Invitation.objects.count()
    response = client.post(INVITATIONS, data, **kwargs)
    assert response.status_code == 400, response.content
    if field is not None:
        assert field in response.json(), response.json()
        assert response.json()[field], response.json()
    assert Invitation.objects.count() == before
    return response.json()


def test_role_taken_at_creation_is_400_on_role(api, requester, salon, seller_member):
    body = _post_and_expect_400(
        api(requester), {"salon": salon.pk, "role": "seller"}, "role", format="json"
    )

    assert body == {"role": [MSG_ROLE_TAKEN]}


def test_member_cannot_ask_to_join_their_salon_again(api, salon, seller_member):
    body = _post_and_expect_400(
        api(seller_member), {"salon": salon.pk, "role": "mechanic"}, "salon", format="json"
    )

    assert body == {"salon": [MSG_ALREADY_MEMBER]}


def test_owner_cannot_ask_to_join_their_own_salon(api, owner, salon):
    _post_and_expect_400(api(owner), {"salon": salon.pk, "role": "admin"}, "salon", format="json")


def test_second_pending_invitation_to_the_same_salon_is_400(api, requester, salon, invitation):
    _post_and_expect_400(
        api(requester), {"salon": salon.pk, "role": "mechanic"}, "salon", format="json"
    )

    assert Invitation.objects.get().pk == invitation.pk


def test_a_decided_invitation_does_not_block_a_new_one(api, owner, requester, salon, invitation):
    assert api(owner).patch(reject(invitation.pk)).status_code == 200

    response = api(requester).post(
        INVITATIONS, {"salon": salon.pk, "role": "seller"}, format="json"
    )

    assert response.status_code == 201
    assert Invitation.objects.filter(user=requester, salon=salon).count() == 2


@pytest.mark.parametrize("role", ["superuser", "janitor", "", "SELLER", 123, None, ["seller"], {}])
def test_role_must_be_a_requestable_role(api, requester, salon, role):
    _post_and_expect_400(api(requester), {"salon": salon.pk, "role": role}, "role", format="json")


@pytest.mark.parametrize("salon_pk", [999_999, "abc", [], {}, None, True, 10**30, -1, "", 1.5])
def test_salon_must_be_an_existing_salon_pk(api, requester, salon, salon_pk):
    _post_and_expect_400(
        api(requester), {"salon": salon_pk, "role": "seller"}, "salon", format="json"
    )


def test_salon_and_role_are_required(api, requester):
    body = _post_and_expect_400(api(requester), {}, "salon", format="json")

    assert "role" in body


def test_message_longer_than_the_limit_is_400(api, requester, salon):
    _post_and_expect_400(
        api(requester),
        {"salon": salon.pk, "role": "seller", "message": "x" * 5000},
        "message",
        format="json",
    )


def test_message_at_the_limit_is_accepted(api, requester, salon):
    response = api(requester).post(
        INVITATIONS, {"salon": salon.pk, "role": "seller", "message": "x" * 1000}, format="json"
    )

    assert response.status_code == 201
    assert len(Invitation.objects.get().message) == 1000


@pytest.mark.parametrize("message", ["nul \x00 here", ["a"], {"a": 1}, None])
def test_message_must_be_text_without_nul(api, requester, salon, message):
    _post_and_expect_400(
        api(requester),
        {"salon": salon.pk, "role": "seller", "message": message},
        "message",
        format="json",
    )


def test_malformed_json_is_400(api, requester, salon):
    body = _post_and_expect_400(
        api(requester), '{"salon": 1,', "detail", content_type="application/json"
    )

    assert "JSON parse error" in body["detail"]


def test_json_list_body_is_400(api, requester, salon):
    body = _post_and_expect_400(
        api(requester),
        [{"salon": salon.pk, "role": "seller"}],
        "non_field_errors",
        format="json",
    )

    assert "Expected a dictionary" in body["non_field_errors"][0]


# Listing and retrieving: who sees what ------------------------------------------------------------


@pytest.fixture
def three_invitations(salon, other_salon, requester):
    """Two invitations to ``salon`` (one by ``requester``), one to ``other_salon``."""
    return (
        factories.make_invitation(salon=salon, user=requester, role="mechanic"),
        factories.make_invitation(salon=salon, role="admin"),
        factories.make_invitation(salon=other_salon, role="seller"),
    )


def test_requester_sees_only_their_own_invitations(api, requester, three_invitations):
    own, _, _ = three_invitations

    response = api(requester).get(INVITATIONS)

    assert response.status_code == 200
    assert response.json()["count"] == 1
    assert ids(response) == {own.pk}
    assert set(response.json()["results"][0]) == INVITATION_FIELDS


@pytest.mark.parametrize("manager", ["owner", "admin_member"])
def test_managers_see_their_salons_invitations(api, request, manager, three_invitations):
    user = request.getfixturevalue(manager)
    first, second, _ = three_invitations

    response = api(user).get(INVITATIONS)

    assert response.status_code == 200
    assert response.json()["count"] == 2
    assert ids(response) == {first.pk, second.pk}


def test_seller_does_not_see_other_peoples_invitations(api, seller_member, three_invitations):
    response = api(seller_member).get(INVITATIONS)

    assert response.status_code == 200
    assert response.json()["count"] == 0
    assert response.json()["results"] == []


def test_staff_see_all_invitations(api, staff, three_invitations):
    response = api(staff).get(INVITATIONS)

    assert response.status_code == 200
    assert ids(response) == {invitation.pk for invitation in three_invitations}


@pytest.mark.parametrize("viewer", ["requester", "owner", "admin_member", "staff"])
def test_retrieve_a_visible_invitation(api, request, viewer, invitation, salon):
    response = api(request.getfixturevalue(viewer)).get(detail(invitation.pk))

    assert response.status_code == 200
    body = response.json()
    assert set(body) == INVITATION_FIELDS
    assert body["id"] == invitation.pk
    assert body["user"] == invitation.user_id
    assert body["salon"] == salon.pk
    assert body["role"] == "seller"
    assert body["status"] == "pending"
    assert body["message"] == "hi"


@pytest.mark.parametrize("viewer", ["seller_member", "outsider"])
def test_invisible_invitation_is_404_not_403(api, request, viewer, invitation):
    response = api(request.getfixturevalue(viewer)).get(detail(invitation.pk))

    assert response.status_code == 404
    assert response.json() == {"detail": "No Invitation matches the given query."}


def test_unknown_invitation_is_404(api, staff):
    assert api(staff).get(detail(999_999)).status_code == 404
    assert api(staff).get(detail(10**30)).status_code == 404
    assert api(staff).patch(approve(10**30)).status_code == 404


# Deciding ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("decider", ["owner", "admin_member", "staff"])
def test_approve_creates_the_membership(api, request, decider, invitation, salon, requester):
    user = request.getfixturevalue(decider)

    response = api(user).patch(approve(invitation.pk))

    assert response.status_code == 200
    assert set(response.json()) == INVITATION_FIELDS
    assert_decided(response.json(), invitation, status="approved", by=user)
    assert memberships(salon, user=requester).get().role == "seller"


def test_reject_with_a_reason(api, owner, invitation, salon, requester):
    response = api(owner).patch(reject(invitation.pk), {"reason": "No vacancy"}, format="json")

    assert response.status_code == 200
    assert_decided(response.json(), invitation, status="rejected", by=owner)
    assert response.json()["reason"] == "No vacancy"
    assert Invitation.objects.get(pk=invitation.pk).reason == "No vacancy"
    assert not memberships(salon, user=requester).exists()


def test_reject_without_a_body(api, admin_member, invitation):
    response = api(admin_member).patch(reject(invitation.pk))

    assert response.status_code == 200
    assert_decided(response.json(), invitation, status="rejected", by=admin_member)
    assert response.json()["reason"] == ""


def test_reject_with_an_oversized_reason_is_400_and_stays_pending(api, owner, invitation):
    response = api(owner).patch(reject(invitation.pk), {"reason": "x" * 5000}, format="json")

    assert response.status_code == 400
    assert "reason" in response.json()
    stored = Invitation.objects.get(pk=invitation.pk)
    assert (stored.status, stored.reason, stored.decided_by_id) == ("pending", "", None)


def test_requester_cancels_their_invitation(api, requester, invitation, salon):
    response = api(requester).patch(cancel(invitation.pk))

    assert response.status_code == 200
    assert_decided(response.json(), invitation, status="cancelled", by=requester)
    assert not memberships(salon, user=requester).exists()


@pytest.mark.parametrize("manager", ["owner", "staff"])
def test_only_the_requester_cancels(api, request, manager, invitation):
    response = api(request.getfixturevalue(manager)).patch(cancel(invitation.pk))

    assert response.status_code == 403
    assert status_of(invitation) == "pending"


@pytest.mark.parametrize("decider", ["owner", "admin_member", "staff"])
def test_delete_a_pending_invitation(api, request, decider, invitation):
    response = api(request.getfixturevalue(decider)).delete(delete(invitation.pk))

    assert response.status_code == 204
    assert response.content == b""
    assert not Invitation.objects.filter(pk=invitation.pk).exists()


@pytest.mark.parametrize("url", [approve, reject, delete])
def test_requester_cannot_decide_their_own_invitation(api, requester, invitation, salon, url):
    client = api(requester)
    response = (
        client.delete(url(invitation.pk)) if url is delete else client.patch(url(invitation.pk))
    )

    assert response.status_code == 403
    assert response.json() == {
        "detail": "You do not have permission to perform this action on this object."
    }
    assert status_of(invitation) == "pending"
    assert not memberships(salon, user=requester).exists()


def test_seller_cannot_delete_an_invitation_they_can_see(api, seller_member, other_salon):
    # The seller sees their own invitation to another salon, but only its managers delete it.
    own = factories.make_invitation(salon=other_salon, user=seller_member, role="mechanic")

    response = api(seller_member).delete(delete(own.pk))

    assert response.status_code == 403
    assert status_of(own) == "pending"


@pytest.mark.parametrize("url", [approve, reject, cancel, delete])
def test_members_who_do_not_manage_get_404(api, seller_member, salon, url):
    invitation = factories.make_invitation(salon=salon, role="mechanic")
    client = api(seller_member)
    response = (
        client.delete(url(invitation.pk)) if url is delete else client.patch(url(invitation.pk))
    )

    assert response.status_code == 404
    assert status_of(invitation) == "pending"


# Rank -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["seller", "mechanic"])
def test_admin_decides_roles_ranked_below_admin(api, admin_member, salon, role):
    to_approve = factories.make_invitation(salon=salon, role=role)
    to_reject = factories.make_invitation(salon=salon, role=role)

    assert api(admin_member).patch(approve(to_approve.pk)).status_code == 200
    assert api(admin_member).patch(reject(to_reject.pk)).status_code == 200

    assert status_of(to_approve) == "approved"
    assert status_of(to_reject) == "rejected"
    assert memberships(salon, user=to_approve.user).get().role == role


@pytest.fixture
def admin_invitation(salon):
    """An invitation for ``admin``, made before the salon had an admin."""
    return factories.make_invitation(salon=salon, role="admin")


@pytest.mark.parametrize("url", [approve, reject, delete])
def test_admin_cannot_decide_an_admin_invitation(api, admin_invitation, admin_member, salon, url):
    client = api(admin_member)
    pk = admin_invitation.pk
    response = client.delete(url(pk)) if url is delete else client.patch(url(pk))

    assert response.status_code == 403
    assert status_of(admin_invitation) == "pending"
    assert not memberships(salon, user=admin_invitation.user).exists()


def test_admin_sees_an_admin_invitation(api, admin_invitation, admin_member):
    assert api(admin_member).get(detail(admin_invitation.pk)).status_code == 200


def test_owner_decides_an_admin_invitation(api, owner, salon, admin_invitation):
    response = api(owner).patch(approve(admin_invitation.pk))

    assert response.status_code == 200
    assert_decided(response.json(), admin_invitation, status="approved", by=owner)
    assert memberships(salon, user=admin_invitation.user).get().role == "admin"


# The original app's bug: "is an admin of some salon" was enough to decide any invitation -------


@pytest.fixture
def invitation_to_b(other_salon):
    return factories.make_invitation(salon=other_salon, role="seller")


@pytest.mark.parametrize("manager_of_a", ["owner", "admin_member"])
@pytest.mark.parametrize("url", [approve, reject, cancel, delete])
def test_regression_manager_of_salon_a_cannot_decide_invitation_to_salon_b(
    api, request, manager_of_a, url, salon, invitation_to_b, other_salon
):
    user = request.getfixturevalue(manager_of_a)
    assert memberships(salon, user=user).get().role in ("superuser", "admin")
    client = api(user)
    pk = invitation_to_b.pk
    response = client.delete(url(pk)) if url is delete else client.patch(url(pk))

    assert response.status_code == 404
    stored = Invitation.objects.get(pk=pk)
    assert (stored.status, stored.decided_by_id, stored.decided_at) == ("pending", None, None)
    assert not memberships(other_salon, user=invitation_to_b.user).exists()


@pytest.mark.parametrize("manager_of_a", ["owner", "admin_member"])
def test_regression_manager_of_salon_a_does_not_see_invitations_to_salon_b(
    api, request, manager_of_a, invitation_to_b, invitation
):
    client = api(request.getfixturevalue(manager_of_a))

    listed = client.get(INVITATIONS)
    by_id = client.get(detail(invitation_to_b.pk))
    filtered = client.get(INVITATIONS, {"salon": invitation_to_b.salon_id})

    assert ids(listed) == {invitation.pk}
    assert by_id.status_code == 404
    assert filtered.status_code == 200
    assert filtered.json()["count"] == 0


def test_regression_admin_of_a_and_seller_of_b_cannot_decide_for_b(
    api, admin_member, other_salon, invitation_to_b
):
    # Belonging to salon B without managing it must not combine with being admin of A.
    factories.add_member(other_salon, admin_member, role="mechanic")

    response = api(admin_member).patch(approve(invitation_to_b.pk))

    assert response.status_code == 404
    assert status_of(invitation_to_b) == "pending"
    assert not memberships(other_salon, user=invitation_to_b.user).exists()


def test_regression_through_the_router_layout(api, admin_member, invitation_to_b):
    response = api(admin_member).patch(f"{ROUTER}/invitations/{invitation_to_b.pk}/approve/")

    assert response.status_code == 404
    assert status_of(invitation_to_b) == "pending"


# Conflicts (409) --------------------------------------------------------------------------------


def test_approving_twice_is_409_already_decided(api, owner, invitation, salon):
    assert api(owner).patch(approve(invitation.pk)).status_code == 200

    response = api(owner).patch(approve(invitation.pk))

    assert response.status_code == 409
    assert response.json() == {"detail": MSG_ALREADY_DECIDED, "code": "already_decided"}
    assert status_of(invitation) == "approved"
    assert memberships(salon, role="seller").count() == 1


@pytest.mark.parametrize("url", [approve, reject])
def test_deciding_a_rejected_invitation_is_409(api, owner, invitation, url):
    assert (
        api(owner).patch(reject(invitation.pk), {"reason": "no"}, format="json").status_code == 200
    )

    response = api(owner).patch(url(invitation.pk))

    assert response.status_code == 409
    assert response.json() == {"detail": MSG_ALREADY_DECIDED, "code": "already_decided"}
    stored = Invitation.objects.get(pk=invitation.pk)
    assert (stored.status, stored.reason) == ("rejected", "no")


def test_approving_when_the_role_filled_up_is_409_role_taken(api, owner, salon):
    first = factories.make_invitation(salon=salon, role="seller")
    second = factories.make_invitation(salon=salon, role="seller")
    assert api(owner).patch(approve(first.pk)).status_code == 200

    response = api(owner).patch(approve(second.pk))

    assert response.status_code == 409
    assert response.json() == {"detail": MSG_ROLE_TAKEN, "code": "role_taken"}
    stored = Invitation.objects.get(pk=second.pk)
    assert stored.status == "rejected"
    assert stored.decided_by_id == owner.pk
    assert stored.decided_at is not None
    assert list(memberships(salon, role="seller").values_list("user_id", flat=True)) == [
        first.user_id
    ]


def test_approving_a_user_who_became_a_member_is_409_already_member(
    api, owner, salon, invitation, requester
):
    factories.add_member(salon, requester, role="mechanic")

    response = api(owner).patch(approve(invitation.pk))

    assert response.status_code == 409
    assert response.json() == {"detail": MSG_ALREADY_MEMBER, "code": "already_member"}
    assert status_of(invitation) == "rejected"
    assert memberships(salon, user=requester).get().role == "mechanic"


def test_deleting_a_decided_invitation_is_409(api, owner, invitation):
    assert api(owner).patch(approve(invitation.pk)).status_code == 200

    response = api(owner).delete(delete(invitation.pk))

    assert response.status_code == 409
    assert response.json() == {"detail": MSG_ALREADY_DECIDED, "code": "already_decided"}
    assert status_of(invitation) == "approved"


def test_cancelling_a_decided_invitation_is_409(api, owner, requester, invitation):
    assert api(owner).patch(reject(invitation.pk)).status_code == 200

    response = api(requester).patch(cancel(invitation.pk))

    assert response.status_code == 409
    assert response.json() == {"detail": MSG_ALREADY_DECIDED, "code": "already_decided"}
    stored = Invitation.objects.get(pk=invitation.pk)
    assert (stored.status, stored.decided_by_id) == ("rejected", owner.pk)


# Filters, ordering, pagination -------------------------------------------------------------------


@pytest.fixture
def mixed_invitations(owner, salon, other_salon, requester):
    approved = factories.make_invitation(salon=salon, role="seller")
    pending_mechanic = factories.make_invitation(salon=salon, role="mechanic")
    mine = factories.make_invitation(salon=other_salon, user=requester, role="seller")
    services.approve_invitation(approved, actor=owner)
    return {"approved": approved, "mechanic": pending_mechanic, "mine": mine}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "approved"}, {"approved"}),
        ({"status": "pending"}, {"mechanic", "mine"}),
        ({"role": "mechanic"}, {"mechanic"}),
        ({"role": "seller"}, {"approved", "mine"}),
        ({"status": "pending", "role": "seller"}, {"mine"}),
        ({"status": "expired"}, set()),
    ],
)
def test_filters(api, staff, mixed_invitations, params, expected):
    response = api(staff).get(INVITATIONS, params)

    assert response.status_code == 200
    assert ids(response) == {mixed_invitations[name].pk for name in expected}


def test_filter_by_salon_and_user(api, staff, mixed_invitations, salon, other_salon, requester):
    client = api(staff)

    by_salon = client.get(INVITATIONS, {"salon": salon.pk})
    by_other_salon = client.get(INVITATIONS, {"salon": other_salon.pk})
    by_user = client.get(INVITATIONS, {"user": requester.pk})
    unknown_salon = client.get(INVITATIONS, {"salon": 999_999})

    assert ids(by_salon) == {mixed_invitations["approved"].pk, mixed_invitations["mechanic"].pk}
    assert ids(by_other_salon) == {mixed_invitations["mine"].pk}
    assert ids(by_user) == {mixed_invitations["mine"].pk}
    assert unknown_salon.status_code == 200
    assert unknown_salon.json()["count"] == 0


def test_filters_stay_within_what_the_caller_sees(api, requester, mixed_invitations, salon):
    response = api(requester).get(INVITATIONS, {"status": "pending"})

    assert ids(response) == {mixed_invitations["mine"].pk}
    assert api(requester).get(INVITATIONS, {"salon": salon.pk}).json()["count"] == 0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"salon": "abc"}, "salon"),
        ({"user": "abc"}, "user"),
        ({"status": "bogus"}, "status"),
    ],
)
def test_malformed_filters_are_400_naming_the_parameter(api, staff, invitation, params, field):
    response = api(staff).get(INVITATIONS, params)

    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_ordering_by_created_at(api, staff, salon):
    invitations = [factories.make_invitation(salon=salon, role="mechanic") for _ in range(3)]
    base = timezone.now()
    # Distinct creation times, in the reverse of the primary-key order.
    for offset, invitation in enumerate(reversed(invitations)):
        Invitation.objects.filter(pk=invitation.pk).update(created=base + timedelta(minutes=offset))
    oldest_first = [invitation.pk for invitation in invitations[::-1]]
    client = api(staff)

    ascending = client.get(INVITATIONS, {"ordering": "created_at"})
    descending = client.get(INVITATIONS, {"ordering": "-created_at"})
    default = client.get(INVITATIONS)

    assert [item["id"] for item in ascending.json()["results"]] == oldest_first
    assert [item["id"] for item in descending.json()["results"]] == oldest_first[::-1]
    assert [item["id"] for item in default.json()["results"]] == oldest_first[::-1]


def test_list_is_paginated(api, owner, salon):
    created = {factories.make_invitation(salon=salon, role="mechanic").pk for _ in range(25)}
    client = api(owner)

    first = client.get(INVITATIONS)
    second = client.get(first.json()["next"])

    assert first.status_code == 200
    assert first.json()["count"] == 25
    assert len(first.json()["results"]) == 20
    assert first.json()["next"].endswith(f"{INVITATIONS}?page=2")
    assert first.json()["previous"] is None
    assert second.json()["next"] is None
    assert len(second.json()["results"]) == 5
    assert ids(first) | ids(second) == created


# Query counts -----------------------------------------------------------------------------------


def _count_queries(client, url):
    with CaptureQueriesContext(connection) as context:
        response = client.get(url)
    assert response.status_code == 200
    return len(context.captured_queries), response.json()


def test_invitation_list_query_count_does_not_grow(api, owner, salon):
    for _ in range(5):
        factories.make_invitation(salon=salon, role="mechanic")
    few, few_body = _count_queries(api(owner), INVITATIONS)
    for _ in range(45):
        factories.make_invitation(salon=salon, role="mechanic")
    many, many_body = _count_queries(api(owner), INVITATIONS)

    assert few_body["count"] == 5
    assert many_body["count"] == 50
    assert few == many
    assert many <= 4


def test_membership_list_query_count_does_not_grow(api, owner, salon):
    for _ in range(4):
        factories.add_member(salon, role="mechanic")
    few, few_body = _count_queries(api(owner), ROLES)
    for _ in range(45):
        factories.add_member(salon, role="mechanic")
    many, many_body = _count_queries(api(owner), ROLES)

    assert few_body["count"] == 5
    assert many_body["count"] == 50
    assert few == many
    assert many <= 4


# Salons -----------------------------------------------------------------------------------------


def test_any_user_lists_salons(api, outsider, salon, other_salon):
    response = api(outsider).get(SALONS)

    assert response.status_code == 200
    assert response.json()["count"] == 2
    assert {item["id"] for item in response.json()["results"]} == {salon.pk, other_salon.pk}


def test_retrieve_a_salon(api, outsider, salon, owner):
    response = api(outsider).get(f"{SALONS}/{salon.pk}")

    assert response.status_code == 200
    assert response.json()["id"] == salon.pk
    assert response.json()["name"] == "Salon A"
    assert response.json()["owner"] == owner.pk


def test_creator_becomes_the_owner(api, outsider, owner):
    response = api(outsider).post(SALONS, {"name": "New salon", "owner": owner.pk}, format="json")

    assert response.status_code == 201
    assert response.json()["name"] == "New salon"
    assert response.json()["owner"] == outsider.pk
    created = get_salon_model()._default_manager.get(pk=response.json()["id"])
    assert created.owner_id == outsider.pk
    assert list(memberships(created).values_list("user_id", "role")) == [(outsider.pk, "superuser")]


def test_creating_a_salon_without_a_name_is_400(api, outsider):
    response = api(outsider).post(SALONS, {}, format="json")

    assert response.status_code == 400
    assert "name" in response.json()
    assert not get_salon_model()._default_manager.exists()


@pytest.mark.parametrize("editor", ["owner", "staff"])
def test_owner_or_staff_change_a_salon(api, request, editor, salon, owner):
    client = api(request.getfixturevalue(editor))

    put = client.put(f"{SALONS}/{salon.pk}", {"name": "Put name"}, format="json")
    assert put.status_code == 200
    assert put.json()["name"] == "Put name"
    assert get_salon_model()._default_manager.get(pk=salon.pk).name == "Put name"

    patch = client.patch(f"{SALONS}/{salon.pk}", {"name": "Patched"}, format="json")
    assert patch.status_code == 200
    assert patch.json()["name"] == "Patched"
    stored = get_salon_model()._default_manager.get(pk=salon.pk)
    assert (stored.name, stored.owner_id) == ("Patched", owner.pk)


@pytest.mark.parametrize("editor", ["owner", "staff"])
def test_owner_or_staff_delete_a_salon(api, request, editor, salon, invitation):
    response = api(request.getfixturevalue(editor)).delete(f"{SALONS}/{salon.pk}")

    assert response.status_code == 204
    assert not get_salon_model()._default_manager.filter(pk=salon.pk).exists()
    assert not get_membership_model()._default_manager.filter(salon_id=salon.pk).exists()
    assert not Invitation.objects.filter(pk=invitation.pk).exists()


@pytest.mark.parametrize("editor", ["admin_member", "seller_member", "outsider"])
def test_others_cannot_change_or_delete_a_salon(api, request, editor, salon):
    client = api(request.getfixturevalue(editor))
    url = f"{SALONS}/{salon.pk}"

    assert client.put(url, {"name": "X"}, format="json").status_code == 403
    assert client.patch(url, {"name": "X"}, format="json").status_code == 403
    assert client.delete(url).status_code == 403
    assert get_salon_model()._default_manager.get(pk=salon.pk).name == "Salon A"


def test_owner_cannot_hand_the_salon_over_through_put(api, owner, outsider, salon):
    response = api(owner).put(
        f"{SALONS}/{salon.pk}", {"name": "Salon A", "owner": outsider.pk}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["owner"] == owner.pk
    assert get_salon_model()._default_manager.get(pk=salon.pk).owner_id == owner.pk


def test_unknown_salon_is_404(api, outsider):
    assert api(outsider).get(f"{SALONS}/999999").status_code == 404
    assert api(outsider).get(f"{SALONS}/abc").status_code == 404


# Memberships ------------------------------------------------------------------------------------


@pytest.mark.parametrize("member", ["owner", "admin_member", "seller_member"])
def test_members_list_their_salons_memberships(
    api, request, member, salon, owner, admin_member, seller_member, other_salon
):
    response = api(request.getfixturevalue(member)).get(ROLES)

    assert response.status_code == 200
    results = response.json()["results"]
    assert response.json()["count"] == 3
    assert {(item["user"], item["salon"], item["role"]) for item in results} == {
        (owner.pk, salon.pk, "superuser"),
        (admin_member.pk, salon.pk, "admin"),
        (seller_member.pk, salon.pk, "seller"),
    }
    assert all(set(item) == {"id", "user", "salon", "role", "created_at"} for item in results)


def test_outsider_lists_no_memberships(api, outsider, salon, admin_member):
    response = api(outsider).get(ROLES)

    assert response.status_code == 200
    assert response.json()["count"] == 0


def test_staff_list_all_memberships(api, staff, salon, other_salon):
    response = api(staff).get(ROLES)

    assert response.status_code == 200
    assert {item["salon"] for item in response.json()["results"]} == {salon.pk, other_salon.pk}


def test_retrieve_a_membership(api, seller_member, admin_member, salon):
    membership = memberships(salon, user=admin_member).get()

    response = api(seller_member).get(f"{ROLES}/{membership.pk}")

    assert response.status_code == 200
    assert response.json() == {
        "id": membership.pk,
        "user": admin_member.pk,
        "salon": salon.pk,
        "role": "admin",
        "created_at": response.json()["created_at"],
    }
    assert parse_datetime(response.json()["created_at"]) == membership.created


@pytest.mark.parametrize("viewer", ["outsider", "other_salon_owner"])
def test_membership_of_another_salon_is_404(api, request, viewer, admin_member, salon, other_salon):
    user = other_salon.owner if viewer == "other_salon_owner" else request.getfixturevalue(viewer)
    membership = memberships(salon, user=admin_member).get()

    assert api(user).get(f"{ROLES}/{membership.pk}").status_code == 404
    assert api(user).delete(f"{ROLES}/{membership.pk}").status_code == 404
    assert memberships(salon, user=admin_member).exists()


@pytest.mark.parametrize(
    ("remover", "member"),
    [
        ("owner", "admin_member"),
        ("owner", "seller_member"),
        ("admin_member", "seller_member"),
        ("seller_member", "seller_member"),  # leaving the salon
        ("staff", "admin_member"),
    ],
)
def test_remove_a_membership(api, request, remover, member, salon):
    member_user = request.getfixturevalue(member)
    membership = memberships(salon, user=member_user).get()

    response = api(request.getfixturevalue(remover)).delete(f"{ROLES}/{membership.pk}")

    assert response.status_code == 204
    assert not memberships(salon, user=member_user).exists()


def test_removing_a_membership_frees_the_role(api, owner, salon, seller_member, requester):
    membership = memberships(salon, user=seller_member).get()
    assert api(owner).delete(f"{ROLES}/{membership.pk}").status_code == 204

    response = api(requester).post(
        INVITATIONS, {"salon": salon.pk, "role": "seller"}, format="json"
    )

    assert response.status_code == 201


@pytest.mark.parametrize(
    ("remover", "member"),
    [("seller_member", "admin_member"), ("admin_member", "owner"), ("seller_member", "owner")],
)
def test_members_cannot_remove_higher_or_equal_memberships(api, request, remover, member, salon):
    member_user = request.getfixturevalue(member)
    membership = memberships(salon, user=member_user).get()

    response = api(request.getfixturevalue(remover)).delete(f"{ROLES}/{membership.pk}")

    assert response.status_code == 403
    assert memberships(salon, user=member_user).exists()


@pytest.mark.parametrize("remover", ["owner", "staff"])
def test_owner_membership_cannot_be_removed(api, request, remover, owner, salon):
    membership = memberships(salon, user=owner).get()

    response = api(request.getfixturevalue(remover)).delete(f"{ROLES}/{membership.pk}")

    assert response.status_code == 409
    assert response.json() == {"detail": MSG_OWNER_MEMBERSHIP, "code": "owner_membership"}
    assert memberships(salon, user=owner).get().role == "superuser"


# The router layout ------------------------------------------------------------------------------


def test_router_layout_create_list_and_retrieve(api, requester, salon):
    client = api(requester)

    created = client.post(
        f"{ROUTER}/invitations/", {"salon": salon.pk, "role": "seller"}, format="json"
    )
    listed = client.get(f"{ROUTER}/invitations/")
    retrieved = client.get(f"{ROUTER}/invitations/{created.json()['id']}/")

    assert created.status_code == 201
    assert Invitation.objects.get().user_id == requester.pk
    assert ids(listed) == {created.json()["id"]}
    assert retrieved.status_code == 200
    assert retrieved.json() == created.json()


def test_router_layout_approve(api, owner, invitation, salon, requester):
    response = api(owner).patch(f"{ROUTER}/invitations/{invitation.pk}/approve/")

    assert response.status_code == 200
    assert_decided(response.json(), invitation, status="approved", by=owner)
    assert memberships(salon, user=requester).get().role == "seller"


def test_router_layout_reject(api, owner, invitation):
    response = api(owner).patch(
        f"{ROUTER}/invitations/{invitation.pk}/reject/", {"reason": "Full"}, format="json"
    )

    assert response.status_code == 200
    assert_decided(response.json(), invitation, status="rejected", by=owner)
    assert response.json()["reason"] == "Full"


def test_router_layout_cancel(api, requester, invitation):
    response = api(requester).patch(f"{ROUTER}/invitations/{invitation.pk}/cancel/")

    assert response.status_code == 200
    assert_decided(response.json(), invitation, status="cancelled", by=requester)


def test_router_layout_delete(api, owner, invitation):
    response = api(owner).delete(f"{ROUTER}/invitations/{invitation.pk}/")

    assert response.status_code == 204
    assert not Invitation.objects.exists()


def test_router_layout_salons_and_memberships(api, owner, salon):
    salons = api(owner).get(f"{ROUTER}/salons/")
    roles = api(owner).get(f"{ROUTER}/memberships/")

    assert salons.status_code == 200
    assert [item["id"] for item in salons.json()["results"]] == [salon.pk]
    assert roles.status_code == 200
    assert [(item["user"], item["role"]) for item in roles.json()["results"]] == [
        (owner.pk, "superuser")
    ]


# Settings are read when used -------------------------------------------------------------------


def _roles_with(**changes):
    table = copy.deepcopy(DEFAULTS["ROLES"])
    for name, spec in changes.items():
        table[name] = {**table.get(name, {}), **spec}
    return table


def test_custom_role_table_applies_without_restart(api, owner, salon):
    with override_settings(SALON_INVITATIONS={"ROLES": _roles_with(seller={"limit": None})}):
        first = factories.make_invitation(salon=salon, role="seller")
        second = factories.make_invitation(salon=salon, role="seller")
        assert api(owner).patch(approve(first.pk)).status_code == 200
        assert api(owner).patch(approve(second.pk)).status_code == 200
        third = api(factories.make_user()).post(
            INVITATIONS, {"salon": salon.pk, "role": "seller"}, format="json"
        )
        assert third.status_code == 201

    assert memberships(salon, role="seller").count() == 2
    # Back to the defaults: the seller role is taken again.
    late = api(factories.make_user()).post(
        INVITATIONS, {"salon": salon.pk, "role": "seller"}, format="json"
    )
    assert late.status_code == 400
    assert late.json() == {"role": [MSG_ROLE_TAKEN]}


def test_custom_requestable_role(api, owner, salon, requester):
    intern = {"label": "Intern", "rank": 5, "limit": None, "requestable": True, "manages": False}
    client = api(requester)

    with override_settings(SALON_INVITATIONS={"ROLES": _roles_with(intern=intern)}):
        created = client.post(INVITATIONS, {"salon": salon.pk, "role": "intern"}, format="json")
        assert created.status_code == 201
        approved = api(owner).patch(approve(created.json()["id"]))
        assert approved.status_code == 200

    assert memberships(salon, user=requester).get().role == "intern"
    refused = api(factories.make_user()).post(
        INVITATIONS, {"salon": salon.pk, "role": "intern"}, format="json"
    )
    assert refused.status_code == 400
    assert "role" in refused.json()


def test_message_limit_follows_settings(api, requester, salon):
    with override_settings(SALON_INVITATIONS={"MESSAGE_MAX_LENGTH": 10}):
        response = api(requester).post(
            INVITATIONS, {"salon": salon.pk, "role": "seller", "message": "x" * 11}, format="json"
        )

    assert response.status_code == 400
    assert "message" in response.json()
    assert not Invitation.objects.exists()


@pytest.mark.parametrize("param", ["salon", "user"])
@pytest.mark.parametrize("value", [str(2**63), str(-(2**64))])
def test_an_out_of_range_id_in_a_filter_is_400(api, requester, param, value):
    response = api(requester).get(f"/api/invitation_to_auto_salon?{param}={value}")

    assert response.status_code == 400
    assert param in response.json()


# A body that does not parse is a 400 on every endpoint, even where the body is not read ------


@pytest.mark.parametrize("action", ["approved", "rejected", "cancelled"])
@pytest.mark.parametrize("body", ["{not json", "[" * 500 + "]" * 500], ids=["broken", "nested"])
def test_a_malformed_body_is_a_400_and_decides_nothing(api, salon, owner, requester, action, body):
    invitation = factories.make_invitation(salon, requester)
    user = requester if action == "cancelled" else owner

    response = api(user).generic(
        "PATCH",
        f"/api/invitation_to_auto_salon/{invitation.pk}/{action}",
        body,
        content_type="application/json",
    )

    assert response.status_code == 400, response.content
    assert "detail" in response.json()
    invitation.refresh_from_db()
    assert invitation.status == "pending"


def test_an_oversized_body_is_a_json_413_without_project_wiring(api, salon, requester, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = f'{{"salon": {salon.pk}, "role": "seller", "message": "{"x" * 2000}"}}'

    response = api(requester).generic(
        "POST", "/api/invitation_to_auto_salon", body, content_type="application/json"
    )

    assert response.status_code == 413, response.content
    assert "1000 bytes" in response.json()["detail"]
    assert not Invitation.objects.exists()


def test_deep_nesting_in_a_field_is_a_400_without_project_wiring(api, salon, requester):
    body = f'{{"salon": {salon.pk}, "role": {"[" * 2000 + "]" * 2000}}}'

    response = api(requester).generic(
        "POST", "/api/invitation_to_auto_salon", body, content_type="application/json"
    )

    assert response.status_code == 400, response.content
    assert "nest deeper" in response.json()["detail"]


def test_an_unknown_salon_is_named_in_the_400(api, requester):
    body = _post_and_expect_400(api(requester), {"salon": 999_999, "role": "seller"}, "salon")
    assert body == {"salon": ["There is no salon with this id."]}


class OnlyOpenSalons(RolePolicy):
    """Refuses requests to salons whose name says they are closed."""

    seen: list[Any] = []

    def can_create_invitation(self, user, salon, role):
        OnlyOpenSalons.seen.append(salon)
        return "closed" not in salon.name


def test_the_policy_is_asked_under_the_lock_with_the_salon_as_read_there(api, requester, settings):
    settings.SALON_INVITATIONS = {"PERMISSION_POLICY": "tests.test_invitation_api.OnlyOpenSalons"}
    closed = factories.make_salon(name="A closed salon")
    open_ = factories.make_salon(name="An open salon")
    OnlyOpenSalons.seen.clear()

    refused = api(requester).post(INVITATIONS, {"salon": closed.pk, "role": "seller"})
    assert refused.status_code == 403, refused.content
    assert refused.json()["detail"] == "You may not ask to join this salon."
    assert not Invitation.objects.exists()

    created = api(requester).post(INVITATIONS, {"salon": open_.pk, "role": "seller"})
    assert created.status_code == 201, created.content
    # The policy got the locked rows, every field read: it cost no query of its own.
    assert [salon.name for salon in OnlyOpenSalons.seen] == ["A closed salon", "An open salon"]
    assert all(salon.get_deferred_fields() == set() for salon in OnlyOpenSalons.seen)
