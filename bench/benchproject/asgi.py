"""ASGI application of the benchmark project: HTTP, and the package's WebSocket routes under
``ws/`` authenticated by a real simplejwt access token (``?token=``) through the package's
``JWTAuthMiddleware`` (no session stack: the benchmark has no sessions)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchproject.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from salon_invitations.middleware import JWTAuthMiddleware  # noqa: E402
from salon_invitations.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": JWTAuthMiddleware(URLRouter([path("ws/", URLRouter(websocket_urlpatterns))])),
    }
)
