"""Not ready after this call, and wrap-up ended by the agent: the ACD's API on a running ACD with the
simulated PBX, and the CTI's /api/v1 in front of it."""
from __future__ import annotations

import asyncio

import aiohttp

from hotline.auth import Role
from hotline.keys import Keys
from hotline.model import AgentState

from .auth_helpers import token_for
from .test_call_end_to_end import SERVICE, hotline, plan
from .test_cti_acd import cti_before


async def until(condition, timeout=10.0):
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def test_not_ready_after_the_call_applies_when_wrapup_ends(redis, pool, redis_url, pg_url, tmp_path):
    async with hotline(redis, pool, redis_url, pg_url, tmp_path, wrapup=0.2) as (sim, acd):
        base = f"http://127.0.0.1:{acd.http_port}"
        async with aiohttp.ClientSession(headers=SERVICE) as http:
            r = await http.post(f"{base}/agents/1001/not-ready", json={"reason": "meal", "after_call": True})
            assert r.status == 409 and "not on a call" in (await r.json())["error"]     # ready: not now
            caller = sim.place_call(plan(talk=1.0))
            await until(lambda: acd.agents.get("1001").state == AgentState.ON_CALL)
            r = await http.post(f"{base}/agents/1001/not-ready", json={"reason": "meal", "after_call": True})
            assert r.status == 200 and (await r.json())["state"] == "on_call"
            assert await redis.hget(Keys.agent("1001"), "pending_reason") == "meal"
            await asyncio.wait_for(caller.done.wait(), 10)
            await until(lambda: acd.agents.get("1001").state == AgentState.NOT_READY)
            assert acd.agents.get("1001").reason == "meal"
            assert await redis.hget(Keys.agent("1001"), "pending_reason") is None
    states = [(r["state"], r["reason"]) for r in await pool.fetch(
        "SELECT state, reason FROM agent_states WHERE agent_id = '1001' ORDER BY at")]
    assert states[-2:] == [("wrapup", None), ("not_ready", "meal")]


async def test_after_call_withdrawn_then_wrapup_ended_now(redis, pool, redis_url, pg_url, tmp_path):
    async with hotline(redis, pool, redis_url, pg_url, tmp_path, wrapup=60) as (sim, acd), \
            cti_before(acd, redis, pool) as cti:
        agent = {"Authorization": f"Bearer {await token_for(pool, redis, Role.AGENT, agent_id='1001')}"}
        caller = sim.place_call(plan(talk=0.6))
        await until(lambda: acd.agents.get("1001").state == AgentState.ON_CALL)
        r = await cti.post("/api/v1/agents/1001/state", json={"state": "not_ready", "reason": "break",
                                                              "after_call": True}, headers=agent)
        assert r.status == 200
        seen = await (await cti.get("/api/v1/agents/1001", headers=agent)).json()
        assert seen["pending_reason"] == "break"             # the desktop shows it
        r = await cti.post("/api/v1/agents/1001/state", json={"state": "ready", "after_call": True}, headers=agent)
        assert r.status == 200 and (await r.json())["pending_reason"] == ""
        r = await cti.post("/api/v1/agents/1001/state", json={"state": "logged_out", "after_call": True},
                           headers=agent)
        assert r.status == 400 and (await r.json())["field"] == "after_call"
        await asyncio.wait_for(caller.done.wait(), 10)
        await until(lambda: acd.agents.get("1001").state == AgentState.WRAPUP)
        # A call waits meanwhile: ending the wrap-up offers it at once (60 s of wrap-up otherwise).
        second = sim.place_call(plan(number="13800000002", talk=0.2))
        await until(lambda: bool(acd.core.book.waiting))
        r = await cti.post("/api/v1/agents/1001/wrapup/end", headers=agent)
        assert r.status == 200
        await asyncio.wait_for(second.done.wait(), 10)
        assert second.agent == "1001"
        await until(lambda: acd.agents.get("1001").state == AgentState.WRAPUP)
        r = await cti.post("/api/v1/agents/1001/wrapup/end", headers=agent)
        assert r.status == 200 and (await r.json())["state"] == "ready"
        r = await cti.post("/api/v1/agents/1001/wrapup/end", headers=agent)
        assert r.status == 409 and "not in wrap-up" in (await r.json())["error"]
