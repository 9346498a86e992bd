"""ASGI application for the multi-process test: ``daphne tests.asgi:application``.

HTTP is the test project (``tests/urls.py``); WebSockets are the package's routes behind
session + JWT authentication, as a project would mount them.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from salon_invitations.middleware import JWTAuthMiddlewareStack  # noqa: E402
from salon_invitations.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": JWTAuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
    }
)
