"""``policies.remembered_roles``: one query for a user's roles, only inside the block."""

from __future__ import annotations

import pytest

from salon_invitations.models import Invitation
from salon_invitations.policies import get_policy, remembered_roles
from tests.factories import add_member, make_invitation, make_salon, make_user

pytestmark = pytest.mark.django_db


def _answers(policy, user, salons, invitations):
    return (
        [policy.can_invite(user, salon, role) for salon in salons for role in ("admin", "seller")],
        [policy.can_decide(user, invitation) for invitation in invitations],
        sorted(
            policy.visible_invitations(user, Invitation.objects.all()).values_list("pk", flat=True)
        ),
    )


def test_the_answers_are_the_same_with_fewer_queries(django_assert_num_queries):
    manager = make_user()
    salons = [make_salon(), make_salon(), make_salon()]
    add_member(salons[0], manager, "admin")
    add_member(salons[1], manager, "seller")
    invitations = [make_invitation(salon, role="mechanic") for salon in salons]
    policy = get_policy()

    plain = _answers(policy, manager, salons, invitations)
    # The roles (one query) and the visible invitations (one).
    with remembered_roles(), django_assert_num_queries(2):
        remembered = _answers(policy, manager, salons, invitations)

    assert remembered == plain
    assert plain[0] == [False, True, False, False, False, False]
    assert plain[1] == [True, False, False]


def test_roles_are_read_again_outside_the_block(django_assert_num_queries):
    manager = make_user()
    salon = make_salon()
    membership = add_member(salon, manager, "admin")
    policy = get_policy()
    with remembered_roles():
        assert policy.can_invite(manager, salon, "seller")
        membership.delete()
        # Inside: the role read at the start of the block.
        assert policy.can_invite(manager, salon, "seller")
    # After it: the role as it is now, read per question.
    with django_assert_num_queries(1):
        assert not policy.can_invite(manager, salon, "seller")
    with remembered_roles():
        assert not policy.can_invite(manager, salon, "seller")


def test_the_services_re_check_reads_the_roles_of_the_moment():
    """A change made inside the block is still decided on the roles as they are under the
    salon's lock, not on the remembered ones."""
    from salon_invitations import services
    from salon_invitations.exceptions import NotAllowed

    manager = make_user()
    salon = make_salon()
    membership = add_member(salon, manager, "admin")
    invitation = make_invitation(salon, role="mechanic")
    policy = get_policy()
    with remembered_roles():
        assert policy.can_decide(manager, invitation)
        membership.delete()  # demoted meanwhile
        with pytest.raises(NotAllowed):
            services.approve_invitation(
                invitation,
                actor=manager,
                authorize=lambda current: policy.can_decide(manager, current),
            )
    assert Invitation.objects.get(pk=invitation.pk).status == "pending"


@pytest.mark.django_db(transaction=True)
def test_what_runs_after_the_commit_reads_the_roles_of_the_moment():
    """Signal receivers and backends run after the change, still inside the request that
    remembered the roles: they are asked with the roles as the change left them."""
    from salon_invitations import services
    from salon_invitations.signals import membership_deleted

    owner, manager = make_user(), make_user()
    salon = make_salon(owner=owner)
    membership = add_member(salon, manager, "admin")
    policy = get_policy()
    heard: list[bool] = []

    def receiver(sender, membership, **kwargs):
        heard.append(policy.can_invite(manager, salon, "seller"))

    membership_deleted.connect(receiver)
    try:
        with remembered_roles():
            assert policy.can_invite(manager, salon, "seller")  # remembered: admin
            services.remove_membership(membership, actor=owner)
    finally:
        membership_deleted.disconnect(receiver)
    assert heard == [False]


def test_an_api_request_reads_the_caller_s_roles_once(django_assert_num_queries):
    """Visibility and the permission check of one request share the caller's roles."""
    from rest_framework.test import APIClient

    manager = make_user()
    salon = make_salon()
    add_member(salon, manager, "admin")
    invitation = make_invitation(salon, role="mechanic")
    client = APIClient()
    client.force_authenticate(manager)
    # The roles (all of the caller's salons, for visibility), then the invitation.
    with django_assert_num_queries(2):
        response = client.get(f"/api/invitation_to_auto_salon/{invitation.pk}")
    assert response.status_code == 200, response.content


def test_known_roles_answer_only_for_their_user_and_salon(django_assert_num_queries):
    """``current_roles(known=…)``: roles a service has just read under the lock."""
    from salon_invitations.policies import current_roles

    manager, other = make_user(), make_user()
    salon, elsewhere = make_salon(), make_salon()
    add_member(salon, manager, "admin")
    add_member(elsewhere, manager, "admin")
    policy = get_policy()
    with current_roles(known={(manager.pk, salon.pk): "seller"}):
        with django_assert_num_queries(0):
            # As read under the lock (a demotion the database has, say), not as remembered.
            assert not policy.can_invite(manager, salon, "mechanic")
        with django_assert_num_queries(1):
            assert policy.can_invite(manager, elsewhere, "seller")
        with django_assert_num_queries(1):
            assert not policy.can_invite(other, salon, "seller")
    with current_roles(known={(manager.pk, salon.pk): None}):
        assert not policy.can_invite(manager, salon, "seller")
