"""Resuming after a frame that overtook an earlier one: the earlier one is not lost."""

from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from salon_invitations import services
from salon_invitations.models import SalonEvent
from tests import factories
from tests.test_consumer import application, token_for

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]


async def resume_from(stack: AsyncExitStack, user: Any, since: int) -> Any:
    path = f"/api/invitation_to_auto_salon/?since={since}&token={token_for(user)}"
    communicator = WebsocketCommunicator(application, path)
    connected, _ = await communicator.connect()
    assert connected
    stack.push_async_callback(communicator.disconnect)
    return communicator


def three_requests(salon: Any) -> list[int]:
    """Three requests to ``salon``; the first one's delivery finished only after the second
    was written (its frame overtaken), the third's well before."""
    ids = []
    for name in ("first", "second", "third"):
        services.create_invitation(user=factories.make_user(name), salon=salon, role="seller")
        ids.append(SalonEvent.objects.latest("id").id)
    first, _second, third = SalonEvent.objects.filter(pk__in=ids).order_by("id")
    SalonEvent.objects.filter(pk=first.pk).update(
        dispatched_at=third.created_at + timedelta(seconds=1)
    )
    return ids


async def test_an_overtaken_event_is_replayed_after_the_one_that_overtook_it(salon, owner):
    first, second, third = await database_sync_to_async(three_requests)(salon)
    async with AsyncExitStack() as stack:
        # The client received ``second`` (and ``first`` never reached it): it resumes from it.
        socket = await resume_from(stack, owner, second)
        frames = [await socket.receive_json_from(timeout=2) for _ in range(3)]
    assert [f.get("id") for f in frames[:2]] == [first, third]
    assert frames[2] == {"type": "resumed", "last_id": third}


async def test_events_delivered_before_the_resumed_one_are_not_sent_again(salon, owner):
    first, second, third = await database_sync_to_async(three_requests)(salon)
    await database_sync_to_async(SalonEvent.objects.filter(pk=first).update)(dispatched_at=None)
    async with AsyncExitStack() as stack:
        socket = await resume_from(stack, owner, third)
        # ``first`` has not been delivered at all yet: it may still be on its way.
        assert (await socket.receive_json_from(timeout=2))["id"] == first
        assert await socket.receive_json_from(timeout=2) == {"type": "resumed", "last_id": third}
        await database_sync_to_async(SalonEvent.objects.update)(dispatched_at=None)
        await database_sync_to_async(SalonEvent.objects.filter(pk__in=[first, second]).update)(
            dispatched_at=await database_sync_to_async(
                lambda: SalonEvent.objects.get(pk=second).created_at
            )()
        )
    async with AsyncExitStack() as stack:
        # Delivered no later than ``second`` was written: a client that had ``third`` had them.
        socket = await resume_from(stack, owner, third)
        assert await socket.receive_json_from(timeout=2) == {"type": "resumed", "last_id": third}


def prune_the_first(ids: list[int]) -> None:
    from salon_invitations import events

    SalonEvent.objects.filter(pk__lte=ids[0]).update(
        created_at=SalonEvent.objects.get(pk=ids[0]).created_at - timedelta(days=60)
    )
    assert events.prune(timedelta(days=30)) >= 1
    assert events.pruned_through() == ids[0]


async def test_a_resume_from_before_pruned_events_is_told_to_resync(salon, owner):
    first, second, third = await database_sync_to_async(three_requests)(salon)
    await database_sync_to_async(prune_the_first)([first, second, third])
    async with AsyncExitStack() as stack:
        socket = await resume_from(stack, owner, first - 1)
        assert await socket.receive_json_from(timeout=2) == {
            "type": "resync_required",
            "last_id": third,
        }
    async with AsyncExitStack() as stack:
        # From the pruned event itself on, nothing is missing.
        socket = await resume_from(stack, owner, first)
        frames = [await socket.receive_json_from(timeout=2) for _ in range(2)]
        assert frames[0]["id"] == second
