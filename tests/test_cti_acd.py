"""The CTI's API in front of a running ACD: the agents' verbs reach the ACD with the service token,
the routing decisions come back paged and filtered, a change by someone else is audited."""
from __future__ import annotations

import asyncio
import contextlib

from aiohttp.test_utils import TestClient, TestServer

from cti.app import CtiAccess, make_app
from hotline.auth import Role
from hotline.model import AgentState

from .auth_helpers import token_for
from .test_call_end_to_end import SERVICE_TOKEN, hotline, plan


@contextlib.asynccontextmanager
async def cti_before(acd, redis, pool):
    app = make_app(redis, pool, access=CtiAccess(acd_url=f"http://127.0.0.1:{acd.http_port}",
                                                 service_token=SERVICE_TOKEN))
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def test_agents_verbs_and_decisions_through_the_cti(redis, pool, redis_url, pg_url, tmp_path):
    agents = (("1001", {"mandarin": 5}), ("1002", {"mandarin": 5}))
    async with hotline(redis, pool, redis_url, pg_url, tmp_path, agents=agents) as (sim, acd), \
            cti_before(acd, redis, pool) as cti:
        sup = {"Authorization": f"Bearer {await token_for(pool, redis, Role.SUPERVISOR, 'sup')}"}
        agent = {"Authorization": f"Bearer {await token_for(pool, redis, Role.AGENT, agent_id='1002')}"}
        resp = await cti.post("/api/v1/agents/1001/state", json={"state": "not_ready", "reason": "meeting"},
                              headers=sup)
        assert resp.status == 200 and (await resp.json())["state"] == "not_ready"
        assert acd.agents.get("1001").reason == "meeting"
        resp = await cti.post("/api/v1/agents/1002/state", json={"state": "not_ready"}, headers=agent)
        assert resp.status == 400 and (await resp.json())["field"] == "reason"
        resp = await cti.post("/api/v1/agents/1002/state", json={"state": "logged_in"}, headers=agent)
        assert resp.status == 409 and "already logged in" in (await resp.json())["error"]     # the ACD's refusal
        caller = sim.place_call(plan(talk=0.1))
        await asyncio.wait_for(caller.done.wait(), 10)
        assert caller.agent == "1002"
        resp = await cti.get("/api/v1/decisions?agent=1002&limit=1", headers=sup)
        page = await resp.json()
        assert resp.status == 200 and [d["call"] for d in page["decisions"]] == [caller.channel.uniqueid]
        assert (await (await cti.get("/api/v1/decisions?agent=1001", headers=sup)).json())["decisions"] == []
        admin = {"Authorization": f"Bearer {await token_for(pool, redis, Role.ADMIN)}"}
        big = "id,name,team,skills\n" + "".join(f"{5000 + i},n,t,mandarin:1\n" for i in range(5001))
        resp = await cti.post("/api/v1/agents/import", data=big, headers={**admin, "Content-Type": "text/csv"})
        assert resp.status == 400 and "at most 5000" in (await resp.json())["error"]
        await acd.core.wait_idle()
    audit = await pool.fetch("SELECT actor, action, target, detail FROM audit ORDER BY id")
    assert [(r["actor"], r["action"], r["target"]) for r in audit] == [("sup", "agent_state", "1001")]
    assert acd.agents.get("1002").state in (AgentState.WRAPUP, AgentState.READY)
