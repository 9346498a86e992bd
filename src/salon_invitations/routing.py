"""WebSocket routes, ready to include in a project's ``URLRouter``::

from salon_invitations.routing import websocket_urlpatterns

application = ProtocolTypeRouter({
    "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
    ...
})
"""

from django.urls import path

from salon_invitations.consumer import SalonEventsConsumer

websocket_urlpatterns = [
    path("api/invitation_to_auto_salon/", SalonEventsConsumer.as_asgi(stream="invitation")),
    path("api/salon_role/", SalonEventsConsumer.as_asgi(stream="membership")),
]
