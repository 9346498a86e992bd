"""The AsyncAPI document of the WebSocket protocol (``docs/asyncapi.yaml``) as validators.

Each channel of the document is one route of ``salon_invitations.routing`` and so one
consumer stream. :func:`frame_problem` tells whether a frame the server sends on a stream is
one of the messages the document gives that channel, and :func:`watch_consumer` checks every
frame and close code of :class:`~salon_invitations.consumer.SalonEventsConsumer` (the
autouse fixture in ``conftest.py`` uses it in every test).

The document is read and its validators are built once per process, when first needed.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator
from jsonschema.exceptions import best_match
from referencing import Registry
from referencing.jsonschema import DRAFT7

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "docs" / "asyncapi.yaml"
#: The base URI the document's ``#/...`` references resolve against.
URI = "urn:salon-invitations:asyncapi"
#: AsyncAPI's default schema format is a superset of JSON Schema draft 7.
VALIDATOR = Draft7Validator


@functools.cache
def document() -> dict[str, Any]:
    with DOCUMENT.open(encoding="utf-8") as file:
        return yaml.safe_load(file)


def pointer(ref: str) -> str:
    """The JSON pointer of a local reference (``#/components/...``)."""
    if not ref.startswith("#/"):
        raise ValueError(f"not a local reference: {ref!r}")
    return ref[1:]


def lookup(path: str) -> Any:
    """The part of the document at the JSON pointer ``path``."""
    node: Any = document()
    for part in path.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def follow(node: Any, path: str) -> tuple[Any, str]:
    """``node`` (found at ``path``) with its ``$ref`` chain followed, and where it ends."""
    while isinstance(node, dict) and "$ref" in node:
        path = pointer(node["$ref"])
        node = lookup(path)
    return node, path


@functools.cache
def registry() -> Registry:
    return Registry().with_resource(URI, DRAFT7.create_resource(document()))


def validator_at(path: str) -> Draft7Validator:
    """A validator for the schema at ``path``, its references resolved in the document."""
    return VALIDATOR(
        {"$ref": f"{URI}#{path}"},
        registry=registry(),
        format_checker=VALIDATOR.FORMAT_CHECKER,
    )


@dataclass(frozen=True)
class Message:
    channel: str
    key: str
    #: The message's ``name``: the frame's ``type``, or the client frame's ``action``.
    name: str
    payload: dict[str, Any]
    validator: Draft7Validator


def _message(channel: str, key: str) -> Message:
    message, path = follow(lookup(f"/channels/{channel}/messages/{key}"), "")
    payload, payload_path = follow(message["payload"], f"{path}/payload")
    return Message(channel, key, message["name"], payload, validator_at(payload_path))


def _message_keys(channel: str, *, action: str) -> list[str]:
    """The keys of ``channel``'s messages that ``action`` operations (and, for ``send``,
    the replies to ``receive`` operations) carry."""
    keys: list[str] = []
    prefix = f"#/channels/{channel}/messages/"
    for operation in document()["operations"].values():
        if operation["channel"]["$ref"] != f"#/channels/{channel}":
            continue
        refs = operation["messages"] if operation["action"] == action else []
        if action == "send" and "reply" in operation:
            refs = [*refs, *operation["reply"]["messages"]]
        for ref in refs:
            if not ref["$ref"].startswith(prefix):
                raise ValueError(f"{ref['$ref']} is not a message of channel {channel}")
            key = ref["$ref"].removeprefix(prefix)
            if key not in keys:
                keys.append(key)
    return keys


@functools.cache
def server_messages(channel: str) -> dict[str, Message]:
    """The frames the server sends on ``channel``, by their ``type``."""
    messages = [_message(channel, key) for key in _message_keys(channel, action="send")]
    return {message.name: message for message in messages}


@functools.cache
def client_messages(channel: str) -> dict[str, Message]:
    """The frames a client sends on ``channel``, by their ``action``."""
    messages = [_message(channel, key) for key in _message_keys(channel, action="receive")]
    return {message.name: message for message in messages}


@functools.cache
def stream_channels() -> dict[str, str]:
    """Consumer stream -> the key of the channel whose address is its route."""
    from salon_invitations.routing import websocket_urlpatterns

    by_address = {channel["address"]: key for key, channel in document()["channels"].items()}
    streams = {}
    for route in websocket_urlpatterns:
        stream = route.callback.consumer_initkwargs["stream"]
        streams[stream] = by_address[f"/{route.pattern}"]
    return streams


@functools.cache
def close_codes() -> frozenset[int]:
    return frozenset(int(entry["code"]) for entry in document()["x-close-codes"])


def frame_problem(stream: str, frame: Any) -> str | None:
    """Why ``frame``, sent by the server on ``stream``, is no message of its channel, or
    ``None`` when it is one."""
    channel = stream_channels().get(stream)
    if channel is None:
        return f"frame {frame!r} on stream {stream!r}, which has no channel in {DOCUMENT.name}"
    kind = frame.get("type") if isinstance(frame, dict) else None
    message = server_messages(channel).get(kind) if isinstance(kind, str) else None
    if message is None:
        known = ", ".join(sorted(server_messages(channel)))
        return (
            f"frame {frame!r} on channel {channel!r} matches no message of it "
            f"(its type is {kind!r}; documented: {known})"
        )
    error = best_match(message.validator.iter_errors(frame))
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path) or "(the frame)"
    return (
        f"frame {frame!r} on channel {channel!r} does not match message {message.key!r}: "
        f"{error.message} at {where}"
    )


def assert_server_frame(stream: str, frame: Any) -> None:
    problem = frame_problem(stream, frame)
    assert problem is None, problem


def watch_consumer(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Check every frame and close code of the consumer from now on; returns the list the
    problems found are appended to.

    The check wraps the ASGI ``send`` callable each consumer instance is given, the one
    way out of a consumer, so nothing it sends escapes it.
    """
    from salon_invitations.consumer import SalonEventsConsumer

    problems: list[str] = []
    original_call = SalonEventsConsumer.__call__

    async def checked_call(self: SalonEventsConsumer, scope: Any, receive: Any, send: Any) -> Any:
        async def checked_send(message: dict[str, Any]) -> None:
            if message["type"] == "websocket.send":
                if message.get("text") is None:
                    problems.append(f"a frame that is not text on stream {self.stream!r}")
                else:
                    problem = frame_problem(self.stream, json.loads(message["text"]))
                    if problem is not None:
                        problems.append(problem)
            elif message["type"] == "websocket.close":
                code = message.get("code", 1000)
                if code != 1000 and code not in close_codes():
                    problems.append(
                        f"close code {code} on stream {self.stream!r} is not in x-close-codes"
                    )
            await send(message)

        return await original_call(self, scope, receive, checked_send)

    monkeypatch.setattr(SalonEventsConsumer, "__call__", checked_call)
    return problems
