"""Channels: ``RedisChannelLayer`` when ``REDIS_URL`` is set, the in-memory layer otherwise.

The in-memory layer only reaches sockets of the same process: fine for ``runserver`` and one
``daphne``; run several server processes only with Redis.
"""

from configs.extra_conf import REDIS_URL

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 gives each connection a 5 s socket timeout and each pool 100
            # connections; channels-redis blocks up to 5 s reading a channel, so idle sockets
            # would time out and mass disconnects would exhaust the pool (docs/benchmarks.md).
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": 15, "max_connections": 2000}]
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
