"""cti: the agent desktop's WebSocket, fed by the ACD's real events on a real Redis.

Agent transitions are made with ``acd.agents.AgentDirectory`` (the producer of the ``agent``
events); the call hash is laid out by ``hotline.live.LiveCall``; the caller's history is
written through ``acd.outbox.OutboxWriter``. Every wait has a timeout: no test sleeps.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer

from acd.agents import AgentDirectory, outbox_row
from hotline.live import LiveCall
from acd.outbox import OutboxWriter
from cti.app import HUB, make_app
from cti.events import RESYNC, Subscription
from hotline.keys import Keys
from hotline.model import AgentState, CallOutcome, CallRecord

from hotline.auth import Role

from .auth_helpers import client_for, token_for

TIMEOUT = 3.0
CALLER = "13800138000"


@contextlib.asynccontextmanager
async def served(redis, pool) -> AsyncIterator[TestClient]:
    """The CTI, and a client signed in as an admin (who may open any agent's desktop)."""
    async with client_for(make_app(redis, pool), pool) as client:
        yield client


async def receive(ws: aiohttp.ClientWebSocketResponse, timeout: float = TIMEOUT) -> dict[str, Any]:
    msg = await ws.receive(timeout=timeout)
    assert msg.type == WSMsgType.TEXT, f"expected a message, got {msg.type} {msg.data!r} {msg.extra!r}"
    return json.loads(msg.data)


async def receive_until(ws, kind: str, timeout: float = TIMEOUT) -> dict[str, Any]:
    """The next message of this type (others, such as resyncs, are skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            message = await receive(ws, timeout)
            if message["type"] == kind:
                return message


async def assert_silent(ws, seconds: float = 0.2) -> None:
    with pytest.raises(asyncio.TimeoutError):
        msg = await ws.receive(timeout=seconds)
        pytest.fail(f"unexpected message {msg.type} {msg.data!r}")


async def make_agents(redis) -> AgentDirectory:
    directory = AgentDirectory(redis)
    await directory.upsert("1001", "王芳", "day", {"mandarin": 3, "enterprise": 2})
    await directory.upsert("1002", "李娜", "day", {"mandarin": 3})
    await directory.transition("1001", AgentState.READY)
    await directory.transition("1002", AgentState.READY)
    return directory


async def put_call(redis, uid: str, *, caller: str = CALLER, ivr: bool = True) -> None:
    now = time.time()
    call = LiveCall(uid, f"PJSIP/trunk-{uid}", uid, "enterprise", caller, now - 30, queued_at=now - 12,
                    queue="enterprise", skills="mandarin:1+enterprise:1", priority=10, state="ringing",
                    agent="1001")
    await redis.hset(Keys.call(uid), mapping=call.to_redis())
    await redis.sadd(Keys.calls, uid)
    if ivr:
        path = {"uniqueid": uid, "line": "enterprise", "channel": call.channel, "started_at": now - 30,
                "ended_at": now - 12, "result": "queued", "queue": "enterprise",
                "skills": "mandarin:1+enterprise:1", "priority": 10, "lang": "zh",
                "steps": [{"node": "welcome", "prompt": "hotline/enterprise-welcome", "digits": None,
                           "result": "ok", "started_at": now - 29, "ended_at": now - 20},
                          {"node": "main-menu", "prompt": "hotline/main-menu", "digits": "3",
                           "result": "ok", "started_at": now - 20, "ended_at": now - 14}]}
        await redis.set(Keys.ivr_path(uid), json.dumps(path, ensure_ascii=False))


async def put_history(redis, pool) -> None:
    """Two calls from CALLER in the last 30 days, one 40 days ago, one from someone else."""
    now = time.time()
    rows = [CallRecord("h1", now - 2 * 86400, now - 2 * 86400 + 200, CallOutcome.ANSWERED, caller_id=CALLER,
                       queued_at=now - 2 * 86400 + 20, answered_at=now - 2 * 86400 + 30, queue="enterprise",
                       agent="1002"),
            CallRecord("h2", now - 5 * 86400, now - 5 * 86400 + 60, CallOutcome.ABANDONED, caller_id=CALLER,
                       queued_at=now - 5 * 86400 + 20, queue="enterprise"),
            CallRecord("h3", now - 40 * 86400, now - 40 * 86400 + 60, CallOutcome.ANSWERED, caller_id=CALLER,
                       queued_at=now - 40 * 86400 + 10, answered_at=now - 40 * 86400 + 20, agent="1001"),
            CallRecord("h4", now - 86400, now - 86400 + 60, CallOutcome.IVR_COMPLETED, caller_id="13911112222")]
    for rec in rows:
        await redis.rpush(Keys.outbox, outbox_row("call", **rec.to_json()))
    writer = OutboxWriter(redis, pool)
    while await writer.flush_once():
        pass


# ---- connect --------------------------------------------------------------------------------
async def test_state_at_once_on_connect(redis, pool):
    await make_agents(redis)
    async with served(redis, pool) as client:
        async with client.ws_connect("/api/v1/ws/agent/1001") as ws:
            message = await receive(ws)
            assert message["type"] == "state"
            agent = message["agent"]
            assert agent["id"] == "1001" and agent["name"] == "王芳" and agent["state"] == "ready"
            assert agent["skills"] == {"mandarin": 3, "enterprise": 2}
            assert agent["call"] == "" and abs(agent["state_since"] - time.time()) < 60


@pytest.mark.parametrize("agent_id, code, reason", [
    ("9999", 4404, "unknown agent 9999"),
    ("12ab", 4400, "digits only"),
    ("1" * 17, 4400, "digits only"),
    ("%E5%9D%90%E5%B8%AD", 4400, "digits only"),       # "坐席"
    ("%E5%9D%90" * 40, 4400, "bad agent id"),            # long and not ASCII: clipped in the reason
])
async def test_bad_or_unknown_agent_is_refused_with_a_reason(redis, pool, agent_id, code, reason):
    await make_agents(redis)
    async with served(redis, pool) as client:
        async with client.ws_connect(f"/api/v1/ws/agent/{agent_id}") as ws:
            message = await receive(ws)
            assert message["type"] == "error" and reason in message["error"]
            msg = await ws.receive(timeout=TIMEOUT)
            assert msg.type == WSMsgType.CLOSE
            assert msg.data == code and reason in msg.extra
        async with asyncio.timeout(TIMEOUT):                 # nothing left subscribed
            while client.app[HUB].subscribers:
                await asyncio.sleep(0.01)


# ---- events and screen pops -------------------------------------------------------------------
async def test_screen_pop_when_reserved_for_a_call(redis, pool):
    directory = await make_agents(redis)
    await put_history(redis, pool)
    await put_call(redis, "1700000000.42")
    async with served(redis, pool) as client:
        async with client.ws_connect("/api/v1/ws/agent/1001") as ws:
            assert (await receive(ws))["type"] == "state"
            await directory.transition("1001", AgentState.RESERVED, call="1700000000.42")

            event = await receive(ws)
            assert event["type"] == "agent" and event["agent"] == "1001"
            assert event["state"] == "reserved" and event["call"] == "1700000000.42"

            pop = await receive(ws)
            assert pop["type"] == "screen_pop"
            call = pop["call"]
            assert call["uniqueid"] == "1700000000.42" and call["caller"] == CALLER
            assert call["line"] == "enterprise" and call["queue"] == "enterprise" and call["priority"] == 10
            assert call["skills"] == {"mandarin": 1, "enterprise": 1}
            assert 11 <= call["wait_s"] < 20
            assert [(s["node"], s["digits"]) for s in pop["ivr"]["steps"]] == [("welcome", None), ("main-menu", "3")]
            assert pop["ivr"]["lang"] == "zh"
            history = pop["history"]
            assert history["days"] == 30 and history["calls"] == 2
            assert [r["outcome"] for r in history["recent"]] == ["answered", "abandoned"]   # newest first

            # The call goes on: on_call is forwarded, no second pop; the end of the call too.
            await directory.transition("1001", AgentState.ON_CALL, call="1700000000.42")
            assert (await receive(ws))["state"] == "on_call"
            await redis.publish(Keys.events, json.dumps({"type": "call_ended", "uniqueid": "1700000000.42",
                                                         "outcome": "answered", "agent": "1001"}))
            ended = await receive(ws)
            assert ended == {"type": "call_ended", "uniqueid": "1700000000.42", "outcome": "answered",
                             "agent": "1001"}
            await directory.transition("1001", AgentState.WRAPUP)
            assert (await receive(ws))["state"] == "wrapup"
            await assert_silent(ws)


async def test_screen_pop_without_ivr_path_history_or_call_hash(redis, pool):
    directory = await make_agents(redis)
    await put_call(redis, "c-noivr", caller="", ivr=False)
    async with served(redis, pool) as client:
        async with client.ws_connect("/api/v1/ws/agent/1001") as ws:
            await receive(ws)
            await directory.transition("1001", AgentState.RESERVED, call="c-noivr")
            pop = await receive_until(ws, "screen_pop")
            assert pop["ivr"] is None and pop["history"] is None and pop["live"] is True
            assert pop["call"]["caller"] == "" and pop["call"]["queue"] == "enterprise"
            await directory.transition("1001", AgentState.READY)
            await directory.transition("1001", AgentState.RESERVED, call="c-gone")     # no hash at all
            pop = await receive_until(ws, "screen_pop")
            assert pop["live"] is False and pop["call"]["uniqueid"] == "c-gone"


async def test_screen_pop_without_postgres_has_no_history(redis, pool, pg_url):
    directory = await make_agents(redis)
    await put_call(redis, "c-nopg")
    closed = await asyncpg.create_pool(pg_url, min_size=0, max_size=1)
    await closed.close()
    # Signed in before PostgreSQL went away: the session is known from Redis.
    async with client_for(make_app(redis, closed), pool) as client:
        async with client.ws_connect("/api/v1/ws/agent/1001") as ws:
            await receive(ws)
            await directory.transition("1001", AgentState.RESERVED, call="c-nopg")
            pop = await receive_until(ws, "screen_pop")
            assert pop["history"] is None and pop["call"]["caller"] == CALLER and pop["ivr"]["steps"]


async def test_screen_pop_on_connect_when_already_ringing(redis, pool):
    directory = await make_agents(redis)
    await put_call(redis, "c-ring")
    await directory.transition("1001", AgentState.RESERVED, call="c-ring")
    async with served(redis, pool) as client:
        async with client.ws_connect("/api/v1/ws/agent/1001") as ws:       # e.g. the page was reloaded
            state = await receive(ws)
            assert state["type"] == "state" and state["agent"]["state"] == "reserved"
            pop = await receive(ws)
            assert pop["type"] == "screen_pop" and pop["call"]["uniqueid"] == "c-ring"


async def test_only_this_agents_events_are_forwarded(redis, pool):
    directory = await make_agents(redis)
    async with served(redis, pool) as client:
        async with client.ws_connect("/api/v1/ws/agent/1001") as ws1, client.ws_connect("/api/v1/ws/agent/1002") as ws2:
            await receive(ws1)
            await receive(ws2)
            await directory.transition("1002", AgentState.NOT_READY, reason="break")
            await redis.publish(Keys.events, json.dumps({"type": "call_waiting", "uniqueid": "x1",
                                                         "queue": "general", "caller": "1"}))
            await directory.transition("1001", AgentState.NOT_READY, reason="meeting")
            first = await receive(ws1)
            assert (first["agent"], first["state"], first["reason"]) == ("1001", "not_ready", "meeting")
            other = await receive(ws2)
            assert (other["agent"], other["state"], other["reason"]) == ("1002", "not_ready", "break")
            await assert_silent(ws1)
            await assert_silent(ws2)


async def test_one_subscription_for_all_sockets(redis, pool):
    directory = await make_agents(redis)
    async with served(redis, pool) as client:
        sockets = [await client.ws_connect(f"/api/v1/ws/agent/{agent_id}") for agent_id in ("1001", "1001", "1002")]
        try:
            for ws in sockets:
                await receive(ws)
            assert (await redis.pubsub_numsub(Keys.events)) == [(Keys.events, 1)]
            await directory.transition("1001", AgentState.NOT_READY)
            assert (await receive(sockets[0]))["state"] == "not_ready"     # both desktops of 1001
            assert (await receive(sockets[1]))["state"] == "not_ready"
            await assert_silent(sockets[2])
            metrics = await (await client.get("/metrics")).text()
            assert "hotline_cti_desktops_connected 3.0" in metrics
        finally:
            for ws in sockets:
                await ws.close()
    async with asyncio.timeout(TIMEOUT):                                 # closed with the app
        while await redis.pubsub_numsub(Keys.events) != [(Keys.events, 0)]:
            await asyncio.sleep(0.01)


# ---- untrusted client messages ----------------------------------------------------------------
async def test_bad_client_messages_get_an_error_and_the_socket_lives_on(redis, pool):
    directory = await make_agents(redis)
    async with served(redis, pool) as client:
        async with client.ws_connect("/api/v1/ws/agent/1001") as ws:
            await receive(ws)
            for bad in ("{not json", "[1, 2]", "null", '"ping"', '{"type": 5}', '{"no": "type"}',
                        json.dumps({"type": "x" * 5000}), "坐席\x00", ""):
                await ws.send_str(bad)
                reply = await receive(ws)
                assert reply["type"] == "error", bad
                assert len(reply["error"]) < 200
            await ws.send_bytes(b"\x00\x01binary")
            assert (await receive(ws))["type"] == "error"
            await ws.send_json({"type": "ping"})
            assert await receive(ws) == {"type": "pong"}
            await ws.send_json({"type": "state"})
            assert (await receive(ws))["type"] == "state"
            await directory.transition("1001", AgentState.NOT_READY)
            assert (await receive(ws))["state"] == "not_ready"           # still fed with events


async def test_oversized_client_message_closes_only_that_socket(redis, pool):
    directory = await make_agents(redis)
    async with served(redis, pool) as client:
        async with client.ws_connect("/api/v1/ws/agent/1001") as big, client.ws_connect("/api/v1/ws/agent/1001") as ok:
            await receive(big)
            await receive(ok)
            await big.send_str("x" * 100_000)
            msg = await big.receive(timeout=TIMEOUT)
            assert msg.type == WSMsgType.CLOSE and msg.data == 1009      # message too big
            await directory.transition("1001", AgentState.NOT_READY)
            assert (await receive(ok))["state"] == "not_ready"


async def test_garbage_on_the_events_channel_is_ignored(redis, pool):
    directory = await make_agents(redis)
    async with served(redis, pool) as client:
        async with client.ws_connect("/api/v1/ws/agent/1001") as ws:
            await receive(ws)
            for junk in ("not json", "[]", '{"type": 1, "agent": "1001"}', '{"agent": "1001"}',
                         '{"type": "agent", "agent": "1001", "state": "reserved", "call": 42}'):
                await redis.publish(Keys.events, junk)
            await directory.transition("1001", AgentState.NOT_READY)
            message = await receive(ws)
            # The last junk event names this agent and is forwarded as is, but pops no screen.
            if message.get("call") == 42:
                message = await receive(ws)
            assert message["state"] == "not_ready"
            await assert_silent(ws)


# ---- resilience ---------------------------------------------------------------------------------
@pytest.mark.parametrize("lean", [True, False])
async def test_lost_subscription_is_remade_and_desktops_resync(redis, pool, monkeypatch, lean):
    """On the lean subscription (hotline.lane) or, where the client allows none, through redis-py."""
    if not lean:
        monkeypatch.setattr("hotline.subscriber.open_lane", lambda client: None)
    directory = await make_agents(redis)
    async with served(redis, pool) as client:
        async with client.ws_connect("/api/v1/ws/agent/1001") as ws:
            await receive(ws)
            hub = client.app[HUB]
            assert hub.subscriber.lean is lean
            await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            state = await receive_until(ws, "state", timeout=5)          # re-subscribed: read the state again
            assert state["agent"]["state"] == "ready"
            # Events flow again: a probe published now reaches the desktop.
            probe = json.dumps({"type": "agent", "agent": "1001", "state": "probe"})
            async with asyncio.timeout(5):
                while True:
                    await redis.publish(Keys.events, probe)
                    try:
                        if (await receive_until(ws, "agent", timeout=0.3))["state"] == "probe":
                            break
                    except asyncio.TimeoutError:
                        pass
            assert hub.connected
            await directory.transition("1001", AgentState.NOT_READY)
            async with asyncio.timeout(TIMEOUT):
                while (event := await receive_until(ws, "agent"))["state"] == "probe":
                    pass                                                 # late probes, resyncs: skipped
            assert event["state"] == "not_ready"


async def test_server_shutdown_closes_desktops_promptly(redis, pool):
    await make_agents(redis)
    token = await token_for(pool, redis, Role.AGENT, agent_id="1001")
    client = TestClient(TestServer(make_app(redis, pool)), headers={"Authorization": f"Bearer {token}"})
    await client.start_server()
    ws = await client.ws_connect("/api/v1/ws/agent/1001")
    await receive(ws)
    started = time.perf_counter()
    closing = asyncio.create_task(client.server.close())
    msg = await ws.receive(timeout=TIMEOUT)
    assert msg.type == WSMsgType.CLOSE and msg.data == 1001              # going away: reconnect elsewhere
    await asyncio.wait_for(closing, TIMEOUT)
    assert time.perf_counter() - started < 2.0
    await client.close()


def test_slow_desktop_is_told_to_resync_instead_of_blocking_others():
    sub = Subscription("1001", queue_size=3)
    for n in range(5):
        sub.deliver({"type": "agent", "n": n})
    # Overflow at n=3: the backlog is dropped for one resync; what comes after still queues.
    assert [sub.queue.get_nowait() for _ in range(sub.queue.qsize())] == [RESYNC, {"type": "agent", "n": 4}]
    for n in range(3):
        sub.deliver({"type": "agent", "n": n})
    sub.deliver(None)                                                    # the hub's end is never lost
    sub.deliver({"type": "agent", "n": 9})                               # nor followed by anything
    assert [sub.queue.get_nowait() for _ in range(sub.queue.qsize())] == [None]
