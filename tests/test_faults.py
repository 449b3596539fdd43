"""Store faults lose no call record: Redis down at the end of a call, PostgreSQL down for a while."""
from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import RedisError

from acd.outbox import OutboxWriter
from hotline.db import upgrade
from hotline.embedded import EmbeddedPostgres, EmbeddedRedis
from hotline.keys import Keys
from hotline.model import AgentState, CallOutcome, CallRecord

from .test_call_end_to_end import SERVICE, hotline, plan


async def wait_until(predicate, timeout=10.0, step=0.05):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(step)


async def test_redis_down_when_the_call_ends_keeps_the_record(pool, pg_url, tmp_path):
    server = EmbeddedRedis(tmp_path / "redis")
    await server.start()
    redis = Redis.from_url(server.url, decode_responses=True)
    try:
        async with hotline(redis, pool, server.url, pg_url, tmp_path) as (sim, acd):
            acd.outbox.idle_s = 0.05
            caller = sim.place_call(plan(talk=1.0))
            await wait_until(lambda: _true(caller.answered_at is not None))
            await server.stop()                          # Redis dies while the call is talking
            await asyncio.wait_for(caller.done.wait(), 10)
            await asyncio.sleep(0.3)
            assert await pool.fetchval("SELECT count(*) FROM calls") == 0
            await server.start()                         # same port, same append-only file
            await wait_until(lambda: _count(pool))
        row = await pool.fetchrow("SELECT * FROM calls")
        assert row["uniqueid"] == caller.channel.uniqueid and row["outcome"] == "answered"
    finally:
        await redis.aclose()
        await server.stop()


async def _true(value: bool) -> bool:
    return value


async def _count(pool) -> bool:
    return await pool.fetchval("SELECT count(*) FROM calls") == 1


async def test_postgres_down_records_wait_in_redis_then_arrive_once(redis):
    data = Path(tempfile.mkdtemp(prefix="hotline-test-pgdown-"))
    server = EmbeddedPostgres(data)
    await server.start()
    await upgrade(server.url)
    pool = await asyncpg.create_pool(server.url, min_size=1, max_size=2)
    writer = OutboxWriter(redis, pool, idle_s=0.05)
    try:
        await server.stop()                              # PostgreSQL is down before anything is written
        record = CallRecord(uniqueid="1700000000.1", arrived_at=1700000000.0, queued_at=1700000002.0,
                            answered_at=1700000005.0, ended_at=1700000100.0, outcome=CallOutcome.ANSWERED,
                            queue="general", agent="1001")
        from acd.agents import outbox_row

        await redis.rpush(Keys.outbox, outbox_row("call", **record.to_json()))
        writer.start()
        await asyncio.sleep(0.5)
        assert await redis.llen(Keys.outbox) == 1       # still waiting in Redis, nothing lost
        await server.start()
        await wait_until(lambda: _empty(redis), timeout=20)
        # Written once, even if the same row is handed over again (crash between commit and trim).
        await redis.rpush(Keys.outbox, outbox_row("call", **record.to_json()))
        await wait_until(lambda: _empty(redis))
        rows = await pool.fetch("SELECT uniqueid, wait_s, talk_s FROM calls")
        assert [(r["uniqueid"], r["wait_s"], r["talk_s"]) for r in rows] == [("1700000000.1", 3.0, 95.0)]
    finally:
        await writer.stop()
        await pool.close()
        await server.stop()
        shutil.rmtree(data, ignore_errors=True)


async def _empty(redis) -> bool:
    return await redis.llen(Keys.outbox) == 0


async def test_redis_down_an_agents_change_over_http_is_kept_and_written_back(pool, pg_url, tmp_path):
    """The HTTP API and the phone go to the same agent service: with Redis down the change is kept
    in memory (202, stored false) and reaches Redis, with its history row, once Redis is back."""
    import aiohttp

    server = EmbeddedRedis(tmp_path / "redis")
    await server.start()
    redis = Redis.from_url(server.url, decode_responses=True)
    try:
        async with hotline(redis, pool, server.url, pg_url, tmp_path) as (sim, acd):
            base = f"http://127.0.0.1:{acd.http_port}"
            async with aiohttp.ClientSession(headers=SERVICE) as http:
                await server.stop()
                r = await http.post(f"{base}/agents/1001/not-ready", json={"reason": "meal"})
                assert r.status == 202
                body = await r.json()
                assert (body["state"], body["reason"], body["stored"]) == ("not_ready", "meal", False)
                assert acd.agents.get("1001").state == AgentState.NOT_READY
                r = await http.get(f"{base}/agents/1001")
                assert (await r.json())["state"] == "not_ready"
                await server.start()
                await wait_until(lambda: _state_in_redis(redis, "1001", "not_ready"))
                r = await http.post(f"{base}/agents/1001/ready")
                assert r.status == 200 and (await r.json())["state"] == "ready"
            await wait_until(lambda: _history(pool, "1001", ["ready", "not_ready", "ready"]))
    finally:
        await redis.aclose()
        await server.stop()


async def _state_in_redis(redis, agent_id: str, state: str) -> bool:
    try:
        return await redis.hget(Keys.agent(agent_id), "state") == state
    except (OSError, RedisError):
        return False


async def _history(pool, agent_id: str, states: list[str]) -> bool:
    rows = await pool.fetch("SELECT state FROM agent_states WHERE agent_id = $1 ORDER BY at, id", agent_id)
    return [r["state"] for r in rows] == states
