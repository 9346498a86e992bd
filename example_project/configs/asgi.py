"""ASGI entry point: HTTP and WebSockets. From ``example_project/``::

    daphne configs.asgi:application

WebSocket handshakes are checked against ``ALLOWED_HOSTS`` (the Origin header browsers send),
then authenticated by the session cookie or a JWT access token (``?token=<access>`` or the
``["bearer", "<access>"]`` subprotocol pair), the token winning. Static files are served by
WhiteNoise's middleware (``configs.settings``), with DEBUG on or off.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "configs.settings")

# Set up Django (apps and models) before importing anything that imports models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from configs.routing import websocket_urlpatterns  # noqa: E402
from salon_invitations.middleware import JWTAuthMiddlewareStack  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            JWTAuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
