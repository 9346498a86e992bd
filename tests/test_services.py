"""Every domain rule of SPEC §2, through :mod:`salon_invitations.services`."""

from __future__ import annotations

import logging
from datetime import timedelta
from unittest import mock

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from salon_invitations import services
from salon_invitations.conf import DEFAULTS
from salon_invitations.exceptions import Conflict, InvalidInvitation
from salon_invitations.models import Invitation, get_membership_model, get_salon_model
from salon_invitations.notifications import BaseBackend
from salon_invitations.signals import SIGNALS, invitation_created
from tests import factories

pytestmark = pytest.mark.django_db


# Helpers --------------------------------------------------------------------------------------


def memberships():
    return get_membership_model()._default_manager


def salons():
    return get_salon_model()._default_manager


def role_of(salon, user):
    return memberships().filter(salon=salon, user=user).values_list("role", flat=True).first()


def snapshot(invitation):
    """Everything a transition could change, read from the database."""
    return Invitation.objects.filter(pk=invitation.pk).values(
        "status", "reason", "decided_by", "decided_at", "status_changed", "modified", "role"
    )[0]


@pytest.fixture
def signals_sent():
    """``[(kind, sender, kwargs), ...]`` for every package signal sent during the test."""
    sent = []
    receivers = {}
    for kind, signal in SIGNALS.items():

        def receiver(sender, *, kind=kind, **kwargs):
            kwargs.pop("signal")
            sent.append((kind, sender, kwargs))

        receivers[kind] = receiver
        signal.connect(receiver, dispatch_uid=f"test-services-{kind}")
    yield sent
    for kind, signal in SIGNALS.items():
        signal.disconnect(dispatch_uid=f"test-services-{kind}")


def kinds(sent):
    return [kind for kind, _sender, _kwargs in sent]


@pytest.fixture
def pending(salon, requester):
    return services.create_invitation(user=requester, salon=salon, role="seller", message="Hi")


class Boom(Exception):
    pass


# Notification backends used through override_settings by dotted path.


class ExplodingBackend(BaseBackend):
    def send(self, event):
        raise Boom("backend down")


class RecordingBackend(BaseBackend):
    events: list = []

    def send(self, event):
        RecordingBackend.events.append(event)


# create_salon ---------------------------------------------------------------------------------


def test_create_salon_makes_the_creator_its_owner_member(owner):
    salon = services.create_salon(owner=owner, name="New salon")

    salon = salons().get(pk=salon.pk)
    assert salon.name == "New salon"
    assert salon.owner_id == owner.pk
    assert list(memberships().filter(salon=salon).values_list("user_id", "role")) == [
        (owner.pk, "superuser")
    ]


@override_settings(
    SALON_INVITATIONS={
        "ROLES": {**DEFAULTS["ROLES"], "boss": {"rank": 40, "limit": 1, "manages": True}},
        "OWNER_ROLE": "boss",
    }
)
def test_create_salon_gives_the_configured_owner_role(owner):
    salon = services.create_salon(owner=owner, name="New salon")

    assert role_of(salon, owner) == "boss"


def test_create_salon_is_rolled_back_when_the_owner_membership_fails(owner):
    with (
        mock.patch.object(services.base, "add_member", side_effect=Boom("no membership")),
        pytest.raises(Boom),
    ):
        services.create_salon(owner=owner, name="Doomed")

    assert not salons().filter(name="Doomed").exists()
    assert not memberships().filter(user=owner).exists()


# create_invitation ----------------------------------------------------------------------------


def test_create_invitation_makes_a_pending_invitation(salon, requester):
    invitation = services.create_invitation(
        user=requester, salon=salon, role="mechanic", message="Let me in"
    )

    invitation = Invitation.objects.get(pk=invitation.pk)
    assert (invitation.user_id, invitation.salon_id, invitation.role) == (
        requester.pk,
        salon.pk,
        "mechanic",
    )
    assert invitation.status == "pending"
    assert invitation.message == "Let me in"
    assert invitation.decided_by is None
    assert invitation.decided_at is None
    assert invitation.expires_at is None


@pytest.mark.parametrize("role", ["superuser", "nope", ""])
def test_create_invitation_refuses_an_unknown_or_unrequestable_role(salon, requester, role):
    with pytest.raises(InvalidInvitation) as exc_info:
        services.create_invitation(user=requester, salon=salon, role=role)

    assert (exc_info.value.field, exc_info.value.code) == ("role", "invalid_role")
    assert not Invitation.objects.exists()


@override_settings(
    SALON_INVITATIONS={
        "ROLES": {
            **DEFAULTS["ROLES"],
            "mechanic": {**DEFAULTS["ROLES"]["mechanic"], "requestable": False},
        }
    }
)
def test_create_invitation_follows_the_requestable_flag_of_the_role_table(salon, requester):
    with pytest.raises(InvalidInvitation) as exc_info:
        services.create_invitation(user=requester, salon=salon, role="mechanic")

    assert exc_info.value.code == "invalid_role"
    assert services.create_invitation(user=requester, salon=salon, role="seller").is_pending


def test_create_invitation_refuses_a_taken_role(salon, seller_member, requester):
    with pytest.raises(InvalidInvitation) as exc_info:
        services.create_invitation(user=requester, salon=salon, role="seller")

    assert (exc_info.value.field, exc_info.value.code) == ("role", "role_taken")
    assert not Invitation.objects.exists()


def test_a_taken_role_in_another_salon_does_not_matter(salon, other_salon, requester):
    factories.add_member(other_salon, role="seller")

    invitation = services.create_invitation(user=requester, salon=salon, role="seller")

    assert invitation.is_pending


@override_settings(
    SALON_INVITATIONS={
        "ROLES": {**DEFAULTS["ROLES"], "seller": {**DEFAULTS["ROLES"]["seller"], "limit": 2}}
    }
)
def test_a_role_is_taken_when_it_has_as_many_holders_as_its_limit(salon, requester):
    factories.add_member(salon, role="seller")
    assert services.create_invitation(user=requester, salon=salon, role="seller").is_pending

    factories.add_member(salon, role="seller")
    with pytest.raises(InvalidInvitation) as exc_info:
        services.create_invitation(user=factories.make_user(), salon=salon, role="seller")
    assert exc_info.value.code == "role_taken"


@override_settings(
    SALON_INVITATIONS={
        "ROLES": {**DEFAULTS["ROLES"], "seller": {**DEFAULTS["ROLES"]["seller"], "limit": None}}
    }
)
def test_a_role_without_limit_is_never_taken(salon, owner):
    for _ in range(3):
        invitation = services.create_invitation(
            user=factories.make_user(), salon=salon, role="seller"
        )
        services.approve_invitation(invitation, actor=owner)

    assert memberships().filter(salon=salon, role="seller").count() == 3


def test_create_invitation_refuses_an_existing_member(salon, seller_member):
    with pytest.raises(InvalidInvitation) as exc_info:
        services.create_invitation(user=seller_member, salon=salon, role="mechanic")

    assert (exc_info.value.field, exc_info.value.code) == ("salon", "already_member")
    assert not Invitation.objects.exists()


def test_create_invitation_refuses_the_owner(salon, owner):
    with pytest.raises(InvalidInvitation) as exc_info:
        services.create_invitation(user=owner, salon=salon, role="admin")

    assert exc_info.value.code == "already_member"


@pytest.mark.parametrize("second_role", ["seller", "mechanic"])
def test_create_invitation_refuses_a_second_pending_invitation(salon, pending, second_role):
    with pytest.raises(InvalidInvitation) as exc_info:
        services.create_invitation(user=pending.user, salon=salon, role=second_role)

    assert (exc_info.value.field, exc_info.value.code) == ("salon", "duplicate_pending")
    assert list(Invitation.objects.all()) == [pending]


def test_a_second_pending_invitation_is_refused_before_the_database_is_asked(salon, pending):
    # The database's conditional unique constraint is only a second line: MySQL and MariaDB
    # cannot create it, and there this check, made under the salon lock, is the only one.
    with CaptureQueriesContext(connection) as queries, pytest.raises(InvalidInvitation) as exc:
        services.create_invitation(user=pending.user, salon=salon, role="mechanic")

    assert exc.value.code == "duplicate_pending"
    inserts = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("INSERT")]
    assert inserts == []


def test_a_new_invitation_is_accepted_after_the_previous_one_was_decided(salon, owner, pending):
    services.reject_invitation(pending, actor=owner)

    again = services.create_invitation(user=pending.user, salon=salon, role="seller")

    assert again.pk != pending.pk
    assert Invitation.objects.filter(user=pending.user, status="pending").get() == again


def test_invitation_ttl_sets_expires_at(salon, requester):
    before = timezone.now()
    with override_settings(SALON_INVITATIONS={"INVITATION_TTL": timedelta(days=7)}):
        invitation = services.create_invitation(user=requester, salon=salon, role="seller")
    after = timezone.now()

    expires_at = Invitation.objects.get(pk=invitation.pk).expires_at
    assert before + timedelta(days=7) <= expires_at <= after + timedelta(days=7)


# approve / reject / cancel / delete -----------------------------------------------------------


def test_approve_creates_the_membership_and_records_the_decision(salon, owner, pending):
    before = timezone.now()

    result = services.approve_invitation(pending, actor=owner)

    assert result.status == "approved"
    invitation = Invitation.objects.get(pk=pending.pk)
    assert invitation.status == "approved"
    assert invitation.decided_by_id == owner.pk
    assert before <= invitation.decided_at <= timezone.now()
    assert invitation.reason == ""
    assert role_of(salon, pending.user) == "seller"


def test_approve_by_an_anonymous_actor_records_no_decider(salon, pending):
    services.approve_invitation(pending, actor=AnonymousUser())

    invitation = Invitation.objects.get(pk=pending.pk)
    assert invitation.status == "approved"
    assert invitation.decided_by is None
    assert invitation.decided_at is not None


def test_approve_rechecks_the_role_and_rejects_when_it_was_taken(salon, owner, pending):
    holder = factories.add_member(salon, role="seller").user

    with pytest.raises(Conflict) as exc_info:
        services.approve_invitation(pending, actor=owner)

    assert exc_info.value.code == "role_taken"
    assert exc_info.value.instance.status == "rejected"
    invitation = Invitation.objects.get(pk=pending.pk)
    assert invitation.status == "rejected"
    assert invitation.reason == str(services.MSG_ROLE_TAKEN)
    assert invitation.decided_by_id == owner.pk
    assert invitation.decided_at is not None
    assert role_of(salon, pending.user) is None
    assert list(
        memberships().filter(salon=salon, role="seller").values_list("user_id", flat=True)
    ) == [holder.pk]


def test_approve_rechecks_membership_and_rejects_an_existing_member(salon, owner, pending):
    factories.add_member(salon, pending.user, role="mechanic")

    with pytest.raises(Conflict) as exc_info:
        services.approve_invitation(pending, actor=owner)

    assert exc_info.value.code == "already_member"
    invitation = Invitation.objects.get(pk=pending.pk)
    assert invitation.status == "rejected"
    assert invitation.reason == str(services.MSG_ALREADY_MEMBER)
    assert role_of(salon, pending.user) == "mechanic"
    assert memberships().filter(salon=salon, role="seller").count() == 0


def test_reject_records_the_reason_and_creates_no_membership(salon, owner, pending):
    result = services.reject_invitation(pending, actor=owner, reason="No vacancy")

    assert result.status == "rejected"
    invitation = Invitation.objects.get(pk=pending.pk)
    assert (invitation.status, invitation.reason) == ("rejected", "No vacancy")
    assert invitation.decided_by_id == owner.pk
    assert invitation.decided_at is not None
    assert role_of(salon, pending.user) is None


def test_cancel_marks_the_invitation_cancelled_by_the_requester(salon, pending):
    result = services.cancel_invitation(pending, actor=pending.user)

    assert result.status == "cancelled"
    invitation = Invitation.objects.get(pk=pending.pk)
    assert invitation.status == "cancelled"
    assert invitation.decided_by_id == pending.user.pk
    assert invitation.decided_at is not None
    assert role_of(salon, pending.user) is None


def test_delete_removes_a_pending_invitation(owner, pending):
    assert services.delete_invitation(pending, actor=owner) is None

    assert not Invitation.objects.filter(pk=pending.pk).exists()


def test_services_work_on_a_stale_instance(salon, owner, pending):
    """The services re-read the invitation under the lock instead of trusting the caller's copy."""
    stale = Invitation.objects.get(pk=pending.pk)
    services.reject_invitation(pending, actor=owner)

    with pytest.raises(Conflict) as exc_info:
        services.approve_invitation(stale, actor=owner)

    assert exc_info.value.code == "already_decided"
    assert Invitation.objects.get(pk=pending.pk).status == "rejected"
    assert role_of(salon, pending.user) is None


# Decided invitations are immutable ------------------------------------------------------------


def _decide_as(status, invitation, owner):
    if status == "approved":
        services.approve_invitation(invitation, actor=owner)
    elif status == "rejected":
        services.reject_invitation(invitation, actor=owner, reason="first")
    elif status == "cancelled":
        services.cancel_invitation(invitation, actor=invitation.user)
    else:
        Invitation.objects.filter(pk=invitation.pk).update(
            expires_at=timezone.now() - timedelta(minutes=1)
        )
        assert services.expire_invitations() == 1
    invitation.refresh_from_db()
    assert invitation.status == status


TRANSITIONS = {
    "approve": lambda inv, actor: services.approve_invitation(inv, actor=actor),
    "reject": lambda inv, actor: services.reject_invitation(inv, actor=actor, reason="again"),
    "cancel": lambda inv, actor: services.cancel_invitation(inv, actor=inv.user),
    "delete": lambda inv, actor: services.delete_invitation(inv, actor=actor),
}


@pytest.mark.parametrize("transition", list(TRANSITIONS))
@pytest.mark.parametrize("status", ["approved", "rejected", "cancelled", "expired"])
def test_a_decided_invitation_is_immutable(salon, owner, staff, pending, status, transition):
    _decide_as(status, pending, owner)
    before = snapshot(pending)
    members_before = list(memberships().filter(salon=salon).values_list("user_id", "role"))

    with pytest.raises(Conflict) as exc_info:
        TRANSITIONS[transition](pending, staff)

    assert exc_info.value.code == "already_decided"
    assert exc_info.value.instance.status == status
    assert snapshot(pending) == before
    assert list(memberships().filter(salon=salon).values_list("user_id", "role")) == members_before


# Memberships ----------------------------------------------------------------------------------


def test_removing_a_membership_frees_the_role(salon, owner, seller_member, requester):
    with pytest.raises(InvalidInvitation):
        services.create_invitation(user=requester, salon=salon, role="seller")
    membership = memberships().get(salon=salon, user=seller_member)

    services.remove_membership(membership, actor=owner)

    assert not memberships().filter(pk=membership.pk).exists()
    invitation = services.create_invitation(user=requester, salon=salon, role="seller")
    services.approve_invitation(invitation, actor=owner)
    assert role_of(salon, requester) == "seller"


def test_a_removed_member_may_ask_to_join_again(salon, owner, seller_member):
    services.remove_membership(memberships().get(user=seller_member, salon=salon), actor=owner)

    invitation = services.create_invitation(user=seller_member, salon=salon, role="mechanic")

    assert invitation.is_pending


def test_the_owner_membership_cannot_be_removed(salon, owner, staff):
    membership = memberships().get(salon=salon, user=owner)

    with pytest.raises(Conflict) as exc_info:
        services.remove_membership(membership, actor=staff)

    assert exc_info.value.code == "owner_membership"
    assert memberships().filter(pk=membership.pk, role="superuser").exists()


# expire_invitations ---------------------------------------------------------------------------


def _pending_expiring_at(salon, when, n=1):
    invitations = [
        services.create_invitation(user=factories.make_user(), salon=salon, role="mechanic")
        for _ in range(n)
    ]
    Invitation.objects.filter(pk__in=[i.pk for i in invitations]).update(expires_at=when)
    return invitations


def _batch_selects(queries):
    table = Invitation._meta.db_table
    return [
        q["sql"]
        for q in queries
        if q["sql"].startswith("SELECT") and table in q["sql"] and "LIMIT" in q["sql"]
    ]


def test_expire_invitations_expires_only_pending_invitations_past_expires_at(salon, owner):
    now = timezone.now()
    past = _pending_expiring_at(salon, now - timedelta(hours=1), n=5)
    future = _pending_expiring_at(salon, now + timedelta(hours=1))[0]
    exactly_now = _pending_expiring_at(salon, now)[0]
    never = _pending_expiring_at(salon, None)[0]
    decided = _pending_expiring_at(salon, now - timedelta(hours=1))[0]
    services.reject_invitation(decided, actor=owner)
    decided_before = snapshot(decided)

    with CaptureQueriesContext(connection) as ctx:
        count = services.expire_invitations(now=now, batch_size=2)

    assert count == 6
    assert len(_batch_selects(ctx.captured_queries)) == 4  # 2 + 2 + 2 + an empty one
    expired = Invitation.objects.filter(status="expired")
    assert set(expired.values_list("pk", flat=True)) == {i.pk for i in [*past, exactly_now]}
    assert set(expired.values_list("decided_at", flat=True)) == {now}
    assert set(expired.values_list("decided_by", flat=True)) == {None}
    assert Invitation.objects.get(pk=future.pk).status == "pending"
    assert Invitation.objects.get(pk=never.pk).status == "pending"
    assert snapshot(decided) == decided_before


def test_expire_invitations_works_in_batches(salon):
    now = timezone.now()
    _pending_expiring_at(salon, now - timedelta(minutes=1), n=5)

    with CaptureQueriesContext(connection) as ctx:
        count = services.expire_invitations(now=now, batch_size=2)

    assert count == 5
    assert len(_batch_selects(ctx.captured_queries)) == 3  # 2 + 2 + 1
    assert Invitation.objects.filter(status="expired").count() == 5


def test_expire_invitations_uses_the_batch_size_setting(salon):
    now = timezone.now()
    _pending_expiring_at(salon, now - timedelta(minutes=1), n=5)

    with (
        override_settings(SALON_INVITATIONS={"EXPIRY_BATCH_SIZE": 2}),
        CaptureQueriesContext(connection) as ctx,
    ):
        count = services.expire_invitations(now=now)

    assert count == 5
    assert len(_batch_selects(ctx.captured_queries)) == 3


def test_expire_invitations_a_second_run_changes_nothing(salon):
    _pending_expiring_at(salon, timezone.now() - timedelta(minutes=1), n=5)
    assert services.expire_invitations(batch_size=2) == 5
    before = list(Invitation.objects.order_by("pk").values("pk", "status", "modified"))

    assert services.expire_invitations(batch_size=2) == 0

    assert list(Invitation.objects.order_by("pk").values("pk", "status", "modified")) == before


def test_expire_invitations_defaults_to_the_current_time(salon):
    [soon] = _pending_expiring_at(salon, timezone.now() + timedelta(hours=1))
    [gone] = _pending_expiring_at(salon, timezone.now() - timedelta(seconds=1))

    assert services.expire_invitations() == 1

    assert Invitation.objects.get(pk=gone.pk).status == "expired"
    assert Invitation.objects.get(pk=soon.pk).status == "pending"


# Salons ---------------------------------------------------------------------------------------


def test_update_salon_changes_its_fields_but_not_its_owner(salon, owner, requester):
    result = services.update_salon(salon, name="Renamed", owner=requester)

    assert result.name == "Renamed"
    stored = salons().get(pk=salon.pk)
    assert stored.name == "Renamed"
    assert stored.owner_id == owner.pk


def test_delete_salon_cascades_to_memberships_and_invitations(
    salon, other_salon, owner, admin_member, pending
):
    decided = services.create_invitation(user=factories.make_user(), salon=salon, role="mechanic")
    services.reject_invitation(decided, actor=owner)
    other_invitation = services.create_invitation(
        user=pending.user, salon=other_salon, role="seller"
    )

    services.delete_salon(salon, actor=owner)

    assert not salons().filter(pk=salon.pk).exists()
    assert not memberships().filter(salon_id=salon.pk).exists()
    assert not Invitation.objects.filter(salon_id=salon.pk).exists()
    assert salons().filter(pk=other_salon.pk).exists()
    assert memberships().filter(salon=other_salon).count() == 1
    assert Invitation.objects.filter(pk=other_invitation.pk).exists()


# decide_many ----------------------------------------------------------------------------------


def test_decide_many_approves_each_and_reports_conflicts(salon, owner):
    first = factories.make_invitation(salon, role="seller")
    second = factories.make_invitation(salon, role="seller")
    mechanic = factories.make_invitation(salon, role="mechanic")
    decided = factories.make_invitation(salon, role="admin")
    services.reject_invitation(decided, actor=owner)

    outcome = services.decide_many([first, second, mechanic, decided], actor=owner, approve=True)

    assert outcome == {
        "done": [first, mechanic],
        "role_taken": [second],
        "already_decided": [decided],
    }
    statuses = dict(Invitation.objects.values_list("pk", "status"))
    assert statuses == {
        first.pk: "approved",
        second.pk: "rejected",
        mechanic.pk: "approved",
        decided.pk: "rejected",
    }
    assert role_of(salon, first.user) == "seller"
    assert role_of(salon, mechanic.user) == "mechanic"
    assert role_of(salon, second.user) is None


def test_decide_many_rejects(salon, owner):
    invitations = [factories.make_invitation(salon, role=r) for r in ("seller", "mechanic")]

    outcome = services.decide_many(invitations, actor=owner, approve=False)

    assert outcome == {"done": invitations}
    assert set(Invitation.objects.values_list("status", flat=True)) == {"rejected"}
    assert memberships().filter(salon=salon).count() == 1  # the owner only


# Signals: sent after commit, with the instance and the actor ----------------------------------


def test_create_invitation_sends_invitation_created_after_commit(
    salon, requester, signals_sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        invitation = services.create_invitation(user=requester, salon=salon, role="seller")
        assert signals_sent == []  # not before the commit
    assert len(callbacks) == 1

    assert signals_sent == [
        ("invitation.created", Invitation, {"invitation": invitation, "actor": requester})
    ]


def test_approve_sends_invitation_approved_and_membership_created(
    salon, owner, pending, signals_sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.approve_invitation(pending, actor=owner)
        assert signals_sent == []

    membership = memberships().get(salon=salon, user=pending.user)
    assert kinds(signals_sent) == ["invitation.approved", "membership.created"]
    (_, sender, kwargs), (_, m_sender, m_kwargs) = signals_sent
    assert sender is Invitation
    assert kwargs["invitation"] == pending
    assert kwargs["invitation"].status == "approved"
    assert kwargs["actor"] == owner
    assert m_sender is get_membership_model()
    assert m_kwargs == {"membership": membership, "actor": owner}


def test_a_conflicting_approval_sends_invitation_rejected(
    salon, owner, pending, signals_sent, django_capture_on_commit_callbacks
):
    factories.add_member(salon, role="seller")

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(Conflict):
        services.approve_invitation(pending, actor=owner)

    assert kinds(signals_sent) == ["invitation.rejected"]
    kwargs = signals_sent[0][2]
    assert kwargs["invitation"].pk == pending.pk
    assert kwargs["invitation"].status == "rejected"
    assert kwargs["actor"] == owner


@pytest.mark.parametrize(
    ("kind", "call"),
    [
        ("invitation.rejected", lambda inv, owner: services.reject_invitation(inv, actor=owner)),
        ("invitation.cancelled", lambda inv, owner: services.cancel_invitation(inv, actor=owner)),
        ("invitation.deleted", lambda inv, owner: services.delete_invitation(inv, actor=owner)),
    ],
)
def test_each_transition_sends_its_signal_with_the_actor(
    owner, pending, signals_sent, django_capture_on_commit_callbacks, kind, call
):
    with django_capture_on_commit_callbacks(execute=True):
        call(pending, owner)
        assert signals_sent == []

    assert len(signals_sent) == 1
    sent_kind, sender, kwargs = signals_sent[0]
    assert (sent_kind, sender) == (kind, Invitation)
    assert set(kwargs) == {"invitation", "actor"}
    assert kwargs["invitation"].pk == pending.pk  # kept for deleted invitations too
    assert kwargs["actor"] == owner


def test_expiry_sends_invitation_expired_without_actor(
    salon, signals_sent, django_capture_on_commit_callbacks
):
    [invitation] = _pending_expiring_at(salon, timezone.now() - timedelta(minutes=1))

    with django_capture_on_commit_callbacks(execute=True):
        services.expire_invitations()

    assert signals_sent == [
        ("invitation.expired", Invitation, {"invitation": invitation, "actor": None})
    ]
    assert signals_sent[0][2]["invitation"].status == "expired"


def test_create_salon_sends_membership_created_for_the_owner(
    owner, signals_sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        salon = services.create_salon(owner=owner, name="Fresh")

    membership = memberships().get(salon=salon)
    assert signals_sent == [
        ("membership.created", get_membership_model(), {"membership": membership, "actor": owner})
    ]


def test_remove_membership_sends_membership_deleted(
    salon, owner, seller_member, signals_sent, django_capture_on_commit_callbacks
):
    membership = memberships().get(salon=salon, user=seller_member)

    with django_capture_on_commit_callbacks(execute=True):
        services.remove_membership(membership, actor=owner)

    assert kinds(signals_sent) == ["membership.deleted"]
    kwargs = signals_sent[0][2]
    assert kwargs["membership"].pk == membership.pk
    assert kwargs["membership"].user_id == seller_member.pk
    assert kwargs["actor"] == owner


def test_refused_changes_send_no_signal(
    salon, owner, seller_member, requester, signals_sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(InvalidInvitation):
            services.create_invitation(user=requester, salon=salon, role="seller")
        with pytest.raises(Conflict):
            services.remove_membership(memberships().get(user=owner, salon=salon), actor=owner)

    assert callbacks == []
    assert signals_sent == []


@pytest.mark.django_db(transaction=True)
def test_no_signal_is_sent_for_work_rolled_back_by_an_outer_transaction(
    salon, owner, requester, signals_sent
):
    invitation = services.create_invitation(user=requester, salon=salon, role="seller")
    assert kinds(signals_sent) == ["invitation.created"]  # autocommit: sent at once
    signals_sent.clear()

    with pytest.raises(Boom), transaction.atomic():
        services.approve_invitation(invitation, actor=owner)
        raise Boom

    assert signals_sent == []
    assert Invitation.objects.get(pk=invitation.pk).status == "pending"
    assert role_of(salon, requester) is None

    services.approve_invitation(invitation, actor=owner)
    assert kinds(signals_sent) == ["invitation.approved", "membership.created"]


def test_a_failing_receiver_is_logged_and_does_not_break_the_service(
    salon, requester, caplog, django_capture_on_commit_callbacks
):
    def broken_receiver(sender, **kwargs):
        raise Boom("receiver down")

    invitation_created.connect(broken_receiver, dispatch_uid="test-broken-receiver")
    try:
        with (
            caplog.at_level(logging.ERROR, logger="salon_invitations"),
            django_capture_on_commit_callbacks(execute=True),
        ):
            invitation = services.create_invitation(user=requester, salon=salon, role="seller")
    finally:
        invitation_created.disconnect(dispatch_uid="test-broken-receiver")

    assert Invitation.objects.get(pk=invitation.pk).is_pending
    [record] = [
        r
        for r in caplog.records
        if r.name == "salon_invitations" and "broken_receiver" in r.getMessage()
    ]
    assert record.levelno == logging.ERROR
    assert "invitation.created" in record.getMessage()
    assert isinstance(record.exc_info[1], Boom)


def test_a_failing_backend_is_logged_and_the_others_still_run(
    salon, owner, pending, caplog, django_capture_on_commit_callbacks
):
    RecordingBackend.events = []
    backends = ["tests.test_services.ExplodingBackend", "tests.test_services.RecordingBackend"]

    with (
        override_settings(SALON_INVITATIONS={"NOTIFICATION_BACKENDS": backends}),
        caplog.at_level(logging.ERROR, logger="salon_invitations"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        services.approve_invitation(pending, actor=owner)

    assert Invitation.objects.get(pk=pending.pk).status == "approved"
    assert [(e.kind, e.instance.pk, e.actor) for e in RecordingBackend.events] == [
        ("invitation.approved", pending.pk, owner),
        ("membership.created", memberships().get(user=pending.user).pk, owner),
    ]
    failures = [r for r in caplog.records if "ExplodingBackend" in r.getMessage()]
    assert len(failures) == 2
    assert all(isinstance(r.exc_info[1], Boom) for r in failures)


def test_a_twin_the_checks_did_not_see_is_refused_by_the_constraint_as_a_duplicate(salon, pending):
    """A pending twin the re-checks under the lock missed (as on a database without the salon
    lock's guarantee): the unique constraint refuses the insert, the change is rolled back
    whole (no event left behind) and the caller gets the same 400 as from the check."""
    if not connection.features.supports_partial_indexes:
        pytest.skip("the database cannot enforce conditional constraints (MySQL, MariaDB)")
    from unittest import mock

    from salon_invitations.models import SalonEvent
    from salon_invitations.services import base

    events_before = SalonEvent.objects.count()
    unseen = base.Standing(member=False, full=False, pending=False)
    with (
        mock.patch.object(base, "standing", return_value=unseen),
        pytest.raises(InvalidInvitation) as exc,
    ):
        services.create_invitation(user=pending.user, salon=salon, role="mechanic")

    assert (exc.value.field, exc.value.code) == ("salon", "duplicate_pending")
    assert list(Invitation.objects.all()) == [pending]
    assert SalonEvent.objects.count() == events_before
