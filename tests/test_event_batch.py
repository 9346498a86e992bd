"""``events.batched()``: the events of one change written in one INSERT at the end of the
block, and only those whose transaction (or savepoint) survived."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from salon_invitations import events, services
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
        if q["sql"].startswith('INSERT INTO "salon_invitations_salonevent"')
        or q["sql"].startswith("INSERT INTO `salon_invitations_salonevent`")
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
