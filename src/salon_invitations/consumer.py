"""WebSocket consumer: pushes invitation (or membership) events to the connected user.

Protocol (server → client)::

    {"type": "invitation.approved", "invitation": {...same as the REST API...}}
    {"type": "membership.created", "membership": {...}}
    {"type": "pong"}                                   # answer to {"action": "ping"}
    {"type": "error", "code": "invalid_json" | "unknown_action", "detail": "..."}

Anonymous connections are accepted and closed at once with code 4401, so browsers see why.
One class serves both routes; ``stream`` chooses which events it forwards::

    path("api/invitation_to_auto_salon/", SalonEventsConsumer.as_asgi()),
    path("api/salon_role/", SalonEventsConsumer.as_asgi(stream="membership")),
"""

from __future__ import annotations

import json
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from salon_invitations.notifications import group_name

CLOSE_UNAUTHENTICATED = 4401


class SalonEventsConsumer(AsyncJsonWebsocketConsumer):
    stream = "invitation"

    def __init__(self, *args: Any, stream: str | None = None, **kwargs: Any) -> None:
        # Channels' consumers drop ``as_asgi()`` keyword arguments; keep ``stream``.
        super().__init__(*args, **kwargs)
        if stream is not None:
            self.stream = stream

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

    async def disconnect(self, code: int) -> None:
        group = getattr(self, "group", None)
        if group is not None:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        try:
            content = json.loads(text_data if text_data is not None else (bytes_data or b""))
        except (ValueError, UnicodeDecodeError):
            await self.send_error("invalid_json", "Frames must be JSON objects.")
            return
        await self.receive_json(content)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        action = content.get("action") if isinstance(content, dict) else None
        if action == "ping":
            await self.send_json({"type": "pong"})
        else:
            await self.send_error("unknown_action", f"Unknown action {action!r}; known: ping.")

    async def send_error(self, code: str, detail: str) -> None:
        await self.send_json({"type": "error", "code": code, "detail": detail})

    async def salon_invitations_event(self, message: dict[str, Any]) -> None:
        """Handler for ``{"type": "salon_invitations.event", "frame": {...}}`` layer messages."""
        await self.send_json(message["frame"])


InvitationConsumer = SalonEventsConsumer
