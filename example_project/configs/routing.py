"""WebSocket routes: the package's invitation and membership streams.

Served at the seed's paths (``api/invitation_to_auto_salon/``, ``api/salon_role/``) and, as
the contract writes them, under ``ws/`` (``ws/api/invitation_to_auto_salon/``)::

    ws://127.0.0.1:8000/ws/api/invitation_to_auto_salon/?token=<access>
"""

from channels.routing import URLRouter
from django.urls import path

from salon_invitations.routing import websocket_urlpatterns as salon_invitations_patterns

websocket_urlpatterns = [
    path("ws/", URLRouter(salon_invitations_patterns)),
    *salon_invitations_patterns,
]
