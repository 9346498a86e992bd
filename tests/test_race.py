"""Concurrent calls never break the domain rules (SPEC §2.3, §2.4, §2.7).

Each test starts N threads, each with its own database connection, lines them up on a barrier
and lets them call the same service at once. They run on the database servers, PostgreSQL and
MariaDB/MySQL, whose row locks the services take (``concurrency`` marker).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, transaction

from salon_invitations import services
from salon_invitations.conf import DEFAULTS
from salon_invitations.exceptions import Conflict, Gone, InvalidInvitation
from salon_invitations.models import Invitation, get_membership_model, get_salon_model
from tests import factories

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]

N = 8


def run_concurrently(calls: list[Callable[[], Any]]) -> list[tuple[str, Any]]:
    """Run ``calls`` in one thread each, released together.

    Returns ``("ok", result)`` or ``("error", exception)`` per call, in order.
    """
    barrier = threading.Barrier(len(calls))
    results: list[tuple[str, Any]] = [("not run", None)] * len(calls)

    def worker(index: int, call: Callable[[], Any]) -> None:
        try:
            connection.ensure_connection()  # connect before the start line, not after it
            barrier.wait(timeout=30)
            results[index] = ("ok", call())
        except Exception as exc:
            results[index] = ("error", exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=worker, args=(index, call), daemon=True)
        for index, call in enumerate(calls)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    return results


def outcomes(results):
    ok = [value for kind, value in results if kind == "ok"]
    errors = [value for kind, value in results if kind == "error"]
    assert len(ok) + len(errors) == len(results)
    return ok, errors


def test_concurrent_approvals_give_a_single_holder_role_to_exactly_one_user(salon, owner):
    invitations = [
        services.create_invitation(user=factories.make_user(), salon=salon, role="seller")
        for _ in range(N)
    ]

    results = run_concurrently(
        [lambda inv=inv: services.approve_invitation(inv, actor=owner) for inv in invitations]
    )

    ok, errors = outcomes(results)
    assert len(ok) == 1
    assert len(errors) == N - 1
    assert all(isinstance(exc, Conflict) for exc in errors), errors
    assert {exc.code for exc in errors} == {"role_taken"}
    winner = ok[0]
    sellers = get_membership_model()._default_manager.filter(salon=salon, role="seller")
    assert list(sellers.values_list("user_id", flat=True)) == [winner.user_id]
    statuses = Counter(
        Invitation.objects.filter(pk__in=[i.pk for i in invitations]).values_list(
            "status", flat=True
        )
    )
    assert statuses == {"approved": 1, "rejected": N - 1}
    assert Invitation.objects.get(status="approved").pk == winner.pk
    rejected = Invitation.objects.filter(status="rejected")
    assert set(rejected.values_list("reason", flat=True)) == {str(services.MSG_ROLE_TAKEN)}
    assert set(rejected.values_list("decided_by", flat=True)) == {owner.pk}


def test_concurrent_requests_by_one_user_leave_one_pending_invitation(salon, requester):
    roles = ["seller", "mechanic", "admin", "seller", "mechanic", "admin", "seller", "mechanic"]

    results = run_concurrently(
        [
            lambda role=role: services.create_invitation(user=requester, salon=salon, role=role)
            for role in roles
        ]
    )

    ok, errors = outcomes(results)
    assert len(ok) == 1
    assert len(errors) == N - 1
    assert all(isinstance(exc, InvalidInvitation) for exc in errors), errors
    assert {(exc.code, exc.field) for exc in errors} == {("duplicate_pending", "salon")}
    pending = Invitation.objects.filter(user=requester, salon=salon)
    assert list(pending.values_list("pk", "status")) == [(ok[0].pk, "pending")]


def test_concurrent_approvals_of_one_invitation_by_two_managers(salon, owner, admin_member):
    for role in ("seller", "mechanic"):
        invitation = services.create_invitation(user=factories.make_user(), salon=salon, role=role)

        results = run_concurrently(
            [
                lambda inv=invitation: services.approve_invitation(inv, actor=owner),
                lambda inv=invitation: services.approve_invitation(inv, actor=admin_member),
            ]
        )

        ok, errors = outcomes(results)
        assert len(ok) == 1
        assert len(errors) == 1
        assert isinstance(errors[0], Conflict), errors
        assert errors[0].code == "already_decided"
        stored = Invitation.objects.get(pk=invitation.pk)
        assert stored.status == "approved"
        assert stored.decided_by_id in {owner.pk, admin_member.pk}
        holders = get_membership_model()._default_manager.filter(salon=salon, role=role)
        assert list(holders.values_list("user_id", flat=True)) == [invitation.user_id]


@pytest.mark.parametrize("action", ["approved", "cancelled", "delete"])
def test_a_request_waiting_for_the_lock_while_its_invitation_is_deleted_gets_404(
    salon, owner, requester, action
):
    """The reproduction of the race: hold the salon row, send the request, delete, commit."""
    from rest_framework.test import APIClient

    invitation = services.create_invitation(user=requester, salon=salon, role="seller")
    locked = threading.Event()
    release = threading.Event()
    answer: list[Any] = []

    def hold_the_lock_then_delete() -> None:
        try:
            with transaction.atomic():
                get_salon_model()._default_manager.select_for_update().get(pk=salon.pk)
                locked.set()
                release.wait(timeout=10)
                Invitation.objects.filter(pk=invitation.pk).delete()
        finally:
            connection.close()

    def send_the_request() -> None:
        client = APIClient()
        client.force_authenticate(requester if action == "cancelled" else owner)
        base = "/api/invitation_to_auto_salon"
        try:
            if action == "delete":
                answer.append(client.delete(f"{base}/delete/invitation/{invitation.pk}"))
            else:
                answer.append(client.patch(f"{base}/{invitation.pk}/{action}"))
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_lock_then_delete)
    holder.start()
    assert locked.wait(timeout=10)
    sender = threading.Thread(target=send_the_request)
    sender.start()
    sender.join(timeout=1)
    assert sender.is_alive(), "the request did not wait for the salon lock"
    release.set()
    holder.join(timeout=10)
    sender.join(timeout=10)

    (response,) = answer
    assert response.status_code == 404, response.content
    assert not Invitation.objects.filter(pk=invitation.pk).exists()


def test_racing_accepts_of_one_invite_grant_one_membership(salon, owner):
    invitation = services.invite(
        salon=salon, email="new@example.com", role="seller", invited_by=owner
    )
    invitee = factories.make_user("newbie", email="new@example.com")

    results = run_concurrently(
        [lambda: services.accept_invite(invitation, user=invitee) for _ in range(N)]
    )

    ok, errors = outcomes(results)
    assert len(ok) == 1
    assert all(isinstance(exc, Gone) for exc in errors), errors
    holders = get_membership_model()._default_manager.filter(salon=salon, user=invitee)
    assert list(holders.values_list("role", flat=True)) == ["seller"]
    stored = Invitation.objects.get(pk=invitation.pk)
    assert (stored.status, stored.user_id, stored.token_digest) == ("approved", invitee.pk, "")


def test_racing_invites_to_one_address_in_any_case_create_one(salon, owner):
    addresses = ["new@example.com", "NEW@example.com", "New@Example.Com", "new@EXAMPLE.com"] * 2

    results = run_concurrently(
        [
            lambda address=address: services.invite(
                salon=salon, email=address, role="seller", invited_by=owner
            )
            for address in addresses
        ]
    )

    ok, errors = outcomes(results)
    assert len(ok) == 1
    assert {(exc.code, exc.field) for exc in errors} == {("already_invited", "email")}
    assert Invitation.objects.filter(direction="invite").count() == 1


def test_concurrent_role_changes_never_overfill_a_role(salon, owner, settings):
    # An extra role without a limit, so that eight members can compete for the admin role.
    roles = {**DEFAULTS["ROLES"], "member": {"rank": 5, "limit": None, "requestable": True}}
    settings.SALON_INVITATIONS = {"ROLES": roles}
    members = [factories.add_member(salon, factories.make_user(), role="member") for _ in range(N)]

    results = run_concurrently(
        [lambda m=m: services.change_role(m, role="admin", actor=owner) for m in members]
    )

    ok, errors = outcomes(results)
    assert len(ok) == 1
    assert {exc.code for exc in errors} == {"role_taken"}
    admins = get_membership_model()._default_manager.filter(salon=salon, role="admin")
    assert admins.count() == 1


def test_a_transfer_racing_an_approval_leaves_one_owner_and_roles_within_limits(salon, owner):
    heir = factories.add_member(salon, factories.make_user("heir"), role="seller").user
    asking = [
        services.create_invitation(user=factories.make_user(), salon=salon, role="admin")
        for _ in range(N - 1)
    ]

    results = run_concurrently(
        [
            lambda: services.transfer_ownership(salon, new_owner=heir, actor=owner),
            *[lambda inv=inv: services.approve_invitation(inv, actor=owner) for inv in asking],
        ]
    )

    outcomes(results)
    memberships = get_membership_model()._default_manager.filter(salon=salon)
    salon.refresh_from_db()
    owners = list(memberships.filter(role="superuser").values_list("user_id", flat=True))
    assert owners == [salon.owner_id]
    assert memberships.filter(role="admin").count() <= 1
    assert memberships.filter(user_id=salon.owner_id).count() == 1
