"""WSGI entry point: HTTP only. WebSockets need the ASGI application in ``configs.asgi``."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "configs.settings")

application = get_wsgi_application()
