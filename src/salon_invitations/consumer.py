"""WebSocket consumer: pushes invitation (or membership) events to the connected user.

Protocol (server → client)::

    {"id": 41, "type": "invitation.approved", "invitation": {...same as the REST API...}}
    {"id": 43, "type": "membership.created", "membership": {...}}
    {"type": "resumed", "last_id": 42}                 # after the events a resume missed
    {"type": "resync_required", "last_id": 5042}       # more missed than REPLAY_LIMIT
    {"type": "pong"}                                   # answer to {"action": "ping"}
    {"type": "authenticated", "expires_at": 1767225600.0}  # answer to {"action": "authenticate"}
    {"type": "error", "code": "invalid_json" | "unknown_action" | "invalid_token"
                              | "invalid_since", "detail": "..."}

The AsyncAPI document ``docs/asyncapi.yaml`` describes every frame.

Anonymous connections are accepted and closed at once with code 4401, so browsers see why.
A socket authenticated with a JWT access token is closed with 4401 when that token expires,
unless the client first sends a fresh access token of the same user::

    {"action": "authenticate", "token": "<access>"}

Deactivating or deleting an account closes its sockets (4401) in every server process.

Every event frame carries the event log's ``"id"``. A client that reconnects with
``?since=<id>`` in the URL (or sends ``{"action": "resume", "since": <id>}``) first gets, in
order, every event of its stream after that id that it may see now (the policy's
``replayable_events``), then ``resumed`` with the id to resume from next time, then live events.
Events committed while the replay runs arrive once: live frames of events already replayed are
dropped. A client further behind than ``REPLAY_LIMIT`` events gets ``resync_required``: reload
the state over REST and resume from its ``last_id``.

One class serves both routes; ``stream`` chooses which events it forwards::

    path("api/invitation_to_auto_salon/", SalonEventsConsumer.as_asgi()),
    path("api/salon_role/", SalonEventsConsumer.as_asgi(stream="membership")),
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from datetime import timedelta
from typing import Any

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.db.models import Q

from salon_invitations import events
from salon_invitations.conf import app_settings
from salon_invitations.middleware import (
    SCOPE_EXPIRY_KEY,
    authenticate_token,
    database_read,
    query_param,
)
from salon_invitations.models import SalonEvent
from salon_invitations.notifications import (
    group_name,
    retrying_dropped_connection,
    session_group,
)
from salon_invitations.parsers import loads
from salon_invitations.policies import get_policy

logger = logging.getLogger("salon_invitations")

try:
    from autobahn.exception import Disconnected as _AutobahnDisconnected
except ImportError:  # pragma: no cover - daphne (and so autobahn) is not installed
    #: What an ASGI server raises on a send to a client that has gone (ASGI: an ``OSError``).
    CLIENT_GONE: tuple[type[BaseException], ...] = (OSError,)
else:
    CLIENT_GONE = (OSError, _AutobahnDisconnected)  # daphne lets autobahn's through

CLOSE_UNAUTHENTICATED = 4401
#: The server could not subscribe the socket (its channel layer did not answer): reconnect
#: later. In the application range: daphne (autobahn) cannot send 1013, *try again later*.
CLOSE_TRY_AGAIN = 4503
#: Seconds a new socket waits to join its groups; below the handshake timeouts the WebSocket
#: page recommends (30 s), so a stalled Redis gets the socket a 4503, not a dropped handshake.
JOIN_TIMEOUT = 10.0
#: Seconds between two replays of one socket: a faster ``resume`` waits, so a client that
#: floods resumes costs the database one replay a second (its live frames wait meanwhile).
RESUME_INTERVAL = 1.0
#: How much earlier than the resumed-from event an event may have been written and still have
#: its frame arrive after it (see ``SalonEventsConsumer._missed``).
OVERTAKING = timedelta(minutes=5)


class SalonEventsConsumer(AsyncJsonWebsocketConsumer):
    stream = "invitation"

    def __init__(self, *args: Any, stream: str | None = None, **kwargs: Any) -> None:
        # Channels' consumers drop ``as_asgi()`` keyword arguments; keep ``stream``.
        super().__init__(*args, **kwargs)
        if stream is not None:
            self.stream = stream
        self._expiry: asyncio.TimerHandle | None = None
        #: Ids of the events the last replay sent, so their live frames are not sent again.
        self._replayed: frozenset[int] = frozenset()
        #: The channel layer groups this socket joined (its user's; its session's).
        self._joined: list[str] = []
        #: When the last replay started (the event loop's clock).
        self._resumed_at = -RESUME_INTERVAL

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' dispatch without its ``close_old_connections`` before every message.

        Channels runs that in the process's one thread-sensitive thread, so every message of
        every socket (a connect, a frame, a disconnect) would queue there behind the others;
        in a reconnect storm that is thousands at once. This consumer touches the database
        only through ``database_read``, which closes stale connections itself.
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Channels' consumer, except that a message for a client that has just gone is
        dropped.

        The server raises on such a send (daphne autobahn's ``Disconnected``, others an
        ``OSError``) while the client's ``websocket.disconnect`` still waits behind the
        handler that sends; that message leaves the groups and ends the consumer. Without
        this, a client closing during its replay ended the consumer with a traceback and left
        its groups joined.
        """

        async def send_unless_gone(message: dict[str, Any]) -> None:
            try:
                await send(message)
            except CLIENT_GONE as exc:
                logger.debug("WebSocket message dropped: the client has gone (%r)", exc)

        try:
            await super().__call__(scope, receive, send_unless_gone)
        finally:
            # A server cancels a consumer still busy a while after its client left (daphne:
            # ``application_close_timeout``, 10 s), e.g. with frames the client queued before
            # it closed; ``disconnect`` then never ran. Leave the groups anyway, or they
            # would hold the dead channel until the layer's group expiry.
            if self._joined or self._expiry is not None:
                await asyncio.shield(self._leave())

    async def connect(self) -> None:
        user = self.scope.get("user")
        subprotocols = self.scope.get("subprotocols") or []
        subprotocol = "bearer" if "bearer" in subprotocols else None
        if user is None or not user.is_authenticated:
            await self.accept(subprotocol)
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        # Join before reading the log, so nothing committed in between is missed.
        groups = [group_name(self.stream, user.pk)]
        session = self.scope.get("session")
        session_key: str = getattr(session, "session_key", None) or ""
        by_session = SCOPE_EXPIRY_KEY not in self.scope and bool(session_key)
        if by_session:
            groups.append(session_group(session_key))  # by its cookie: closed at logout
        try:
            await asyncio.wait_for(self._join_all(groups), JOIN_TIMEOUT)
        except Exception as exc:
            # The channel layer is down: a close the client retries, not an HTTP 500.
            logger.warning("WebSocket refused: the channel layer did not answer (%r)", exc)
            await self.accept(subprotocol)
            await self.close(code=CLOSE_TRY_AGAIN)
            return
        await self.accept(subprotocol)
        if by_session and not await database_read(_signs_in)(session_key, user.pk):
            # Logged out while the socket was joining: the close went to a group it was not
            # in yet.
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self._close_at(self.scope.get(SCOPE_EXPIRY_KEY))
        since = query_param(self.scope, "since")  # "" (blank) is an error, not silence
        if since is not None:
            await self.resume(since)

    async def _join_all(self, groups: list[str]) -> None:
        for group in groups:
            await self._join(group)

    async def _join(self, group: str) -> None:
        # Noted first: a join cut short (JOIN_TIMEOUT, a cancelled consumer) may have reached
        # the layer, and leaving a group one is not in is harmless.
        self._joined.append(group)
        await retrying_dropped_connection(
            functools.partial(self.channel_layer.group_add, group, self.channel_name)
        )

    async def disconnect(self, code: int) -> None:
        await self._leave()

    async def _leave(self) -> None:
        """Cancel the credentials' close and leave the groups this socket joined."""
        self._close_at(None)
        joined, self._joined = self._joined, []
        try:
            for group in joined:
                await retrying_dropped_connection(
                    functools.partial(self.channel_layer.group_discard, group, self.channel_name)
                )
        except Exception as exc:  # the layer's group expiry removes them in the end
            logger.warning("WebSocket could not leave its groups %s (%r)", joined, exc)

    def _close_at(self, expires_at: float | None) -> None:
        """(Re)schedule the 4401 close for when the credentials expire; ``None``: never."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if expires_at is None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, expires_at - time.time())
        self._expiry = loop.call_later(
            delay, lambda: loop.create_task(self.close(code=CLOSE_UNAUTHENTICATED))
        )

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        try:
            content = loads(text_data if text_data is not None else (bytes_data or b""))
        except ValueError:
            await self.send_error("invalid_json", "Frames must be JSON objects.")
            return
        await self.receive_json(content)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        action = content.get("action") if isinstance(content, dict) else None
        if action == "ping":
            await self.send_json({"type": "pong"})
        elif action == "authenticate":
            await self.authenticate(content.get("token"))
        elif action == "resume":
            await self.resume(content.get("since"))
        else:
            await self.send_error(
                "unknown_action",
                f"Unknown action {action!r}; known: ping, authenticate, resume.",
            )

    async def resume(self, since: Any) -> None:
        """Send the events after ``since`` this socket may see now, then ``resumed``.

        Live events that arrive meanwhile wait in the channel layer until this returns (a
        consumer handles one message at a time), and those among the replayed are dropped.
        """
        after = _event_id(since)
        if after is None:
            await self.send_error("invalid_since", '"since" must be an event id (an integer ≥ 0).')
            return
        loop = asyncio.get_running_loop()
        if (wait := self._resumed_at + RESUME_INTERVAL - loop.time()) > 0:
            await asyncio.sleep(wait)
        self._resumed_at = loop.time()
        frames, last_id = await database_read(self._missed)(after)
        if frames is None:
            await self.send_json({"type": "resync_required", "last_id": last_id})
            return
        for frame in frames:
            await self.send_json(frame)
        self._replayed = frozenset(frame["id"] for frame in frames)
        await self.send_json({"type": "resumed", "last_id": last_id})

    def _missed(self, after: int) -> tuple[list[dict[str, Any]] | None, int]:
        """The frames after ``after`` (``None`` when more than ``REPLAY_LIMIT``, when
        ``prune_events`` deleted events after it, or when ``after`` is beyond the newest
        event), and the id to resume from next.

        Ids follow commit order, but live frames of different processes can overtake each
        other: a client may have received event ``after`` and not an earlier one still on its
        way when it disconnected. Those are sent again too: the earlier events whose delivery
        finished after event ``after`` was written (or has not finished). A client can get a
        frame it already had this way; the ``id`` tells it so.
        """
        limit = app_settings.REPLAY_LIMIT
        # Events after ``after`` deleted by ``prune_events``: no replay can be complete.
        pruned = after < events.pruned_through()
        stream = SalonEvent.objects.filter(kind__startswith=f"{self.stream}.")
        stream = get_policy().replayable_events(self.scope["user"], stream)
        written = SalonEvent.objects.filter(pk=after).values_list("created_at", flat=True).first()
        if written is None and after > 0:
            # No such event: a gap in the ids, or a cursor from beyond the newest event (a
            # database restored from a backup, a forged id), which no replay can answer.
            newest = events.newest_id()
            if after > newest:
                return None, newest
        missed = Q(id__gt=after)
        if written is not None:
            overtaken = Q(dispatched_at__isnull=True) | Q(dispatched_at__gt=written)
            missed |= Q(id__lt=after, created_at__gt=written - OVERTAKING) & overtaken
        rows = (
            []
            if pruned
            else list(
                stream.filter(missed).order_by("id").values_list("id", "kind", "data")[: limit + 1]
            )
        )
        if pruned or len(rows) > limit:
            return None, events.newest_id() or after
        frames = [{"id": pk, "type": kind, **data} for pk, kind, data in rows]
        return frames, max([after, *(frame["id"] for frame in frames)])

    async def authenticate(self, raw: Any) -> None:
        """Take a fresh access token of the same user; the socket then lives until it expires."""
        if not isinstance(raw, str) or not raw:
            await self.send_error("invalid_token", '"token" must be an access token string.')
            return
        try:
            user, expires_at = await database_read(authenticate_token)(raw)
        except ImportError:  # pragma: no cover - the jwt extra is not installed
            await self.send_error("invalid_token", "Token authentication is not available.")
            return
        current = self.scope["user"]
        if not user.is_authenticated or user.pk != current.pk:
            await self.send_error("invalid_token", "The token is invalid, expired or not yours.")
            return
        if self._expiry is not None or self.scope.get(SCOPE_EXPIRY_KEY) is not None:
            self._close_at(expires_at)
        await self.send_json({"type": "authenticated", "expires_at": expires_at})

    async def send_error(self, code: str, detail: str) -> None:
        await self.send_json({"type": "error", "code": code, "detail": detail})

    async def salon_invitations_event(self, message: dict[str, Any]) -> None:
        """Handler for ``{"type": "salon_invitations.event", "frame": {...}}`` layer messages."""
        frame = message["frame"]
        if frame.get("id") in self._replayed:
            return
        await self.send_json(frame)

    async def salon_invitations_close(self, message: dict[str, Any]) -> None:
        """Handler for ``{"type": "salon_invitations.close", "code": 4401}`` (account closed,
        session logged out)."""
        self._close_at(None)
        await self.close(code=message.get("code", CLOSE_UNAUTHENTICATED))


def _event_id(value: Any) -> int | None:
    """An event id from a query parameter or a JSON value: an integer ≥ 0, else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    if isinstance(value, int) and 0 <= value < 2**63:
        return value
    return None


InvitationConsumer = SalonEventsConsumer


def _signs_in(session_key: str, user_pk: Any) -> bool:
    """Whether the session ``session_key`` still signs ``user_pk`` in (read anew)."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import SESSION_KEY

    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return str(store.load().get(SESSION_KEY)) == str(user_pk)
