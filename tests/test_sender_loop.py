"""How synchronous code sends to the channel layer (``notifications.send_to_groups``): inside
an ASGI server's request thread on the server's loop; elsewhere (a WSGI worker, a Celery task)
on one long-lived loop per process, so that ``channels_redis`` keeps its Redis connections
instead of opening new ones for every event."""

from __future__ import annotations

import asyncio
import functools
import os

import pytest
import redis
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels_redis.core import RedisChannelLayer
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


@pytest.mark.skipif(
    not settings.CHANNEL_LAYERS["default"]["BACKEND"].startswith("channels_redis.core."),
    reason="needs RedisChannelLayer (SALON_TEST_CHANNEL_LAYER=redis): its pooled connections",
)
def test_a_connection_redis_closed_costs_no_event():
    """Redis closing the pooled connection (a restart, a failover) fails the next command on
    it; the send is tried once more, on a fresh connection, and the event goes out."""
    layer = get_channel_layer()
    loop = notifications._sender_loop(layer)

    def on_loop(coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(10)

    channel = on_loop(layer.new_channel())
    on_loop(layer.group_add("dropped-connection-test", channel))
    try:
        notifications.send_to_groups("default", ["dropped-connection-test"], {"type": "t", "n": 0})
        assert on_loop(layer.receive(channel))["n"] == 0
        pooled = on_loop(pooled_connection_id(layer))
        admin = redis.Redis.from_url(settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0])
        assert admin.client_kill_filter(_id=pooled) == 1
        admin.close()
        notifications.send_to_groups("default", ["dropped-connection-test"], {"type": "t", "n": 1})
        assert on_loop(layer.receive(channel))["n"] == 1
    finally:
        # Another pooled connection may be the killed one: leave as the consumer does.
        leave = functools.partial(layer.group_discard, "dropped-connection-test", channel)
        on_loop(notifications.retrying_dropped_connection(leave))


async def pooled_connection_id(layer) -> int:
    """The Redis client id of the connection the sends use (the pool's one idle connection)."""
    return await layer.connection(0).client_id()


@pytest.mark.skipif(not REDIS, reason="needs Redis (SALON_TEST_CHANNEL_LAYER)")
@pytest.mark.parametrize("retry_on_error", [False, True])
def test_the_documented_retry_keeps_a_channel_read_alive_when_redis_drops_it(retry_on_error):
    """What docs/installation.md says of ``retry_on_error``: without it, the blocking read of a
    socket's channel ends with an error when Redis closes its connection; with it, the read
    goes on, on a fresh connection, and gets the next message."""
    address = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]
    name = f"retry-test-{os.getpid()}-{retry_on_error}"
    host = {"address": address, "socket_timeout": 15, "client_name": name}
    if retry_on_error:
        host["retry_on_error"] = [redis.exceptions.ConnectionError]
    reader = RedisChannelLayer(hosts=[host], prefix=name)
    sender = RedisChannelLayer(hosts=[address], prefix=name)
    admin = redis.Redis.from_url(address)

    def blocked_reads() -> list[int]:
        return [
            int(client["id"])
            for client in admin.client_list()
            if client.get("name") == name and client.get("cmd") == "bzpopmin"
        ]

    async def scenario() -> dict:
        channel = await reader.new_channel()
        reading = asyncio.ensure_future(reader.receive(channel))
        try:
            for _ in range(250):
                await asyncio.sleep(0.02)
                if blocked := blocked_reads():
                    break
            assert blocked, "the read never blocked in Redis"
            for client_id in blocked:
                admin.client_kill_filter(_id=client_id)
            await sender.send(channel, {"type": "t", "n": 1})
            return await asyncio.wait_for(reading, 5)
        finally:
            reading.cancel()
            await reader.close_pools()
            await sender.close_pools()

    try:
        if retry_on_error:
            assert asyncio.run(scenario()) == {"type": "t", "n": 1}
        else:
            with pytest.raises(redis.exceptions.ConnectionError):
                asyncio.run(scenario())
    finally:
        admin.close()
