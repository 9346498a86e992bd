"""Settings of the benchmark project (``bench/``): the package and a plain-DRF baseline side by
side, on PostgreSQL with psycopg's pool and the Redis channel layer.

Everything the two sides share (authentication, pagination, renderer, middleware) is set here
once, so the measured difference is the package's own work. From the environment the runner
sets: ``BENCH_DB_NAME``, ``PG*``, ``BENCH_REDIS_URL``, ``BENCH_CHANNEL_PREFIX``, and per server
set ``BENCH_CHANNEL_LAYER``, ``BENCH_REDIS_DEFAULT_POOL``, ``BENCH_NO_NOTIFICATIONS``.
"""

from __future__ import annotations

import os
from datetime import timedelta

SECRET_KEY = "bench-only-not-a-secret-" + "x" * 32
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "rest_framework",
    "django_filters",
    "salon_invitations",
    "baseline",
]

# Only the timing middleware: it adds ``X-Server-Time-Us`` (time spent in Django) to each
# response, for both sides alike.
MIDDLEWARE = ["benchproject.shared.server_timing"]

ROOT_URLCONF = "benchproject.urls"
ASGI_APPLICATION = "benchproject.asgi.application"
USE_TZ = True
TIME_ZONE = "UTC"
USE_I18N = True
LANGUAGE_CODE = "en-us"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
TEMPLATES: list[dict[str, object]] = []

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("BENCH_DB_NAME", "salon_bench"),
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
        "USER": os.environ.get("PGUSER", "postgres"),
        "PASSWORD": os.environ.get("PGPASSWORD", ""),
        # As the example project: persistent connections do not suit ASGI, psycopg's pool does.
        "CONN_MAX_AGE": 0,
        "OPTIONS": {"pool": {"min_size": 2, "max_size": 24, "timeout": 30}},
    }
}
if os.environ.get("BENCH_NO_POOL"):
    # The orchestrator's own in-process steps (seeding, EXPLAIN, query counts, profiles):
    # one plain persistent connection.
    DATABASES["default"]["OPTIONS"] = {}
    DATABASES["default"]["CONN_MAX_AGE"] = None

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
# redis-py 8 gives every connection a 5 s socket timeout and every pool at most 100
# connections by default. channels-redis 4.3 blocks in BZPOPMIN for 5 s (``brpop_timeout``),
# so on an idle server the read sometimes times out first and the consumer that runs the
# receive loop dies with its WebSocket; and many disconnects at once exhaust the pool.
# The benchmark sets both explicitly (run.py also measures the defaults, with
# BENCH_REDIS_DEFAULT_POOL=1).
if os.environ.get("BENCH_REDIS_DEFAULT_POOL"):
    REDIS_HOST: object = REDIS_URL
else:
    REDIS_HOST = {"address": REDIS_URL, "socket_timeout": 15, "max_connections": 2000}
# A prefix of its own: run.py removes exactly these keys at the end.
CHANNEL_PREFIX = os.environ.get("BENCH_CHANNEL_PREFIX", "salonbench")
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_HOST], "prefix": CHANNEL_PREFIX, "capacity": 1000},
    }
}
if os.environ.get("BENCH_CHANNEL_LAYER") == "pubsub":
    # Redis pub/sub: each process subscribes to its sockets' groups and reads them on one
    # connection without blocking reads, so the defaults of redis-py suit it.
    CHANNEL_LAYERS["default"] = {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": CHANNEL_PREFIX},
    }

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["benchproject.shared.BenchUserHeaderAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "benchproject.shared.BenchPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_FILTER_BACKENDS": [],
    "DEFAULT_THROTTLE_CLASSES": [],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

# WebSocket connections authenticate with real simplejwt access tokens (``?token=``) through
# the package's JWTAuthMiddleware.
SIMPLE_JWT = {
    "SIGNING_KEY": SECRET_KEY,
    "ALGORITHM": "HS256",
    "ACCESS_TOKEN_LIFETIME": timedelta(hours=2),
}


def _role(
    label: str, rank: int, *, limit: int | None = 1, requestable: bool = True, manages: bool = False
) -> dict[str, object]:
    return dict(label=label, rank=rank, limit=limit, requestable=requestable, manages=manages)


SALON_INVITATIONS = {
    "NOTIFICATION_BACKENDS": ["salon_invitations.notifications.ChannelsBackend"],
    # The default role table plus ``member``: unlimited holders, so that the approval
    # throughput benchmark can approve thousands of requests (the default roles allow one
    # holder each). The contention benchmark uses ``seller`` (one holder).
    "ROLES": {
        "superuser": _role("Superuser", 30, requestable=False, manages=True),
        "admin": _role("Admin", 20, manages=True),
        "seller": _role("Seller", 10),
        "mechanic": _role("Mechanic", 10),
        "member": _role("Member", 5, limit=None),
    },
}

if os.environ.get("BENCH_NO_NOTIFICATIONS"):
    # Only for the run that measures what the notifications cost a create.
    SALON_INVITATIONS["NOTIFICATION_BACKENDS"] = []

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
