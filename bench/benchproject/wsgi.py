"""WSGI application of the benchmark project (HTTP only): served by gunicorn in the topology
scenario, against the ASGI application under uvicorn."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchproject.settings")
application = get_wsgi_application()
