"""The WebSocket consumer (SPEC §4): who may connect, who hears what, and the frames' shape.

Every state change goes through the services in a worker thread (``database_sync_to_async``)
and commits, so events leave through ``transaction.on_commit`` exactly as in production. The
channel layer is the in-memory one, or Redis with ``SALON_TEST_CHANNEL_LAYER=redis`` (or
``redis-pubsub``).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from channels_redis.pubsub import RedisPubSubChannelLayer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import Client
from django.utils import timezone
from rest_framework.utils.encoders import JSONEncoder
from rest_framework_simplejwt.tokens import AccessToken

from salon_invitations import services
from salon_invitations.middleware import JWTAuthMiddlewareStack
from salon_invitations.models import Invitation, SalonEvent, get_membership_model
from salon_invitations.notifications import group_name
from salon_invitations.routing import websocket_urlpatterns
from salon_invitations.serializers import InvitationSerializer, MembershipSerializer
from tests import factories

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.django_db(transaction=True),
    # The test settings' SECRET_KEY (the JWT signing key) is deliberately short.
    pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning"),
]

ROOT = Path(__file__).resolve().parent.parent
application = JWTAuthMiddlewareStack(URLRouter(websocket_urlpatterns))

INVITATIONS = "/api/invitation_to_auto_salon/"
ROLES = "/api/salon_role/"
REFUSED = {"type": "websocket.close", "code": 4401}

#: who hears of a change to an invitation of ``cast.salon`` asked for by ``cast.requester``
RECIPIENTS = ("requester", "owner", "admin")
#: who must not: a seller of the salon, the owner of another salon, a platform operator, a stranger
OUTSIDERS = ("seller", "other_owner", "staff", "stranger")


@dataclass
class Cast:
    salon: Any
    owner: Any
    admin: Any
    seller: Any
    requester: Any
    other_owner: Any
    staff: Any
    stranger: Any


@pytest.fixture
def cast(salon, owner, admin_member, seller_member, requester, other_salon, staff):
    return Cast(
        salon=salon,
        owner=owner,
        admin=admin_member,
        seller=seller_member,
        requester=requester,
        other_owner=get_user_model().objects.get(pk=other_salon.owner_id),
        staff=staff,
        stranger=factories.make_user("stranger"),
    )


def token_for(user: Any) -> str:
    return str(AccessToken.for_user(user))


async def open_socket(stack: AsyncExitStack, user: Any, path: str = INVITATIONS) -> Any:
    """A connected, authenticated socket, closed when ``stack`` exits."""
    communicator = WebsocketCommunicator(application, f"{path}?token={token_for(user)}")
    connected, subprotocol = await communicator.connect()
    assert (connected, subprotocol) == (True, None)
    stack.push_async_callback(communicator.disconnect)
    return communicator


async def assert_refused(communicator: WebsocketCommunicator) -> None:
    """Accepted (so a browser sees the code), then closed at once with 4401."""
    connected, _ = await communicator.connect()
    assert connected is True
    assert await communicator.receive_output(timeout=1) == REFUSED
    await communicator.disconnect()


async def assert_silent(*sockets: WebsocketCommunicator) -> None:
    """Nothing arrived on any socket, and each is still open and answering."""
    quiet = await asyncio.gather(*(s.receive_nothing(timeout=0.2) for s in sockets))
    assert all(quiet), quiet
    for socket in sockets:
        await socket.send_json_to({"action": "ping"})
        assert await socket.receive_json_from(timeout=1) == {"type": "pong"}


def without_id(frame: dict[str, Any]) -> dict[str, Any]:
    """An event frame without its event log id (checked to be the logged event's)."""
    rest = dict(frame)
    event_id = rest.pop("id")
    assert isinstance(event_id, int) and event_id > 0, frame
    return rest


def as_json(data: Any) -> Any:
    return json.loads(json.dumps(data, cls=JSONEncoder))


def invitation_json(pk: Any) -> dict[str, Any]:
    """The invitation as the REST API shows it (sync; call in a worker thread)."""
    return as_json(InvitationSerializer(Invitation.objects.get(pk=pk)).data)


def membership_json(membership: Any) -> dict[str, Any]:
    return as_json(MembershipSerializer(membership).data)


def _pending(cast: Cast, kind: str) -> Invitation | None:
    """The invitation the change of ``kind`` acts on (none for a creation)."""
    if kind == "created":
        return None
    invitation = services.create_invitation(
        user=cast.requester, salon=cast.salon, role="mechanic", message="Hello"
    )
    if kind == "expired":
        Invitation.objects.filter(pk=invitation.pk).update(
            expires_at=timezone.now() - timedelta(minutes=1)
        )
    return invitation


def _change(cast: Cast, kind: str, invitation: Invitation | None) -> dict[str, Any]:
    """Make the change through the services; return the invitation as the REST API shows it."""
    if kind == "created":
        invitation = services.create_invitation(
            user=cast.requester, salon=cast.salon, role="mechanic", message="Hello"
        )
        shown = invitation_json(invitation.pk)
        assert shown["status"] == "pending"
        return shown
    assert invitation is not None
    if kind == "deleted":
        shown = invitation_json(invitation.pk)
        services.delete_invitation(invitation, actor=cast.owner)
        assert not Invitation.objects.filter(pk=invitation.pk).exists()
        return shown
    if kind == "approved":
        services.approve_invitation(invitation, actor=cast.owner)
    elif kind == "rejected":
        services.reject_invitation(invitation, actor=cast.admin, reason="No room this year.")
    elif kind == "cancelled":
        services.cancel_invitation(invitation, actor=cast.requester)
    elif kind == "expired":
        assert services.expire_invitations() == 1
    shown = invitation_json(invitation.pk)
    assert shown["status"] == kind
    return shown


# Authentication -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [INVITATIONS, ROLES])
async def test_anonymous_connection_is_closed_with_4401(path):
    await assert_refused(WebsocketCommunicator(application, path))


async def test_token_in_query_string_connects_as_its_user(cast):
    async with AsyncExitStack() as stack:
        socket = await open_socket(stack, cast.requester)
        shown = await database_sync_to_async(_change)(cast, "created", None)
        assert without_id(await socket.receive_json_from(timeout=2)) == {
            "type": "invitation.created",
            "invitation": shown,
        }


async def test_bearer_subprotocol_connects_and_is_accepted_as_bearer(cast):
    communicator = WebsocketCommunicator(
        application, INVITATIONS, subprotocols=["bearer", token_for(cast.requester)]
    )
    connected, subprotocol = await communicator.connect()
    try:
        assert (connected, subprotocol) == (True, "bearer")
        await hears_a_request_created(communicator, cast)
    finally:
        await communicator.disconnect()


async def session_cookie(user: Any) -> bytes:
    """The ``Cookie`` header of a session logged in as ``user``."""

    def login() -> str:
        client = Client()
        client.force_login(user)
        return client.cookies[settings.SESSION_COOKIE_NAME].value

    session = await database_sync_to_async(login)()
    return f"{settings.SESSION_COOKIE_NAME}={session}".encode()


async def hears_a_request_created(communicator: WebsocketCommunicator, cast: Any) -> None:
    """A request is created in the cast's salon; the socket receives its frame."""
    shown = await database_sync_to_async(_change)(cast, "created", None)
    assert without_id(await communicator.receive_json_from(timeout=2)) == {
        "type": "invitation.created",
        "invitation": shown,
    }


async def test_session_cookie_connects_as_its_user(cast):
    cookie = await session_cookie(cast.requester)
    communicator = WebsocketCommunicator(application, INVITATIONS, headers=[(b"cookie", cookie)])
    connected, _ = await communicator.connect()
    try:
        assert connected is True
        await hears_a_request_created(communicator, cast)
    finally:
        await communicator.disconnect()


def _expired(user: Any) -> str:
    token = AccessToken.for_user(user)
    token.set_exp(from_time=timezone.now() - timedelta(hours=2), lifetime=timedelta(minutes=5))
    return str(token)


def _garbage(user: Any) -> str:
    return "not-a-jwt"


def _tampered(user: Any) -> str:
    header, payload, signature = token_for(user).split(".")
    return f"{header}.{payload}.{signature[::-1]}"


def _inactive_user(user: Any) -> str:
    token = token_for(user)
    get_user_model().objects.filter(pk=user.pk).update(is_active=False)
    return token


def _deleted_user(user: Any) -> str:
    token = token_for(user)
    get_user_model().objects.filter(pk=user.pk).delete()
    return token


ARABIC_DIGITS = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def _forged(name: str = "", **claims: Any) -> Callable[[Any], str]:
    """A token signed with the project's key (only its holder can make one) whose claims are
    not what they must be; a claim given as a function is computed from the user."""

    def make(user: Any) -> str:
        token = AccessToken.for_user(user)
        for claim, value in claims.items():
            token.payload[claim] = value(user) if callable(value) else value
        return str(token)

    make.__name__ = "_forged_" + (name or "_".join(f"{k}_{v!r}" for k, v in claims.items()))
    return make


BAD_TOKENS = [
    _expired,
    _garbage,
    _tampered,
    _inactive_user,
    _deleted_user,
    _forged(user_id="abc"),
    _forged(user_id={"a": 1}),
    _forged(user_id=[1]),
    # Values the database would take for the user's own id.
    _forged("float_id", user_id=lambda user: user.pk + 0.5),
    _forged("true_id", user_id=lambda user: True),
    _forged("padded_id", user_id=lambda user: f" {user.pk}"),
    _forged("zero_led_id", user_id=lambda user: f"0{user.pk}"),
    _forged("arabic_digits_id", user_id=lambda user: str(user.pk).translate(ARABIC_DIGITS)),
    _forged("exponent_id", user_id=lambda user: f"{user.pk}e0"),
    _forged(exp=1e20),
    _forged(exp=1e300),
]


@pytest.mark.parametrize("make_token", BAD_TOKENS, ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize("transport", ["query", "subprotocol"])
async def test_invalid_token_is_refused(make_token: Callable[[Any], str], transport: str):
    user = await database_sync_to_async(factories.make_user)()
    token = await database_sync_to_async(make_token)(user)
    if transport == "query":
        communicator = WebsocketCommunicator(application, f"{INVITATIONS}?token={token}")
    else:
        communicator = WebsocketCommunicator(
            application, INVITATIONS, subprotocols=["bearer", token]
        )
    await assert_refused(communicator)


@pytest.mark.parametrize("order", ["bad_last", "good_last"])
async def test_a_repeated_token_parameter_means_its_last_value(cast, order):
    # As Django's QueryDict.get answers for a repeated parameter.
    good = await database_sync_to_async(token_for)(cast.requester)
    tokens = ["not-a-jwt", good] if order == "good_last" else [good, "not-a-jwt"]
    path = f"{INVITATIONS}?token={tokens[0]}&token={tokens[1]}"
    if order == "bad_last":
        await assert_refused(WebsocketCommunicator(application, path))
        return
    communicator = WebsocketCommunicator(application, path)
    connected, _ = await communicator.connect()
    try:
        assert connected
        await hears_a_request_created(communicator, cast)
    finally:
        await communicator.disconnect()


@pytest.mark.parametrize("query", ["?token=", "?token", "?token={good}&token="])
async def test_an_empty_token_is_refused_even_beside_a_valid_session(cast, query):
    # As the bearer subprotocol with no token is: a URL that gives a token never falls back
    # to the session's user.
    good = await database_sync_to_async(token_for)(cast.requester)
    cookie = await session_cookie(cast.requester)
    path = INVITATIONS + query.format(good=good)
    await assert_refused(WebsocketCommunicator(application, path, headers=[(b"cookie", cookie)]))


async def test_invalid_token_wins_over_a_valid_session(cast):
    cookie = await session_cookie(cast.requester)
    communicator = WebsocketCommunicator(
        application, f"{INVITATIONS}?token=not-a-jwt", headers=[(b"cookie", cookie)]
    )
    await assert_refused(communicator)


async def test_a_handshake_with_a_token_costs_one_query_even_beside_a_session(
    cast, queries_in_every_thread
):
    """The user, in one statement; the session of the cookie that comes with it (another
    user's here) is not read: the token wins anyway."""
    cookie = await session_cookie(cast.owner)
    communicator = WebsocketCommunicator(
        application,
        f"{INVITATIONS}?token={token_for(cast.requester)}",
        headers=[(b"cookie", cookie)],
    )
    queries_in_every_thread.clear()
    connected, _ = await communicator.connect()
    try:
        assert connected is True
        assert await communicator.receive_nothing(timeout=0.1)  # accepted, not closed
        assert len(queries_in_every_thread) == 1, queries_in_every_thread
        table = get_user_model()._meta.db_table
        assert table in queries_in_every_thread[0]
        # The token's user, not the session's: the requester hears of their own request.
        await hears_a_request_created(communicator, cast)
    finally:
        await communicator.disconnect()


@pytest.mark.parametrize("make_token", BAD_TOKENS, ids=lambda f: f.__name__.strip("_"))
async def test_a_refused_token_costs_one_query_at_most(make_token, queries_in_every_thread):
    user = await database_sync_to_async(factories.make_user)()
    token = await database_sync_to_async(make_token)(user)
    queries_in_every_thread.clear()
    await assert_refused(WebsocketCommunicator(application, f"{INVITATIONS}?token={token}"))
    # Expired, malformed or tampered: none; inactive or deleted user: the user's row.
    expected = 1 if make_token in (_inactive_user, _deleted_user) else 0
    assert len(queries_in_every_thread) == expected, queries_in_every_thread


async def test_blacklisted_token_is_refused():
    """Runs ``tests/jwt_blacklist_case.py`` in a child pytest with the blacklist app installed.

    simplejwt's blacklist models are abstract unless the app is installed when they are first
    imported, so the case cannot run in this process.
    """
    env = {name: value for name, value in os.environ.items() if name != "PYTEST_ADDOPTS"}
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings_jwt_blacklist",
        SALON_TEST_BASE_SETTINGS=settings.SETTINGS_MODULE,
        # Its own test database on PostgreSQL or MariaDB, next to this run's.
        PGDATABASE=os.environ.get("PGDATABASE", "salon_invitations") + "_jwt_blacklist",
        MYSQL_DATABASE=os.environ.get("MYSQL_DATABASE", "salon_invitations") + "_jwt_blacklist",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pytest",
        "tests/jwt_blacklist_case.py",
        "-q",
        "-p",
        "no:cacheprovider",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        raise
    report = output.decode(errors="replace")
    assert process.returncode == 0, report
    assert "1 passed" in report, report


# Events ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind", ["created", "approved", "rejected", "cancelled", "deleted", "expired"]
)
async def test_invitation_event_reaches_requester_and_managers_only(cast, kind):
    invitation = await database_sync_to_async(_pending)(cast, kind)
    async with AsyncExitStack() as stack:
        sockets = {name: await open_socket(stack, getattr(cast, name)) for name in RECIPIENTS}
        outsiders = [await open_socket(stack, getattr(cast, name)) for name in OUTSIDERS]

        shown = await database_sync_to_async(_change)(cast, kind, invitation)

        assert shown["user"] == cast.requester.pk
        assert shown["salon"] == cast.salon.pk
        frame = {"type": f"invitation.{kind}", "invitation": shown}
        for name, socket in sockets.items():
            assert without_id(await socket.receive_json_from(timeout=2)) == frame, name
        await assert_silent(*sockets.values(), *outsiders)


async def test_membership_events_use_the_roles_route_only(cast):
    invitation = await database_sync_to_async(_pending)(cast, "approved")
    async with AsyncExitStack() as stack:
        roles = {name: await open_socket(stack, getattr(cast, name), ROLES) for name in RECIPIENTS}
        role_outsiders = [await open_socket(stack, getattr(cast, n), ROLES) for n in OUTSIDERS]
        invitations = {name: await open_socket(stack, getattr(cast, name)) for name in RECIPIENTS}

        await database_sync_to_async(services.approve_invitation)(invitation, actor=cast.owner)

        def created_membership() -> Any:
            return get_membership_model()._default_manager.get(
                salon=cast.salon, user=cast.requester
            )

        membership = await database_sync_to_async(created_membership)()
        shown = await database_sync_to_async(membership_json)(membership)
        assert (shown["user"], shown["salon"], shown["role"]) == (
            cast.requester.pk,
            cast.salon.pk,
            "mechanic",
        )
        for name, socket in roles.items():
            assert without_id(await socket.receive_json_from(timeout=2)) == {
                "type": "membership.created",
                "membership": shown,
            }, name
        for name, socket in invitations.items():
            frame = await socket.receive_json_from(timeout=2)
            assert frame["type"] == "invitation.approved", name
        await assert_silent(*roles.values(), *role_outsiders, *invitations.values())

        await database_sync_to_async(services.remove_membership)(membership, actor=cast.owner)

        for name, socket in roles.items():
            assert without_id(await socket.receive_json_from(timeout=2)) == {
                "type": "membership.deleted",
                "membership": shown,
            }, name
        await assert_silent(*roles.values(), *role_outsiders, *invitations.values())


async def test_rolled_back_change_sends_nothing(cast):
    def create_then_fail() -> None:
        with pytest.raises(RuntimeError), transaction.atomic():
            services.create_invitation(user=cast.requester, salon=cast.salon, role="mechanic")
            raise RuntimeError("rolled back")

    async with AsyncExitStack() as stack:
        owner = await open_socket(stack, cast.owner)
        requester = await open_socket(stack, cast.requester)
        logged = await database_sync_to_async(SalonEvent.objects.count)()

        await database_sync_to_async(create_then_fail)()

        assert await database_sync_to_async(Invitation.objects.count)() == 0
        assert await database_sync_to_async(SalonEvent.objects.count)() == logged
        await assert_silent(owner, requester)
        # The same change, committed, is heard: the silence above was the rollback's doing.
        shown = await database_sync_to_async(_change)(cast, "created", None)
        frame = {"type": "invitation.created", "invitation": shown}
        assert without_id(await owner.receive_json_from(timeout=2)) == frame
        assert without_id(await requester.receive_json_from(timeout=2)) == frame


# Client frames --------------------------------------------------------------------------------


async def test_bad_frames_get_error_frames_and_the_socket_stays_open(cast):
    invalid_json = {
        "type": "error",
        "code": "invalid_json",
        "detail": "Frames must be JSON objects.",
    }
    async with AsyncExitStack() as stack:
        socket = await open_socket(stack, cast.requester)

        await socket.send_to(text_data="{not json")
        assert await socket.receive_json_from() == invalid_json

        await socket.send_to(bytes_data=b"\x80\x81 not utf-8")
        assert await socket.receive_json_from() == invalid_json

        # Hostile nesting is refused like any bad JSON, not a crashed consumer (1011).
        await socket.send_to(text_data="[" * 100_000 + "]" * 100_000)
        assert await socket.receive_json_from() == invalid_json

        await socket.send_json_to({"action": "dance"})
        assert await socket.receive_json_from() == {
            "type": "error",
            "code": "unknown_action",
            "detail": "Unknown action 'dance'; known: ping, authenticate, resume.",
        }

        await socket.send_json_to(["ping"])
        assert await socket.receive_json_from() == {
            "type": "error",
            "code": "unknown_action",
            "detail": "Unknown action None; known: ping, authenticate, resume.",
        }

        await socket.send_json_to({"action": "ping"})
        assert await socket.receive_json_from() == {"type": "pong"}
        assert await socket.receive_nothing(timeout=0.1)


# Groups ---------------------------------------------------------------------------------------


async def group_members(group: str) -> set[str]:
    """The channel names in ``group`` on the configured layer (in-memory, Redis, or Redis
    pub/sub, where a group is this process's channels and its subscription in Redis)."""
    layer = get_channel_layer()
    if isinstance(layer, InMemoryChannelLayer):
        return set(layer.groups.get(group, {}))
    if isinstance(layer, RedisPubSubChannelLayer):
        local = layer._get_layer()
        name = local._get_group_channel_name(group)
        members = set(local.groups.get(name, ()))
        # Subscribed in Redis exactly while the group has a member here.
        assert (name in local._get_shard(name)._subscribed_to) == bool(members)
        return members
    redis = layer.connection(layer.consistent_hash(group))
    return {name.decode() for name in await redis.zrange(layer._group_key(group), 0, -1)}


@pytest.mark.parametrize(("path", "stream"), [(INVITATIONS, "invitation"), (ROLES, "membership")])
async def test_socket_leaves_its_group_on_disconnect(cast, path, stream):
    group = group_name(stream, cast.requester.pk)
    before = await group_members(group)

    communicator = WebsocketCommunicator(application, f"{path}?token={token_for(cast.requester)}")
    assert await communicator.connect() == (True, None)
    joined = await group_members(group) - before
    assert len(joined) == 1
    await communicator.disconnect()

    assert await group_members(group) == before
    # Sending to the group afterwards reaches no one and raises nothing.
    await get_channel_layer().group_send(
        group, {"type": "salon_invitations.event", "frame": {"type": "pong"}}
    )
    assert await group_members(group) == before


@pytest.mark.parametrize("failures", [1, 2])
async def test_a_channel_layer_that_fails_the_join_gets_a_retry_then_a_close_to_retry(
    cast, monkeypatch, failures
):
    """A connection the layer's server dropped fails one join and is retried; a layer that
    keeps failing gets the socket closed with 4503 (try again later), never an HTTP 500."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    layer = get_channel_layer()
    real_group_add = layer.group_add
    left = [failures]

    async def group_add(group: str, channel: str) -> None:
        if left[0]:
            left[0] -= 1
            raise RedisConnectionError("Connection closed by server.")
        await real_group_add(group, channel)

    monkeypatch.setattr(layer, "group_add", group_add)
    communicator = WebsocketCommunicator(
        application,
        f"{INVITATIONS}?token=" + (await database_sync_to_async(token_for)(cast.requester)),
    )
    connected, _ = await communicator.connect()
    assert connected is True
    try:
        if failures == 2:
            assert await communicator.receive_output(timeout=2) == {
                "type": "websocket.close",
                "code": 4503,
            }
        else:
            await hears_a_request_created(communicator, cast)
    finally:
        await communicator.disconnect()


async def accepted_consumer(
    user: Any, send: Callable[[dict[str, Any]], Any], query: str = ""
) -> tuple[asyncio.Task[None], asyncio.Queue[dict[str, Any]]]:
    """The application run as a server runs it, with ``send`` as the server's send: the
    consumer's task, once it accepted ``user``'s socket, and the queue of its messages in."""
    token = await database_sync_to_async(token_for)(user)
    scope = WebsocketCommunicator(application, f"{INVITATIONS}?token={token}{query}").scope
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    accepted = asyncio.Event()

    async def server_send(message: dict[str, Any]) -> None:
        if message["type"] == "websocket.accept":
            accepted.set()
        await send(message)

    await inbox.put({"type": "websocket.connect"})
    consumer = asyncio.create_task(application(scope, inbox.get, server_send))
    await asyncio.wait_for(accepted.wait(), 5)
    return consumer, inbox


@pytest.mark.parametrize("gone", ["OSError", "autobahn"])
async def test_a_client_gone_before_a_frame_is_sent_ends_the_socket_without_an_error(cast, gone):
    """A client that closes while its connect-time replay is being sent: the server raises on
    the send (uvicorn an OSError, daphne autobahn's Disconnected). The frame is dropped, the
    client's disconnect still leaves the groups, and the consumer ends without an exception
    (which daphne would log as a traceback)."""
    from autobahn.exception import Disconnected

    await database_sync_to_async(services.create_invitation)(
        user=cast.requester, salon=cast.salon, role="mechanic"
    )
    error = OSError("client gone") if gone == "OSError" else Disconnected("closed protocol")
    group = group_name("invitation", cast.requester.pk)
    before = await group_members(group)
    received: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send":
            raise error
        received.append(message)

    consumer, inbox = await accepted_consumer(cast.requester, send, "&since=0")
    await inbox.put({"type": "websocket.disconnect", "code": 1006})
    await asyncio.wait_for(consumer, 5)  # re-raises what ended the consumer

    assert received == [{"type": "websocket.accept", "subprotocol": None}]
    assert await group_members(group) == before


async def test_a_consumer_the_server_cancels_still_leaves_its_groups(cast):
    """daphne cancels a consumer still busy ``application_close_timeout`` after its client left
    (with frames the client queued before it closed, say): ``disconnect`` never runs, and the
    groups must not keep the dead channel (nor the layer its messages) until the group expiry."""
    group = group_name("invitation", cast.requester.pk)
    before = await group_members(group)

    async def send(message: dict[str, Any]) -> None:
        pass

    consumer, _inbox = await accepted_consumer(cast.requester, send)
    assert len(await group_members(group) - before) == 1

    consumer.cancel()  # what daphne does after application_close_timeout
    # Cancelled, or what channels-redis raises when its pending receive is cancelled.
    await asyncio.wait([consumer], timeout=10)
    assert consumer.done()
    for _ in range(50):  # the groups are left in a shielded task
        if await group_members(group) == before:
            break
        await asyncio.sleep(0.02)
    assert await group_members(group) == before


async def test_a_join_that_reached_the_layer_but_timed_out_is_left(cast, monkeypatch):
    """A stalled layer that added the socket to its group but never answered: the socket is
    closed with 4503 after ``JOIN_TIMEOUT``, and leaves that group all the same."""
    from salon_invitations import consumer

    layer = get_channel_layer()
    real_group_add = layer.group_add

    async def group_add(group: str, channel: str) -> None:
        await real_group_add(group, channel)
        await asyncio.sleep(60)  # the answer never comes

    monkeypatch.setattr(consumer, "JOIN_TIMEOUT", 0.3)
    monkeypatch.setattr(layer, "group_add", group_add)
    group = group_name("invitation", cast.requester.pk)
    before = await group_members(group)
    communicator = WebsocketCommunicator(
        application,
        f"{INVITATIONS}?token=" + (await database_sync_to_async(token_for)(cast.requester)),
    )
    assert (await communicator.connect())[0] is True
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4503}
    await communicator.disconnect()
    assert await group_members(group) == before
