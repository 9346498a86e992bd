"""Replay on the WebSocket (SPEC §9.3): ``?since=<id>`` and ``{"action": "resume"}``.

A client that missed events gets, in order, every event after its id that it may see now, then
``{"type": "resumed", "last_id": N}``, then live events, with no gap and no duplicate. Changes
go through the services in worker threads and commit, so live frames leave through the real
on-commit hooks and channel layer (in-memory, or Redis with ``SALON_TEST_CHANNEL_LAYER=redis``).
"""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connection

from salon_invitations import consumer, services
from salon_invitations.conf import DEFAULTS
from salon_invitations.consumer import SalonEventsConsumer
from salon_invitations.models import Invitation, SalonEvent, get_membership_model
from tests import factories
from tests.test_consumer import INVITATIONS, ROLES, application, token_for

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]

#: seconds to wait for a frame that must come (the CI machine is loaded)
WAIT = 10
#: a role without a limit, so a salon takes any number of requests and approvals
ROLES_TABLE = {**DEFAULTS["ROLES"], "member": {"rank": 5, "limit": None, "requestable": True}}
INVALID_SINCE = {
    "type": "error",
    "code": "invalid_since",
    "detail": '"since" must be an event id (an integer ≥ 0).',
}


@pytest.fixture(autouse=True)
def unlimited_role(settings):
    settings.SALON_INVITATIONS = {"ROLES": ROLES_TABLE}


async def connect(stack: AsyncExitStack, user: Any, path: str = INVITATIONS, **query: Any) -> Any:
    """An open socket of ``user`` (``query`` added to the URL, e.g. ``since=5``)."""
    params = "".join(f"&{name}={value}" for name, value in query.items())
    communicator = WebsocketCommunicator(application, f"{path}?token={token_for(user)}{params}")
    assert await communicator.connect(timeout=WAIT) == (True, None)
    stack.push_async_callback(communicator.disconnect)
    return communicator


async def frames_until_resumed(socket: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The event frames received before ``resumed`` (or ``resync_required``), and that frame."""
    frames = []
    while True:
        frame = await socket.receive_json_from(timeout=WAIT)
        if frame["type"] in ("resumed", "resync_required", "error"):
            return frames, frame
        frames.append(frame)


async def assert_quiet(socket: Any) -> None:
    """Nothing more arrived, and the socket is open and answering."""
    assert await socket.receive_nothing(timeout=0.3)
    await socket.send_json_to({"action": "ping"})
    assert await socket.receive_json_from(timeout=WAIT) == {"type": "pong"}


def rows_after(after: int, stream: str = "invitation") -> list[dict[str, Any]]:
    events = SalonEvent.objects.filter(id__gt=after, kind__startswith=f"{stream}.").order_by("id")
    return [event.frame for event in events]


async def frames_of(*ids: int) -> list[dict[str, Any]]:
    def read() -> list[dict[str, Any]]:
        events = {event.id: event for event in SalonEvent.objects.filter(id__in=ids)}
        return [events[pk].frame for pk in ids]

    return await database_sync_to_async(read)()


def request(salon: Any, role: str = "member", user: Any = None) -> Invitation:
    return services.create_invitation(user=user or factories.make_user(), salon=salon, role=role)


def last_id() -> int:
    return SalonEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def five_missed_changes(salon: Any, owner: Any, other_salon: Any) -> list[int]:
    """Five ``invitation.*`` events of ``salon`` (and a membership event, and events of another
    salon, that the owner's invitation stream never carries); their ids."""
    before = last_id()
    first, second = request(salon), request(salon, role="seller")
    services.approve_invitation(first, actor=owner)  # + membership.created
    request(other_salon)
    services.reject_invitation(second, actor=owner, reason="Full")
    request(salon)
    ids = [
        event.id
        for event in SalonEvent.objects.filter(
            id__gt=before, salon=salon, kind__startswith="invitation."
        ).order_by("id")
    ]
    assert len(ids) == 5
    return ids


# Catching up -----------------------------------------------------------------------------------


async def test_reconnecting_with_since_replays_the_missed_events_then_resumes_live(
    salon, owner, other_salon
):
    async with AsyncExitStack() as stack:
        socket = await connect(stack, owner)
        await database_sync_to_async(request)(salon)
        seen = await socket.receive_json_from(timeout=WAIT)
        assert seen["type"] == "invitation.created"
        await socket.disconnect()

    missed = await database_sync_to_async(five_missed_changes)(salon, owner, other_salon)

    async with AsyncExitStack() as stack:
        socket = await connect(stack, owner, since=seen["id"])
        replayed, resumed = await frames_until_resumed(socket)
        assert replayed == await frames_of(*missed)
        assert [frame["type"] for frame in replayed] == [
            "invitation.created",
            "invitation.created",
            "invitation.approved",
            "invitation.rejected",
            "invitation.created",
        ]
        assert resumed == {"type": "resumed", "last_id": missed[-1]}

        live = await database_sync_to_async(request)(salon)
        frame = await socket.receive_json_from(timeout=WAIT)
        assert frame["type"] == "invitation.created"
        assert frame["invitation"]["id"] == live.pk
        assert frame["id"] > missed[-1]
        assert [frame] == await frames_of(frame["id"])
        await assert_quiet(socket)


async def test_resume_action_on_an_open_socket_replays_then_resumes_live(salon, owner, other_salon):
    since = await database_sync_to_async(last_id)()
    missed = await database_sync_to_async(five_missed_changes)(salon, owner, other_salon)

    async with AsyncExitStack() as stack:
        socket = await connect(stack, owner)
        await socket.send_json_to({"action": "resume", "since": since})
        replayed, resumed = await frames_until_resumed(socket)
        assert replayed == await frames_of(*missed)
        assert resumed == {"type": "resumed", "last_id": missed[-1]}

        await database_sync_to_async(request)(salon)
        frame = await socket.receive_json_from(timeout=WAIT)
        assert frame["type"] == "invitation.created"
        assert frame["id"] > missed[-1]
        await assert_quiet(socket)

        # Resuming again from where the client is sends nothing but ``resumed``.
        await socket.send_json_to({"action": "resume", "since": str(frame["id"])})
        assert await socket.receive_json_from(timeout=WAIT) == {
            "type": "resumed",
            "last_id": frame["id"],
        }
        await assert_quiet(socket)


async def test_a_socket_s_replays_are_paced(salon, owner, monkeypatch):
    """A client that floods ``resume`` costs one replay per ``RESUME_INTERVAL``: the next one
    waits, and each is answered in order."""
    monkeypatch.setattr(consumer, "RESUME_INTERVAL", 0.5)
    since = await database_sync_to_async(last_id)()
    async with AsyncExitStack() as stack:
        socket = await connect(stack, owner, since=since)
        assert await socket.receive_json_from(timeout=WAIT) == {"type": "resumed", "last_id": since}
        started = time.monotonic()
        for _ in range(3):
            await socket.send_json_to({"action": "resume", "since": since})
        for _ in range(3):
            resumed = await socket.receive_json_from(timeout=WAIT)
            assert resumed == {"type": "resumed", "last_id": since}
        # The connect's replay, then three 0.5 s apart.
        assert time.monotonic() - started >= 1.4
        await socket.send_json_to({"action": "ping"})
        assert await socket.receive_json_from(timeout=WAIT) == {"type": "pong"}


async def test_nothing_missed_resumes_at_once_from_the_same_id(salon, owner):
    since = await database_sync_to_async(last_id)()
    async with AsyncExitStack() as stack:
        socket = await connect(stack, owner, since=since)
        assert await socket.receive_json_from(timeout=WAIT) == {"type": "resumed", "last_id": since}
        await assert_quiet(socket)


def _commit_requests(salon: Any, count: int) -> list[int]:
    """``count`` requests committed by another thread on its own database connection; their
    event ids. (Run with ``sync_to_async(thread_sensitive=False)``, so their live frames go
    through the test's event loop as a server's would.)"""
    try:
        before = last_id()
        for _ in range(count):
            request(salon)
        return list(
            SalonEvent.objects.filter(id__gt=before, salon=salon).values_list("id", flat=True)
        )
    finally:
        connection.close()


@pytest.mark.parametrize("how", ["since", "resume"])
async def test_events_committed_while_the_replay_runs_arrive_once_and_none_is_lost(
    salon, owner, other_salon, how
):
    """The replay is made slow on purpose: just before it reads the log, another connection
    commits 3 events (already in the socket's group, so their live frames wait in the channel
    layer too); just after, 4 more. Each must arrive exactly once, in order."""
    since = await database_sync_to_async(last_id)()
    missed = await database_sync_to_async(five_missed_changes)(salon, owner, other_salon)
    committed: dict[str, list[int]] = {}
    commit = async_to_sync(sync_to_async(_commit_requests, thread_sensitive=False))
    original = SalonEventsConsumer._missed

    def slow_missed(self: SalonEventsConsumer, after: int) -> Any:
        committed["before"] = commit(salon, 3)
        result = original(self, after)
        committed["after"] = commit(salon, 4)
        return result

    async with AsyncExitStack() as stack:
        with mock.patch.object(SalonEventsConsumer, "_missed", slow_missed):
            if how == "since":
                socket = await connect(stack, owner, since=since)
            else:
                socket = await connect(stack, owner)
                await socket.send_json_to({"action": "resume", "since": since})
            replayed, resumed = await frames_until_resumed(socket)
            live = [await socket.receive_json_from(timeout=WAIT) for _ in committed["after"]]

        assert len(committed["before"]) == 3
        assert len(committed["after"]) == 4
        expected_replay = [*missed, *committed["before"]]
        assert [frame["id"] for frame in replayed] == expected_replay
        assert replayed == await frames_of(*expected_replay)
        assert resumed == {"type": "resumed", "last_id": expected_replay[-1]}
        assert [frame["id"] for frame in live] == committed["after"]
        assert live == await frames_of(*committed["after"])
        # No duplicate came after (the live frames of the replayed events were dropped), and
        # everything the owner may see after ``since`` arrived: no gap.
        await assert_quiet(socket)
        everything = await database_sync_to_async(rows_after)(since)
        assert [*replayed, *live] == [f for f in everything if f["invitation"]["salon"] == salon.pk]


async def test_more_missed_than_the_replay_limit_asks_for_a_resync(
    settings, salon, owner, other_salon
):
    settings.SALON_INVITATIONS = {"ROLES": ROLES_TABLE, "REPLAY_LIMIT": 4}
    since = await database_sync_to_async(last_id)()
    await database_sync_to_async(five_missed_changes)(salon, owner, other_salon)
    latest = await database_sync_to_async(last_id)()

    async with AsyncExitStack() as stack:
        socket = await connect(stack, owner, since=since)
        assert await socket.receive_json_from(timeout=WAIT) == {
            "type": "resync_required",
            "last_id": latest,
        }
        # Still open and live; resuming from ``last_id`` after reloading works.
        await database_sync_to_async(request)(salon)
        frame = await socket.receive_json_from(timeout=WAIT)
        assert (frame["type"], frame["id"] > latest) == ("invitation.created", True)
        await socket.send_json_to({"action": "resume", "since": latest})
        replayed, resumed = await frames_until_resumed(socket)
        assert replayed == [frame]
        assert resumed == {"type": "resumed", "last_id": frame["id"]}
        await assert_quiet(socket)

    # Exactly at the limit (the five and the live one) is a replay, not a resync.
    settings.SALON_INVITATIONS = {"ROLES": ROLES_TABLE, "REPLAY_LIMIT": 6}
    async with AsyncExitStack() as stack:
        socket = await connect(stack, owner, since=since)
        replayed, resumed = await frames_until_resumed(socket)
        assert resumed == {"type": "resumed", "last_id": frame["id"]}
        assert len(replayed) == 6


# Who is replayed what --------------------------------------------------------------------------


async def test_a_manager_demoted_since_is_replayed_none_of_the_salon_s_events(
    salon, owner, admin_member, other_salon
):
    membership = await database_sync_to_async(
        lambda: get_membership_model()._default_manager.get(salon=salon, user=admin_member)
    )()
    since = await database_sync_to_async(last_id)()
    await database_sync_to_async(five_missed_changes)(salon, owner, other_salon)
    await database_sync_to_async(services.change_role)(membership, role="seller", actor=owner)
    after_demotion = await database_sync_to_async(last_id)()

    async with AsyncExitStack() as stack:
        invitations = await connect(stack, admin_member, since=since)
        assert await invitations.receive_json_from(timeout=WAIT) == {
            "type": "resumed",
            "last_id": since,
        }
        roles = await connect(stack, admin_member, ROLES, since=since)
        replayed, resumed = await frames_until_resumed(roles)
        # Of the salon's membership events, only the one about them.
        assert [(f["type"], f["membership"]["user"]) for f in replayed] == [
            ("membership.updated", admin_member.pk)
        ]
        assert replayed[0]["previous_role"] == "admin"
        assert resumed == {"type": "resumed", "last_id": after_demotion}
        await assert_quiet(invitations)
        await assert_quiet(roles)

    # Removed from the salon altogether: still only what is about them.
    membership = await database_sync_to_async(
        lambda: get_membership_model()._default_manager.get(salon=salon, user=admin_member)
    )()
    await database_sync_to_async(services.remove_membership)(membership, actor=owner)
    async with AsyncExitStack() as stack:
        roles = await connect(stack, admin_member, ROLES, since=since)
        replayed, _ = await frames_until_resumed(roles)
        assert [(f["type"], f["membership"]["user"]) for f in replayed] == [
            ("membership.updated", admin_member.pk),
            ("membership.deleted", admin_member.pk),
        ]


async def test_a_requester_is_replayed_the_events_about_themselves_only(
    salon, owner, requester, other_salon
):
    since = await database_sync_to_async(last_id)()

    def changes() -> None:
        five_missed_changes(salon, owner, other_salon)
        mine = request(salon, user=requester)
        request(other_salon, user=requester)
        services.approve_invitation(mine, actor=owner)

    await database_sync_to_async(changes)()

    async with AsyncExitStack() as stack:
        socket = await connect(stack, requester, since=since)
        replayed, _ = await frames_until_resumed(socket)
        assert [(f["type"], f["invitation"]["salon"]) for f in replayed] == [
            ("invitation.created", salon.pk),
            ("invitation.created", other_salon.pk),
            ("invitation.approved", salon.pk),
        ]
        assert {f["invitation"]["user"] for f in replayed} == {requester.pk}
        roles = await connect(stack, requester, ROLES, since=since)
        replayed, _ = await frames_until_resumed(roles)
        assert [(f["type"], f["membership"]["user"]) for f in replayed] == [
            ("membership.created", requester.pk)
        ]


async def test_another_salon_s_events_are_never_replayed(salon, owner, other_salon):
    other_owner = await database_sync_to_async(lambda: other_salon.owner)()
    since = await database_sync_to_async(last_id)()
    await database_sync_to_async(five_missed_changes)(salon, owner, other_salon)

    async with AsyncExitStack() as stack:
        socket = await connect(stack, other_owner, since=since)
        replayed, _ = await frames_until_resumed(socket)
        assert replayed
        assert {f["invitation"]["salon"] for f in replayed} == {other_salon.pk}
        socket = await connect(stack, owner, since=since)
        replayed, _ = await frames_until_resumed(socket)
        assert {f["invitation"]["salon"] for f in replayed} == {salon.pk}


@pytest.mark.parametrize(("path", "stream"), [(INVITATIONS, "invitation"), (ROLES, "membership")])
async def test_each_route_replays_its_own_stream_only(salon, owner, other_salon, path, stream):
    since = await database_sync_to_async(last_id)()
    await database_sync_to_async(five_missed_changes)(salon, owner, other_salon)
    expected = [
        frame
        for frame in await database_sync_to_async(rows_after)(since, stream)
        if frame[stream]["salon"] == salon.pk
    ]
    assert expected

    async with AsyncExitStack() as stack:
        socket = await connect(stack, owner, path, since=since)
        replayed, resumed = await frames_until_resumed(socket)
        assert replayed == expected
        assert {frame["type"].split(".")[0] for frame in replayed} == {stream}
        assert resumed == {"type": "resumed", "last_id": expected[-1]["id"]}


# Bad values ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "since",
    ["abc", "-1", "1.5", "99999999999999999999", "9223372036854775808", "", "%20", "1e3", "%D9%A3"],
)
async def test_a_bad_since_in_the_url_gets_an_error_and_the_socket_stays_open(salon, owner, since):
    async with AsyncExitStack() as stack:
        socket = await connect(stack, owner, since=since)
        assert await socket.receive_json_from(timeout=WAIT) == INVALID_SINCE
        await assert_quiet(socket)
        await database_sync_to_async(request)(salon)
        assert (await socket.receive_json_from(timeout=WAIT))["type"] == "invitation.created"


@pytest.mark.parametrize(
    "since", ["abc", "-1", -1, 1.5, "1.5", 10**30, True, False, None, "", [], {}, "٣"]
)
async def test_a_bad_since_in_resume_gets_an_error_and_the_socket_stays_open(salon, owner, since):
    async with AsyncExitStack() as stack:
        socket = await connect(stack, owner)
        await socket.send_json_to({"action": "resume", "since": since})
        assert await socket.receive_json_from(timeout=WAIT) == INVALID_SINCE
        await assert_quiet(socket)
        await socket.send_json_to({"action": "resume"})
        assert await socket.receive_json_from(timeout=WAIT) == INVALID_SINCE
        await database_sync_to_async(request)(salon)
        assert (await socket.receive_json_from(timeout=WAIT))["type"] == "invitation.created"


async def test_a_since_beyond_the_newest_event_asks_for_a_resync(salon, owner):
    """The largest id is a valid ``since``, but no event has it: a cursor from beyond the log
    (a database restored from a backup) cannot be answered by a replay."""
    await database_sync_to_async(request)(salon)
    newest = await database_sync_to_async(last_id)()
    async with AsyncExitStack() as stack:
        socket = await connect(stack, owner, since=2**63 - 1)
        assert await socket.receive_json_from(timeout=WAIT) == {
            "type": "resync_required",
            "last_id": newest,
        }
        await assert_quiet(socket)
        # Resuming from the id it was given works as usual.
        await socket.send_json_to({"action": "resume", "since": newest})
        assert await socket.receive_json_from(timeout=WAIT) == {
            "type": "resumed",
            "last_id": newest,
        }


async def test_replayed_frames_equal_the_live_ones(salon, owner, other_salon):
    """What a client gets on replay is byte for byte what it would have got live."""
    since = await database_sync_to_async(last_id)()
    async with AsyncExitStack() as stack:
        socket = await connect(stack, owner)
        await database_sync_to_async(five_missed_changes)(salon, owner, other_salon)
        live = [await socket.receive_json_from(timeout=WAIT) for _ in range(5)]
        await assert_quiet(socket)
    async with AsyncExitStack() as stack:
        socket = await connect(stack, owner, since=since)
        replayed, _ = await frames_until_resumed(socket)
    assert replayed == live
