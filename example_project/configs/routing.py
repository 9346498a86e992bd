"""WebSocket routes: the package's invitation and membership streams.

Served at the seed's paths (``api/invitation_to_auto_salon/``, ``api/salon_role/``) and, as
the contract writes them, under ``ws/`` (``ws/api/invitation_to_auto_salon/``)::

    ws://127.0.0.1:8000/ws/api/invitation_to_auto_salon/?token=<access>

Any other path is refused at the handshake (403), as an unknown URL is a 404 over HTTP:
Channels' router would raise and the server answer 500 and log a traceback.
"""

from typing import Any

from channels.routing import URLRouter
from django.urls import path, re_path

from salon_invitations.routing import websocket_urlpatterns as salon_invitations_patterns


async def no_route(scope: dict, receive: Any, send: Any) -> None:
    await receive()  # websocket.connect
    await send({"type": "websocket.close"})  # before accepting: a 403


websocket_urlpatterns = [
    path("ws/", URLRouter(salon_invitations_patterns)),
    *salon_invitations_patterns,
    re_path(r"", no_route),
]
