"""How synchronous code sends to the channel layer (``notifications.send_to_groups``): inside
an ASGI server's request thread on the server's loop; elsewhere (a WSGI worker, a Celery task)
on one long-lived loop per process, so that ``channels_redis`` keeps its Redis connections
instead of opening new ones for every event."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings

from salon_invitations import notifications

REDIS = settings.CHANNEL_LAYERS["default"]["BACKEND"].startswith("channels_redis.")


def test_the_in_memory_layer_and_a_server_thread_keep_asgiref_s_way():
    assert notifications._sender_loop(InMemoryChannelLayer()) is None

    class RedisLike:  # a layer that keeps connections per event loop
        pass

    RedisLike.__module__ = "channels_redis.core"
    layer = RedisLike()
    assert notifications._sender_loop(layer) is not None  # plain synchronous code

    async def in_a_server() -> object:
        return await sync_to_async(notifications._sender_loop, thread_sensitive=True)(layer)

    assert async_to_sync(in_a_server)() is None  # the server's loop is running: use it


@pytest.mark.skipif(not REDIS, reason="needs the channels-redis layer (SALON_TEST_CHANNEL_LAYER)")
def test_synchronous_senders_share_one_loop_and_its_redis_connections():
    layer = get_channel_layer()
    loop = notifications._sender_loop(layer)
    assert loop is not None and loop.is_running()
    assert notifications._sender_loop(layer) is loop

    def on_loop(coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(10)

    channel = on_loop(layer.new_channel())
    on_loop(layer.group_add("sender-loop-test", channel))
    try:
        for n in range(3):
            notifications.send_to_groups("default", ["sender-loop-test"], {"type": "t", "n": n})
        received = [on_loop(layer.receive(channel))["n"] for _ in range(3)]
    finally:
        on_loop(layer.group_discard("sender-loop-test", channel))
    assert received == [0, 1, 2]
    assert notifications._sender_loop(layer) is loop
