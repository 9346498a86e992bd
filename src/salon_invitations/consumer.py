"""WebSocket consumer: pushes invitation (or membership) events to the connected user.

Protocol (server → client)::

    {"type": "invitation.approved", "invitation": {...same as the REST API...}}
    {"type": "membership.created", "membership": {...}}
    {"type": "pong"}                                   # answer to {"action": "ping"}
    {"type": "authenticated", "expires_at": 1767225600} # answer to {"action": "authenticate"}
    {"type": "error", "code": "invalid_json" | "unknown_action" | "invalid_token", "detail": "..."}

Anonymous connections are accepted and closed at once with code 4401, so browsers see why.
A socket authenticated with a JWT access token is closed with 4401 when that token expires,
unless the client first sends a fresh access token of the same user::

    {"action": "authenticate", "token": "<access>"}

Deactivating or deleting an account closes its sockets (4401) in every server process.

One class serves both routes; ``stream`` chooses which events it forwards::

    path("api/invitation_to_auto_salon/", SalonEventsConsumer.as_asgi()),
    path("api/salon_role/", SalonEventsConsumer.as_asgi(stream="membership")),
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from salon_invitations.middleware import SCOPE_EXPIRY_KEY, authenticate_token
from salon_invitations.notifications import group_name
from salon_invitations.parsers import loads

CLOSE_UNAUTHENTICATED = 4401


class SalonEventsConsumer(AsyncJsonWebsocketConsumer):
    stream = "invitation"

    def __init__(self, *args: Any, stream: str | None = None, **kwargs: Any) -> None:
        # Channels' consumers drop ``as_asgi()`` keyword arguments; keep ``stream``.
        super().__init__(*args, **kwargs)
        if stream is not None:
            self.stream = stream
        self._expiry: asyncio.TimerHandle | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        subprotocols = self.scope.get("subprotocols") or []
        subprotocol = "bearer" if "bearer" in subprotocols else None
        if user is None or not user.is_authenticated:
            await self.accept(subprotocol)
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.group = group_name(self.stream, user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept(subprotocol)
        self._close_at(self.scope.get(SCOPE_EXPIRY_KEY))

    async def disconnect(self, code: int) -> None:
        self._close_at(None)
        group = getattr(self, "group", None)
        if group is not None:
            await self.channel_layer.group_discard(group, self.channel_name)

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
        else:
            await self.send_error(
                "unknown_action", f"Unknown action {action!r}; known: ping, authenticate."
            )

    async def authenticate(self, raw: Any) -> None:
        """Take a fresh access token of the same user; the socket then lives until it expires."""
        if not isinstance(raw, str) or not raw:
            await self.send_error("invalid_token", '"token" must be an access token string.')
            return
        try:
            user, expires_at = await database_sync_to_async(authenticate_token)(raw)
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
        await self.send_json(message["frame"])

    async def salon_invitations_close(self, message: dict[str, Any]) -> None:
        """Handler for ``{"type": "salon_invitations.close", "code": 4401}`` (account closed)."""
        self._close_at(None)
        await self.close(code=message.get("code", CLOSE_UNAUTHENTICATED))


InvitationConsumer = SalonEventsConsumer
