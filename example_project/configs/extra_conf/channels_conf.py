"""Channels: a Redis channel layer when ``REDIS_URL`` is set, the in-memory layer otherwise.

``CHANNEL_LAYER=pubsub`` picks ``RedisPubSubChannelLayer`` instead of ``RedisChannelLayer``
(docs/deployment.md, "Which Redis channel layer"). The in-memory layer only reaches sockets
of the same process: fine for ``runserver`` and one ``daphne``; run several server processes
only with Redis.
"""

from django.core.exceptions import ImproperlyConfigured

from configs.extra_conf import REDIS_URL, env_str

#: ``redis`` (``channels_redis.core.RedisChannelLayer``) or ``pubsub``
CHANNEL_LAYER = env_str("CHANNEL_LAYER", "redis")
if CHANNEL_LAYER not in ("redis", "pubsub"):
    raise ImproperlyConfigured(f"CHANNEL_LAYER must be redis or pubsub, not {CHANNEL_LAYER!r}")

if REDIS_URL and CHANNEL_LAYER == "pubsub":
    from redis.connection import parse_url

    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            # Pub/sub reads without blocking, on one connection per process: redis-py's
            # defaults suit it. Its channels are shared by every database of the Redis
            # server, so the prefix names the database: sites on different databases of one
            # Redis stay apart, as they do with RedisChannelLayer.
            "CONFIG": {
                "hosts": [REDIS_URL],
                "prefix": f"asgi-db{parse_url(REDIS_URL).get('db', 0)}:",
            },
        }
    }
elif REDIS_URL:
    from redis.exceptions import ConnectionError as RedisConnectionError

    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 gives each connection a 5 s socket timeout and each pool 100
            # connections; channels-redis blocks up to 5 s reading a channel, so idle sockets
            # would time out and mass disconnects would exhaust the pool (docs/benchmarks.md).
            # A connection Redis closed (a restart, a failover) is retried once on a fresh one,
            # so an open socket's read of its channel survives it (docs/deployment.md).
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": 15,
                        "max_connections": 2000,
                        "retry_on_error": [RedisConnectionError],
                    }
                ]
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
