"""Event ids in commit order, under real concurrency (SPEC §9.1, §9.3): PostgreSQL and
MariaDB/MySQL (``concurrency`` marker), each thread on its own connection.

A reader that only ever asks for "ids after the largest I have seen" (the audit endpoint, the
WebSocket replay) must never miss an event that commits later with a smaller id: the
``EventOrder`` row lock, held from a transaction's first event until its commit, is what makes
ids follow commit order.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from rest_framework.test import APIClient

from salon_invitations import services
from salon_invitations.conf import DEFAULTS
from salon_invitations.events import relay
from salon_invitations.models import EventOrder, Invitation, SalonEvent
from tests import factories
from tests.eventlog_support import (
    EMAIL,
    RECORDING,
    last_event_id,
    log,
    recorded_fixture,  # noqa: F401 - a fixture
)
from tests.test_race import outcomes, run_concurrently

pytestmark = [pytest.mark.concurrency, pytest.mark.django_db(transaction=True)]

N = 8
ROLES = {**DEFAULTS["ROLES"], "member": {"rank": 5, "limit": None, "requestable": True}}


@pytest.fixture(autouse=True)
def unlimited_role(settings):
    settings.SALON_INVITATIONS = {"ROLES": ROLES, "NOTIFICATION_BACKENDS": []}


def test_a_poller_asking_for_ids_after_the_last_seen_misses_no_event():
    salons = [factories.make_salon(name=f"Salon {i}") for i in range(N)]
    people = [[factories.make_user() for _ in range(6)] for _ in range(N)]
    start = last_event_id()
    writing = threading.Event()
    seen: list[int] = []
    failures: list[BaseException] = []

    def poll() -> None:
        try:
            last = start
            while True:
                done = not writing.is_set()
                new = list(
                    SalonEvent.objects.filter(id__gt=last)
                    .order_by("id")
                    .values_list("id", flat=True)
                )
                seen.extend(new)
                last = new[-1] if new else last
                if done:
                    return
        except BaseException as exc:  # reported below
            failures.append(exc)
        finally:
            connection.close()

    def write(salon: Any, users: list[Any], seed: int) -> int:
        pause = random.Random(seed)
        for user in users:
            with transaction.atomic():
                services.create_invitation(user=user, salon=salon, role="member")
                # Work after the event, before the commit: the window in which a later
                # writer's event would otherwise commit first with a larger id.
                time.sleep(pause.uniform(0, 0.01))
        return len(users)

    writing.set()
    reader = threading.Thread(target=poll, daemon=True)
    reader.start()
    try:
        results = run_concurrently(
            [
                lambda salon=salon, users=users, i=i: write(salon, users, i)
                for i, (salon, users) in enumerate(zip(salons, people, strict=True))
            ]
        )
    finally:
        writing.clear()
        reader.join(timeout=60)
    assert not reader.is_alive(), "the poller hung"
    assert failures == []

    ok, errors = outcomes(results)
    assert errors == []
    assert sum(ok) == N * 6
    committed = [row.id for row in log(id__gt=start)]
    assert len(committed) == N * 6
    # The poller saw every event, each once, in id order.
    assert seen == committed


def test_concurrent_approvals_in_different_salons_all_succeed_with_contiguous_ids():
    owners = [factories.make_user() for _ in range(N)]
    salons = [factories.make_salon(owner=owner) for owner in owners]
    invitations = [
        services.create_invitation(user=factories.make_user(), salon=salon, role="seller")
        for salon in salons
    ]
    start = last_event_id()

    def approve(owner: Any, invitation: Invitation) -> int:
        client = APIClient(raise_request_exception=False)
        client.force_authenticate(owner)
        response = client.patch(f"/api/invitation_to_auto_salon/{invitation.pk}/approved")
        return response.status_code

    results = run_concurrently(
        [
            lambda owner=owner, invitation=invitation: approve(owner, invitation)
            for owner, invitation in zip(owners, invitations, strict=True)
        ]
    )

    ok, errors = outcomes(results)
    assert errors == []
    assert ok == [200] * N
    assert set(Invitation.objects.values_list("status", flat=True)) == {"approved"}
    rows = log(id__gt=start)
    assert len(rows) == 2 * N
    # One transaction's events hold consecutive ids: nobody else could write events between.
    for salon in salons:
        mine = [row for row in rows if row.salon_id == salon.pk]
        assert [row.kind for row in mine] == ["invitation.approved", "membership.created"]
        assert mine[1].id == mine[0].id + 1


def _lock_is_free() -> bool:
    """Whether another connection can take the order lock now (without waiting)."""
    answer: list[bool] = []

    def probe() -> None:
        try:
            with transaction.atomic():
                EventOrder.objects.select_for_update(nowait=True).filter(pk=1).exists()
            answer.append(True)
        except DatabaseError:
            answer.append(False)
        finally:
            connection.close()

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert answer, "the probe hung"
    return answer[0]


def test_the_order_lock_is_held_from_the_first_event_until_commit(salon, owner):
    person, other = factories.make_user(), factories.make_user()
    steps: list[tuple[str, bool]] = []

    with transaction.atomic():
        factories.make_user()
        steps.append(("no event yet", _lock_is_free()))
        invitation = services.create_invitation(user=person, salon=salon, role="member")
        steps.append(("after an event", _lock_is_free()))
    steps.append(("after the commit", _lock_is_free()))

    with transaction.atomic():
        with pytest.raises(RuntimeError), transaction.atomic():
            services.create_invitation(user=other, salon=salon, role="member")
            raise RuntimeError("savepoint rolled back")
        # On PostgreSQL rolling the savepoint back released the lock; the next event takes it
        # again (MariaDB keeps it until the end).
        services.approve_invitation(invitation, actor=owner)
        steps.append(("after a rolled-back savepoint and an event", _lock_is_free()))
    steps.append(("after the second commit", _lock_is_free()))

    assert steps == [
        ("no event yet", True),
        ("after an event", False),
        ("after the commit", True),
        ("after a rolled-back savepoint and an event", False),
        ("after the second commit", True),
    ]


def test_concurrent_relays_deliver_each_event_once(settings, recorded, mailoutbox, salon, owner):
    people = [factories.make_user() for _ in range(10)]
    settings.SALON_INVITATIONS = {"ROLES": ROLES, "NOTIFICATION_BACKENDS": [EMAIL, RECORDING]}
    start = last_event_id()
    with transaction.atomic():
        for person in people:
            services.create_invitation(user=person, salon=salon, role="member")
        connection.run_on_commit.clear()  # the process died after the commit
    rows = log(id__gt=start)
    assert len(rows) == 10
    later = max(row.created_at for row in rows) + timedelta(minutes=1)

    results = run_concurrently([lambda: relay(now=later, limit=4) for _ in range(4)])

    relayed, errors = outcomes(results)
    assert errors == []
    assert sum(relayed) <= 10  # rows claimed by one relay are skipped by the others
    while relay(now=later, limit=4):
        pass
    assert sorted(event.id for event in recorded) == [row.id for row in rows]
    assert len(mailoutbox) == 10
    assert {tuple(mail.to) for mail in mailoutbox} == {("owner@example.com",)}
    assert all(row.dispatched_at is not None for row in log(id__gt=start))
