"""Channels: ``RedisChannelLayer`` when ``REDIS_URL`` is set, the in-memory layer otherwise.

The in-memory layer only reaches sockets of the same process: fine for ``runserver`` and one
``daphne``; run several server processes only with Redis.
"""

from configs.extra_conf import REDIS_URL

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
