"""Call control from the desktop over the whole stack: the CTI's /api/v1, the ACD, real AMI to the
simulated PBX running the shipped dialplan, the record in PostgreSQL, compared with the simulator's
ground truth. The 12345 rule "来电最多转接一次": a second transfer is refused unless a supervisor
allows it."""
from __future__ import annotations

import asyncio
import json

import pytest

from acd.transfers import ONCE_ONLY, TransferError, destination, refusal, talked_seconds
from hotline.auth import Role
from hotline.model import AgentState

from .auth_helpers import token_for
from .test_agent_after_call import until
from .test_call_end_to_end import hotline, plan, records
from .test_cti_acd import cti_before

AGENTS = (("1001", {"mandarin": 5}), ("1002", {"mandarin": 5}))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_second_transfer_is_refused_unless_a_supervisor_allows_it(redis, pool, redis_url, pg_url, tmp_path):
    async with hotline(redis, pool, redis_url, pg_url, tmp_path, agents=AGENTS, wrapup=0.2) as (sim, acd), \
            cti_before(acd, redis, pool) as cti:
        a = bearer(await token_for(pool, redis, Role.AGENT, "agent-li", agent_id="1001"))
        b = bearer(await token_for(pool, redis, Role.AGENT, "agent-wang", agent_id="1002"))
        sup = bearer(await token_for(pool, redis, Role.SUPERVISOR, "sup"))
        caller = sim.place_call(plan(talk=6.0))
        await until(lambda: acd.agents.get("1001").state == AgentState.ON_CALL)
        uid = acd.agents.get("1001").call
        to_b = {"kind": "agent", "target": "1002"}
        r = await cti.post(f"/api/v1/calls/{uid}/transfer", json=to_b, headers=b)
        assert r.status == 403                                  # not B's call
        r = await cti.post(f"/api/v1/calls/{uid}/transfer", json={"kind": "emergency", "target": "999"}, headers=a)
        assert r.status == 400 and "emergency numbers" in (await r.json())["error"]
        r = await cti.post(f"/api/v1/calls/{uid}/transfer", json=to_b, headers=a)
        assert r.status == 200, await r.text()
        await until(lambda: acd.agents.get("1002").state == AgentState.ON_CALL)
        await until(lambda: acd.agents.get("1001").state == AgentState.READY)    # A: wrap-up, then ready
        # The second transfer: refused with the rule's message, whoever asks.
        to_queue = {"kind": "queue", "target": "general"}
        r = await cti.post(f"/api/v1/calls/{uid}/transfer", json=to_queue, headers=b)
        assert r.status == 409 and (await r.json())["error"] == ONCE_ONLY
        r = await cti.post(f"/api/v1/calls/{uid}/transfer/allow", headers=b)
        assert r.status == 403                                  # agents may not allow it
        r = await cti.post(f"/api/v1/calls/{uid}/transfer/allow", headers=sup)
        assert r.status == 200 and (await r.json())["allowed_more"] == 1
        r = await cti.post(f"/api/v1/calls/{uid}/transfer", json=to_queue, headers=b)
        assert r.status == 200, await r.text()
        await until(lambda: acd.agents.get("1001").state == AgentState.ON_CALL)  # queued again: A was ready
        r = await cti.post(f"/api/v1/calls/{uid}/transfer", json=to_queue, headers=a)
        assert r.status == 409 and (await r.json())["error"] == ONCE_ONLY      # allowed once, not twice
        await asyncio.wait_for(caller.done.wait(), 15)
        await acd.core.wait_idle()
    row = (await records(pool))[uid]
    truth = sim.truth.records[0]
    assert len(await records(pool)) == 1                        # one record for the transferred call
    assert row["outcome"] == "answered" and row["agent"] == "1001"
    assert row["agents"] == truth["agents"] == ["1001", "1002", "1001"]
    assert [(t["kind"], t["to"], t["mode"], t["by"], t["from"]) for t in json.loads(row["transfers"])] == [
        ("agent", "1002", "blind", "agent-li", "1001"), ("queue", "general", "blind", "agent-wang", "1002")]
    # Talk time: the time bridged with agents, not the rings between (ground truth of the simulator).
    assert row["talk_s"] == pytest.approx(truth["bridged_s"], abs=0.15)
    span = (row["talk_ended_at"] - row["answered_at"]).total_seconds()
    assert row["talk_s"] < span - 0.03                          # (two rings of >= 20 ms each left out)
    audit = [(r["actor"], r["action"]) for r in await pool.fetch("SELECT actor, action FROM audit ORDER BY id")]
    assert ("sup", "call_transfer_allowed") in audit


async def test_hangup_from_the_desktop_and_an_unanswered_emergency_line(redis, pool, redis_url, pg_url, tmp_path):
    async with hotline(redis, pool, redis_url, pg_url, tmp_path, agents=AGENTS, wrapup=0.2) as (sim, acd), \
            cti_before(acd, redis, pool) as cti:
        a = bearer(await token_for(pool, redis, Role.AGENT, "agent-li", agent_id="1001"))
        first = sim.place_call(plan(number="13800000001", talk=30.0))
        await until(lambda: acd.agents.get("1001").state == AgentState.ON_CALL)
        uid = acd.agents.get("1001").call
        r = await cti.get("/api/v1/transfer-targets", headers=a)
        targets = await r.json()
        assert "general" in targets["queues"] and [e["number"] for e in targets["emergency"]] == ["110", "119",
                                                                                                   "120", "122"]
        r = await cti.post(f"/api/v1/calls/{uid}/hangup", headers=a)
        assert r.status == 200, await r.text()
        await asyncio.wait_for(first.done.wait(), 15)
        assert first.survey_key is not None                     # the caller reached the survey
        await until(lambda: acd.agents.get("1001").state == AgentState.READY)
        # 110 on the trunk: the simulated carrier has nobody there, so the caller queues again.
        second = sim.place_call(plan(number="13800000002", talk=3.0))
        await until(lambda: acd.agents.get("1002").state == AgentState.ON_CALL
                    or acd.agents.get("1001").state == AgentState.ON_CALL)
        agent = "1001" if acd.agents.get("1001").state == AgentState.ON_CALL else "1002"
        other = "1002" if agent == "1001" else "1001"
        uid2 = acd.agents.get(agent).call
        token = bearer(await token_for(pool, redis, Role.AGENT, f"agent-{agent}", agent_id=agent))
        r = await cti.post(f"/api/v1/calls/{uid2}/transfer", json={"kind": "emergency", "target": "110"},
                           headers=token)
        assert r.status == 200, await r.text()
        await until(lambda: acd.agents.get(other).state == AgentState.ON_CALL, 15)
        await asyncio.wait_for(second.done.wait(), 15)
        await acd.core.wait_idle()
    rows = await records(pool)
    assert rows[uid]["outcome"] == "answered" and rows[uid]["survey"] is not None and rows[uid]["transfers"] is None
    assert rows[uid]["agents"] == ["1001"]
    row = rows[uid2]
    assert row["agents"] == [agent, other] and [t["to"] for t in json.loads(row["transfers"])] == ["110"]
    truth = next(t for t in sim.truth.records if t["uniqueid"] == uid2)
    assert row["talk_s"] == pytest.approx(truth["bridged_s"], abs=0.15)


def test_transfer_targets_and_the_once_only_rule():
    dest = destination("queue", "general", queues=["general"], specialists=[], skills="mandarin:1", priority=10)
    assert (dest.context, dest.exten, dest.expect) == ("hotline-wait", "s", "queue")
    assert dict(dest.variables) == {"HOTLINE_QUEUE": "general", "HOTLINE_SKILLS": "mandarin:1",
                                    "HOTLINE_PRIORITY": "10"}
    assert destination("agent", "1002", queues=[], specialists=[], transferer="1001").agent == "1002"
    assert destination("emergency", "120", queues=[], specialists=[]).context == "hotline-transfer-out"
    assert destination("specialist", "88001234", queues=[], specialists=["88001234"]).exten == "88001234"
    for kind, target in (("queue", "nowhere"), ("agent", "1001"), ("agent", "li"), ("emergency", "911"),
                         ("specialist", "110"), ("fax", "1")):
        with pytest.raises(TransferError) as refused:
            destination(kind, target, queues=["general"], specialists=[], transferer="1001")
        assert refused.value.status == 400
    assert refusal(0, 0) is None and refusal(1, 0) == ONCE_ONLY
    assert refusal(1, 1) is None and refusal(2, 1) == ONCE_ONLY
    assert talked_seconds(2.0, 10.0, 12.5) == 4.5 and talked_seconds(2.0, None, 99.0) == 2.0
