"""``events.batched()``: the events of one change written in one INSERT at the end of the
block, and only those whose transaction (or savepoint) survived."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from salon_invitations import events, services
from salon_invitations.models import EventOrder
from salon_invitations.notifications import Event, dispatch
from tests import factories
from tests.eventlog_support import RECORDED, RECORDING, last_event_id, log

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def batches() -> None:
    if not connection.features.can_return_rows_from_bulk_insert:
        pytest.skip("this database cannot return a bulk insert's ids: events go one by one")


def event_inserts(captured: CaptureQueriesContext) -> list[str]:
    return [
        q["sql"]
        for q in captured.captured_queries
        # On PostgreSQL the insert follows the WITH that takes the order lock.
        if 'INSERT INTO "salon_invitations_salonevent"' in q["sql"]
        or "INSERT INTO `salon_invitations_salonevent`" in q["sql"]
    ]


@pytest.mark.usefixtures("batches")
def test_an_approval_writes_its_two_events_in_one_insert(settings, salon, owner, requester):
    settings.SALON_INVITATIONS = {"NOTIFICATION_BACKENDS": [RECORDING]}
    invitation = services.create_invitation(user=requester, salon=salon, role="seller")
    before = last_event_id()
    RECORDED.clear()
    with CaptureQueriesContext(connection) as captured:
        services.approve_invitation(invitation, actor=owner)

    assert len(event_inserts(captured)) == 1
    rows = log(id__gt=before)
    assert [row.kind for row in rows] == ["invitation.approved", "membership.created"]
    # Ids in the order the events happened; the frames delivered carry them.
    assert [(e.kind, e.id) for e in RECORDED] == [(row.kind, row.id) for row in rows]
    assert [e.frame for e in RECORDED] == [row.frame for row in rows]


@pytest.mark.usefixtures("batches")
def test_an_event_of_a_rolled_back_savepoint_is_not_written(settings, salon, requester):
    settings.SALON_INVITATIONS = {"NOTIFICATION_BACKENDS": [RECORDING]}
    kept, dropped = (factories.make_invitation(salon) for _ in range(2))
    before = last_event_id()
    RECORDED.clear()
    with transaction.atomic(), events.batched():
        dispatch(Event("invitation.rejected", kept, requester))
        try:
            with transaction.atomic():
                dispatch(Event("invitation.cancelled", dropped, requester))
                raise RuntimeError("undo the savepoint")
        except RuntimeError:
            pass
        with events.batched():  # nested: joins the outer block
            dispatch(Event("invitation.approved", kept, requester))
        assert log(id__gt=before) == []  # nothing written before the block ends

    assert [(row.kind, row.data["invitation"]["id"]) for row in log(id__gt=before)] == [
        ("invitation.rejected", kept.pk),
        ("invitation.approved", kept.pk),
    ]
    assert [e.kind for e in RECORDED] == ["invitation.rejected", "invitation.approved"]


def test_a_block_that_fails_writes_nothing(settings, salon, requester):
    settings.SALON_INVITATIONS = {"NOTIFICATION_BACKENDS": [RECORDING]}
    invitation = factories.make_invitation(salon)
    before = last_event_id()
    RECORDED.clear()
    with pytest.raises(RuntimeError), transaction.atomic(), events.batched():
        dispatch(Event("invitation.rejected", invitation, requester))
        raise RuntimeError("the change fails")
    assert log(id__gt=before) == []
    assert RECORDED == []


def test_outside_a_batch_each_event_is_written_when_dispatched(settings, salon, requester):
    settings.SALON_INVITATIONS = {"NOTIFICATION_BACKENDS": [RECORDING]}
    invitation = factories.make_invitation(salon)
    before = last_event_id()
    with transaction.atomic():
        dispatch(Event("invitation.rejected", invitation, requester))
        assert [row.kind for row in log(id__gt=before)] == ["invitation.rejected"]


@pytest.mark.parametrize("count", [1, 2])
def test_without_the_order_row_the_first_events_make_it_and_are_written(
    settings, salon, requester, count
):
    settings.SALON_INVITATIONS = {"NOTIFICATION_BACKENDS": [RECORDING]}
    invitations = [factories.make_invitation(salon) for _ in range(count)]
    EventOrder.objects.all().delete()
    before = last_event_id()
    with transaction.atomic(), events.batched():
        for invitation in invitations:
            dispatch(Event("invitation.rejected", invitation, requester))

    rows = log(id__gt=before)
    assert [row.data["invitation"]["id"] for row in rows] == [i.pk for i in invitations]
    assert list(EventOrder.objects.values_list("pk", flat=True)) == [1]


def test_a_statement_takes_the_order_lock_and_inserts_on_postgresql(settings, salon, requester):
    """On PostgreSQL one statement does both (one round trip less under the lock); elsewhere
    the lock's UPDATE comes first."""
    settings.SALON_INVITATIONS = {"NOTIFICATION_BACKENDS": [RECORDING]}
    invitation = factories.make_invitation(salon)
    EventOrder.objects.get_or_create(pk=1)
    with CaptureQueriesContext(connection) as captured, transaction.atomic():
        dispatch(Event("invitation.rejected", invitation, requester))
    inserts = event_inserts(captured)
    statements = [q["sql"] for q in captured.captured_queries]
    writes = [sql for sql in statements if "salon_invitations_eventorder" in sql or sql in inserts]

    if connection.vendor == "postgresql":
        assert len(writes) == 1
        assert writes[0].startswith('WITH taken AS (UPDATE "salon_invitations_eventorder"')
    else:
        assert len(writes) == 2
        assert "UPDATE" in writes[0] and "salon_invitations_eventorder" in writes[0]
    assert "salon_invitations_salonevent" in writes[-1]


def test_the_order_lock_taken_outside_a_transaction_is_not_taken_for_the_next(salon, requester):
    invitation = factories.make_invitation(salon)
    EventOrder.objects.get_or_create(pk=1)
    events.hold_order()  # in autocommit: held for that statement only
    with CaptureQueriesContext(connection) as captured, transaction.atomic():
        dispatch(Event("invitation.rejected", invitation, requester))
    assert any("salon_invitations_eventorder" in q["sql"] for q in captured.captured_queries)
