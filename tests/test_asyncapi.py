"""The AsyncAPI document of the WebSocket protocol (``docs/asyncapi.yaml``).

It is sound (AsyncAPI 3.0, references that resolve, valid JSON Schemas, examples that match),
it documents what the package sends (the routes, every event kind, every error and close
code), and its validators refuse frames it does not describe. That every frame the suite
sees matches it is checked by the autouse fixture ``frames_match_asyncapi`` (``conftest.py``).
"""

from __future__ import annotations

import ast
import copy
import inspect
from collections.abc import Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken

import salon_invitations
from salon_invitations import consumer, services
from salon_invitations.consumer import CLOSE_TRY_AGAIN, CLOSE_UNAUTHENTICATED
from salon_invitations.middleware import JWTAuthMiddlewareStack
from salon_invitations.models import Invitation
from salon_invitations.notifications import (
    STREAMS,
    close_session_sockets,
    close_user_sockets,
    group_name,
)
from salon_invitations.routing import websocket_urlpatterns
from salon_invitations.signals import SIGNALS
from tests import factories
from tests.asyncapi_support import (
    VALIDATOR,
    client_messages,
    close_codes,
    document,
    follow,
    frame_problem,
    lookup,
    pointer,
    server_messages,
    stream_channels,
)

CHANNELS = sorted(document()["channels"])


def references(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every ``$ref`` in ``node``, with the JSON pointer of the object holding it."""
    if isinstance(node, dict):
        if "$ref" in node:
            yield path, node["$ref"]
        for key, value in node.items():
            yield from references(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from references(value, f"{path}/{index}")


def event_kinds(channel: str) -> set[str]:
    """The event frames documented on ``channel``: the messages that carry an event ``id``."""
    return {
        name
        for name, message in server_messages(channel).items()
        if "id" in message.payload["required"]
    }


def example(key: str, index: int = 0) -> dict[str, Any]:
    """A copy of the payload of a message's example."""
    return copy.deepcopy(document()["components"]["messages"][key]["examples"][index]["payload"])


# The document is sound -------------------------------------------------------------------------


def test_the_document_is_asyncapi_3_for_this_version_of_the_package():
    spec = document()
    assert spec["asyncapi"] == "3.0.0"
    assert spec["info"]["version"] == salon_invitations.__version__, (
        "docs/asyncapi.yaml's info.version follows the package's __version__"
    )
    assert spec["defaultContentType"] == "application/json"
    assert {"info", "servers", "channels", "operations", "components"} <= set(spec)


def test_every_reference_resolves():
    found = list(references(document()))
    assert len(found) > 100
    for where, ref in found:
        try:
            lookup(pointer(ref))
        except (KeyError, IndexError, ValueError) as exc:
            pytest.fail(f"{where}: $ref {ref!r} does not resolve ({exc!r})")


def test_every_schema_is_a_valid_json_schema():
    schemas = document()["components"]["schemas"]
    assert len(schemas) > 20
    for schema in schemas.values():
        VALIDATOR.check_schema(schema)
    VALIDATOR.check_schema(lookup("/components/channelBindings/stream/ws/query"))


@pytest.mark.parametrize("channel", CHANNELS)
def test_every_message_of_a_channel_has_a_payload_schema_and_an_operation(channel):
    keys = set(document()["channels"][channel]["messages"])
    sent = {message.key for message in server_messages(channel).values()}
    received = {message.key for message in client_messages(channel).values()}
    assert sent | received == keys
    assert not sent & received
    for key in keys:
        message, _ = follow(lookup(f"/channels/{channel}/messages/{key}"), "")
        payload, _ = follow(message["payload"], "")
        assert payload["type"] == "object", key
        VALIDATOR.check_schema(payload)


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_message_is_named_after_its_type_or_action(channel):
    for name, message in server_messages(channel).items():
        assert message.payload["properties"]["type"] == {"const": name}
        assert message.payload["additionalProperties"] is False, name
    for name, message in client_messages(channel).items():
        assert message.payload["properties"]["action"] == {"const": name}


def test_every_operation_acts_on_its_own_channel():
    channels = document()["channels"]
    for name, operation in document()["operations"].items():
        assert operation["action"] in ("send", "receive"), name
        channel = operation["channel"]["$ref"].removeprefix("#/channels/")
        assert channel in channels, name
        replies = operation.get("reply", {}).get("messages", [])
        for ref in [*operation["messages"], *replies]:
            assert ref["$ref"].startswith(f"#/channels/{channel}/messages/"), (name, ref)
        if "reply" in operation:
            assert operation["action"] == "receive", name
            assert operation["reply"]["channel"]["$ref"] == f"#/channels/{channel}", name


def test_the_examples_match_their_messages():
    checked = 0
    for channel in CHANNELS:
        messages = {**server_messages(channel), **client_messages(channel)}
        for message in messages.values():
            examples = lookup(f"/components/messages/{message.key}").get("examples", [])
            for example_ in examples:
                errors = list(message.validator.iter_errors(example_["payload"]))
                assert errors == [], (message.key, example_["name"], errors)
                checked += 1
    assert checked > 20


# It documents what the package sends ------------------------------------------------------------


def test_the_channels_are_the_routes_and_their_streams():
    addresses = {channel["address"] for channel in document()["channels"].values()}
    assert addresses == {f"/{route.pattern}" for route in websocket_urlpatterns}
    assert set(stream_channels()) == set(STREAMS)


def test_the_documented_event_kinds_are_the_kinds_the_package_sends():
    # Every event is delivered with the signal of its kind (``notifications.deliver``), so
    # ``SIGNALS`` holds every kind there is; the services make some from a status.
    assert {f"invitation.{status}" for status in Invitation.DECIDED_STATUSES} <= set(SIGNALS)
    for stream, channel in stream_channels().items():
        assert event_kinds(channel) == {kind for kind in SIGNALS if kind.startswith(f"{stream}.")}


def test_both_channels_have_the_same_frames_besides_their_events():
    others = [set(server_messages(channel)) - event_kinds(channel) for channel in CHANNELS]
    assert others[0] == others[1]
    assert {"resumed", "resync_required", "pong", "authenticated", "error"} == others[0]
    assert set(client_messages(CHANNELS[0])) == set(client_messages(CHANNELS[1]))


def test_the_documented_error_codes_are_the_codes_the_consumer_sends():
    tree = ast.parse(inspect.getsource(consumer))
    sent = {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "send_error"
        and isinstance(node.args[0], ast.Constant)
    }
    documented = lookup("/components/schemas/ErrorFrame/properties/code/enum")
    assert sent == set(documented)


def test_the_documented_close_codes_are_the_codes_the_package_closes_with():
    defaults = {
        inspect.signature(close).parameters["code"].default
        for close in (close_user_sockets, close_session_sockets)
    }
    closes_with = {CLOSE_UNAUTHENTICATED, CLOSE_TRY_AGAIN, *defaults}
    assert close_codes() == closes_with == {4401, 4503}


# Its validators refuse what it does not describe ------------------------------------------------


def without(frame: dict[str, Any], *path: str) -> dict[str, Any]:
    node = frame
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return frame


def with_value(frame: dict[str, Any], value: Any, *path: str) -> dict[str, Any]:
    node = frame
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return frame


INVALID_FRAMES = {
    "an event without its id": (
        "invitation",
        without(example("invitationCreated"), "id"),
        "'id' is a required property",
    ),
    "an event id that is a string": (
        "invitation",
        with_value(example("invitationCreated"), "2", "id"),
        "is not of type 'integer'",
    ),
    "an unknown type": (
        "invitation",
        with_value(example("invitationCreated"), "invitation.dance", "type"),
        "matches no message",
    ),
    "a membership event on the invitation stream": (
        "invitation",
        example("membershipCreated"),
        "matches no message",
    ),
    "an invitation event on the membership stream": (
        "membership",
        example("invitationApproved"),
        "matches no message",
    ),
    "a key the envelope does not have": (
        "invitation",
        with_value(example("invitationApproved"), "mechanic", "previous_role"),
        "Additional properties are not allowed",
    ),
    "a status that is not the kind's": (
        "invitation",
        with_value(example("invitationApproved"), "pending", "invitation", "status"),
        "'approved' was expected",
    ),
    "an unknown status": (
        "invitation",
        with_value(example("invitationCreated"), "on hold", "invitation", "status"),
        "invitation/status",
    ),
    "an invitation without a field of the serializer": (
        "invitation",
        without(example("invitationCreated"), "invitation", "direction"),
        "'direction' is a required property",
    ),
    "a date that is not a date-time": (
        "invitation",
        with_value(example("invitationCreated"), "yesterday", "invitation", "created_at"),
        "is not a 'date-time'",
    ),
    "a request without its requester": (
        "invitation",
        with_value(example("invitationCreated"), None, "invitation", "user"),
        "invitation/user",
    ),
    "membership.updated without previous_role": (
        "membership",
        without(example("membershipUpdated"), "previous_role"),
        "'previous_role' is a required property",
    ),
    "an unknown error code": (
        "membership",
        with_value(example("error"), "teapot", "code"),
        "is not one of",
    ),
    "pong with a key it does not have": (
        "invitation",
        with_value(example("pong"), 1, "id"),
        "Additional properties are not allowed",
    ),
    "a negative last_id": (
        "invitation",
        with_value(example("resumed"), -1, "last_id"),
        "is less than the minimum of 0",
    ),
    "authenticated without a deadline": (
        "invitation",
        with_value(example("authenticated"), None, "expires_at"),
        "is not of type 'number'",
    ),
    "a frame that is not an object": ("invitation", ["pong"], "matches no message"),
    "a stream without a channel": ("audit", example("pong"), "has no channel"),
}


@pytest.mark.parametrize(("stream", "frame", "reason"), INVALID_FRAMES.values(), ids=INVALID_FRAMES)
def test_frames_the_document_does_not_describe_are_refused(stream, frame, reason):
    problem = frame_problem(stream, frame)
    assert problem is not None
    assert reason in problem
    assert repr(frame) in problem


def test_the_frames_the_invalid_ones_are_made_from_are_valid():
    for key, stream in [
        ("invitationCreated", "invitation"),
        ("invitationApproved", "invitation"),
        ("membershipCreated", "membership"),
        ("membershipUpdated", "membership"),
        ("error", "membership"),
        ("pong", "invitation"),
        ("resumed", "invitation"),
        ("authenticated", "invitation"),
    ]:
        assert frame_problem(stream, example(key)) is None, key


# The suite's check runs on real sockets ---------------------------------------------------------

application = JWTAuthMiddlewareStack(URLRouter(websocket_urlpatterns))


async def connect(user: Any, address: str) -> WebsocketCommunicator:
    token = AccessToken.for_user(user)
    communicator = WebsocketCommunicator(application, f"{address}?token={token}")
    assert await communicator.connect() == (True, None)
    return communicator


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_a_frame_or_close_code_the_document_does_not_describe_fails_the_test(
    frames_match_asyncapi,
):
    user = await database_sync_to_async(factories.make_user)("listener")
    socket = await connect(user, "/api/salon_role/")
    layer = get_channel_layer()
    frame = {"id": 1, "type": "membership.dance"}
    await layer.group_send(
        group_name("membership", user.pk), {"type": "salon_invitations.event", "frame": frame}
    )
    assert await socket.receive_json_from(timeout=2) == frame
    await layer.group_send(
        group_name("membership", user.pk), {"type": "salon_invitations.close", "code": 4000}
    )
    assert await socket.receive_output(timeout=2) == {"type": "websocket.close", "code": 4000}
    await socket.disconnect()

    problems = list(frames_match_asyncapi)
    frames_match_asyncapi.clear()  # provoked on purpose
    assert len(problems) == 2, problems
    assert "'membership.dance'" in problems[0] and "matches no message" in problems[0]
    assert "close code 4000" in problems[1]


def replies(channel: str, key: str) -> set[str]:
    """The names of the messages documented as the answer to client message ``key``."""
    ref = f"#/channels/{channel}/messages/{key}"
    (operation,) = [
        operation
        for operation in document()["operations"].values()
        if operation["action"] == "receive" and {"$ref": ref} in operation["messages"]
    ]
    prefix = f"#/channels/{channel}/messages/"
    names = set()
    for reply in operation["reply"]["messages"]:
        message, _ = follow(lookup(pointer(reply["$ref"])), "")
        assert reply["$ref"].startswith(prefix)
        names.add(message["name"])
    return names


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("channel", CHANNELS)
async def test_every_client_message_is_answered_as_documented(channel):
    user = await database_sync_to_async(factories.make_user)("client")
    socket = await connect(user, document()["channels"][channel]["address"])
    events = event_kinds(channel)
    for message in client_messages(channel).values():
        for example_ in lookup(f"/components/messages/{message.key}")["examples"]:
            await socket.send_json_to(example_["payload"])
            answer = await socket.receive_json_from(timeout=2)
            while answer["type"] in events:  # a replay's frames come before its answer
                answer = await socket.receive_json_from(timeout=2)
            assert answer["type"] in replies(channel, message.key), (example_, answer)
    assert await socket.receive_nothing(timeout=0.1)
    await socket.disconnect()


def change_everything(salon: Any, owner: Any) -> None:
    """One change of every kind in ``salon``, each in its own transaction."""
    applicant = factories.make_user("applicant")
    for decide in ("reject", "cancel", "delete", "expire"):
        request = services.create_invitation(user=applicant, salon=salon, role="mechanic")
        if decide == "reject":
            services.reject_invitation(request, actor=owner, reason="Position filled.")
        elif decide == "cancel":
            services.cancel_invitation(request, actor=applicant)
        elif decide == "delete":
            services.delete_invitation(request, actor=applicant)
        else:
            Invitation.objects.filter(pk=request.pk).update(expires_at=timezone.now())
            services.expire_invitations()
    invited = services.invite(salon=salon, email="mia@example.com", role="seller", invited_by=owner)
    Invitation.objects.filter(pk=invited.pk).update(sent_at=None)  # no resend cooldown
    services.resend_invite(invited, actor=owner)
    services.accept_invite(invited, user=factories.make_user("mia"))
    membership = factories.membership_model()._default_manager.get(salon=salon, role="seller")
    membership = services.change_role(membership, role="mechanic", actor=owner)
    services.remove_membership(membership, actor=owner)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_every_documented_event_kind_is_sent_as_documented(salon, owner):
    """A real frame of each kind, checked by ``frames_match_asyncapi`` like every other."""
    sockets = {
        stream: await connect(owner, document()["channels"][channel]["address"])
        for stream, channel in stream_channels().items()
    }
    await database_sync_to_async(change_everything)(salon, owner)
    received = set()
    for socket in sockets.values():
        while not await socket.receive_nothing(timeout=0.2):
            received.add((await socket.receive_json_from())["type"])
        await socket.disconnect()
    assert received == set(SIGNALS)
