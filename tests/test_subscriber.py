"""hotline.subscriber: a subscription that outlives its connections, on both paths (the lean
connection and redis-py)."""
from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from hotline.embedded import EmbeddedRedis, free_port
from hotline.subscriber import Subscriber


async def until(predicate, timeout=10.0):
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("lean", [True, False])
async def test_redis_down_at_start_then_up_subscribes_and_reports_the_gap(tmp_path, lean):
    port = free_port()
    client = Redis.from_url(f"redis://127.0.0.1:{port}/0", decode_responses=True, socket_connect_timeout=0.5)
    seen, gaps = [], []
    subscriber = Subscriber(client, ["news"], lambda channel, data: seen.append((channel, data)),
                            on_gap=lambda: gaps.append(1), lean=lean, first_backoff_s=0.05, max_backoff_s=0.2)
    assert subscriber.lean is lean
    with pytest.raises(Exception):
        await Subscriber(client, ["news"], lambda c, d: None, lean=lean).start(timeout=1.0)
    await subscriber.start(timeout=1.0, must_subscribe=False)     # nothing listens yet: not fatal
    assert not subscriber.connected
    server = EmbeddedRedis(tmp_path / "redis", port=port)
    await server.start()
    try:
        await until(lambda: subscriber.connected and gaps == [1])
        await client.publish("news", "hello")
        await until(lambda: seen == [("news", "hello")])
    finally:
        await subscriber.stop()
        await client.aclose()
        await server.stop()
    assert not subscriber.connected
