"""A 12345 call end to end through real parts: the simulated PBX running the shipped dialplan,
FastAGI to our IVR, AMI to our ACD, Redis, and the record in PostgreSQL."""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from acd.service import run_acd
from hotline.model import AgentState
from hotline.settings import Settings
from hotline.stores import Stores
from ivr.service import run_ivr
from hotline.paths import ASTERISK_CONFIG, SOUNDS
from pbxsim.scenario import CallerPlan, Scenario
from pbxsim.simulator import Simulator, SimulatorConfig, read_manager_conf

SPEED = 20.0   # prompts and ring timeouts run 20x faster than real time
SERVICE_TOKEN = "test-service-token-0123456789abcdefghij"     # what the CTI would send the ACD's API
SERVICE = {"Authorization": f"Bearer {SERVICE_TOKEN}"}


def plan(number="13800000001", line="main", digits=("1",), patience=30.0, talk=0.3,
         agent_hangs_up=False, hangup_at=None, queue_choice=None) -> CallerPlan:
    return CallerPlan(number=number, line=line, language="zh", menu_inputs=list(digits),
                      hangup_in_ivr_at_prompt=hangup_at, patience_s=patience, talk_s=talk,
                      agent_hangs_up=agent_hangs_up, reaction_s=0.02, queue_choice=queue_choice)


@asynccontextmanager
async def hotline(redis, pool, redis_url, pg_url, tmp_path: Path, *, agents=(("1001", {"mandarin": 5}),),
                  agi_port=None, wrapup=0.05, answer_delay=(0.02, 0.05), no_answer=0.0, speed=SPEED,
                  **settings_kw):
    """The simulated PBX plus our IVR and ACD on the test's Redis and PostgreSQL."""
    user = read_manager_conf(ASTERISK_CONFIG / "manager.conf")[2][0]
    sim = Simulator(SimulatorConfig(config_dir=ASTERISK_CONFIG, sounds_dirs=[SOUNDS], ami_port=0, speed=speed,
                                    agi_url=None, auth_fail_delay=0.01, truth_log=tmp_path / "truth.jsonl"),
                    Scenario(agents=0, answer_delay_s=answer_delay, no_answer_share=no_answer))
    await sim.start()
    settings_kw.setdefault("service_token", SERVICE_TOKEN)
    settings = Settings(database_url=pg_url, redis_url=redis_url, ami_port=sim.ami_port,
                        ami_username=user.username, ami_secret=user.secret, agi_port=0, acd_port=0, wrapup_s=wrapup,
                        ami_ping_interval_s=5, **settings_kw)
    ivr = await run_ivr(settings, redis)
    sim.pbx.globals["HOTLINE_AGI"] = f"agi://127.0.0.1:{agi_port or ivr.port}"
    stores = Stores(pg_url, redis_url, pool, redis, embedded=False)
    try:
        async with run_acd(settings, stores) as acd:
            for agent_id, skills in agents:
                sim.register_phone(agent_id)
                await acd.agents.upsert(agent_id, f"Agent {agent_id}", "general", skills)
                await acd.agents.transition(agent_id, AgentState.READY)
            yield sim, acd
            await sim.drain(10)
            await acd.core.wait_idle()
    finally:
        await ivr.stop()
        await sim.stop()


async def records(pool):
    return {r["uniqueid"]: dict(r) for r in await pool.fetch("SELECT * FROM calls ORDER BY arrived_at")}


async def test_one_call_answered_and_recorded(redis, pool, redis_url, pg_url, tmp_path):
    async with hotline(redis, pool, redis_url, pg_url, tmp_path) as (sim, acd):
        caller = sim.place_call(plan(digits=("1",), talk=0.3))
        await asyncio.wait_for(caller.done.wait(), 10)
    rows = await records(pool)
    assert len(rows) == 1
    row = rows[caller.channel.uniqueid]
    truth = sim.truth.records[0]
    assert row["outcome"] == truth["outcome"] == "answered"
    assert row["agent"] == truth["agent"] == "1001"
    assert row["queue"] == "general" and row["line"] == "main" and row["caller_id"] == "13800000001"
    assert row["arrived_at"] <= row["queued_at"] <= row["answered_at"] <= row["ended_at"]
    assert row["wait_s"] == pytest.approx(truth["wait_s"], abs=0.05)
    assert row["talk_s"] == pytest.approx(truth["talk_s"], abs=0.05)
    assert row["ivr_path"] is not None
    # The agent went through reserved, on call, wrap-up and back to ready, all on record.
    states = [r["state"] for r in await pool.fetch(
        "SELECT state FROM agent_states WHERE agent_id = '1001' ORDER BY at")]
    assert states == ["ready", "reserved", "on_call", "wrapup", "ready"]


async def test_skill_decides_the_agent(redis, pool, redis_url, pg_url, tmp_path):
    agents = (("1001", {"mandarin": 5}), ("1002", {"mandarin": 5, "enterprise": 4}))
    async with hotline(redis, pool, redis_url, pg_url, tmp_path, agents=agents) as (sim, acd):
        # 1001 has been idle longest, but only 1002 has the enterprise skill.
        caller = sim.place_call(plan(line="enterprise", talk=0.2))
        await asyncio.wait_for(caller.done.wait(), 10)
    row = (await records(pool))[caller.channel.uniqueid]
    assert row["queue"] == "enterprise" and row["agent"] == "1002" and row["outcome"] == "answered"


async def test_abandoned_in_ivr_and_in_queue(redis, pool, redis_url, pg_url, tmp_path):
    async with hotline(redis, pool, redis_url, pg_url, tmp_path, agents=()) as (sim, acd):
        in_ivr = sim.place_call(plan(number="13800000002", hangup_at=0))
        in_queue = sim.place_call(plan(number="13800000003", patience=0.3))
        await asyncio.wait_for(asyncio.gather(in_ivr.done.wait(), in_queue.done.wait()), 10)
    rows = await records(pool)
    assert rows[in_ivr.channel.uniqueid]["outcome"] == "abandoned"
    assert rows[in_ivr.channel.uniqueid]["abandoned_in"] == "ivr"
    assert rows[in_ivr.channel.uniqueid]["queued_at"] is None
    queued = rows[in_queue.channel.uniqueid]
    assert (queued["outcome"], queued["abandoned_in"]) == ("abandoned", "queue")
    assert queued["wait_s"] == pytest.approx(0.3, abs=0.1)


async def test_ivr_unreachable_still_reaches_an_agent(redis, pool, redis_url, pg_url, tmp_path):
    from hotline.embedded import free_port

    async with hotline(redis, pool, redis_url, pg_url, tmp_path, agi_port=free_port()) as (sim, acd):
        caller = sim.place_call(plan(talk=0.2))
        await asyncio.wait_for(caller.done.wait(), 10)
    row = (await records(pool))[caller.channel.uniqueid]
    assert row["outcome"] == "answered" and row["queue"] == "general"


async def test_many_calls_match_the_ground_truth(redis, pool, redis_url, pg_url, tmp_path):
    agents = tuple((str(1001 + i), {"mandarin": 5, "enterprise": 4, "elderly": 5}) for i in range(4))
    async with hotline(redis, pool, redis_url, pg_url, tmp_path, agents=agents) as (sim, acd):
        callers = [sim.place_call(plan(number=f"1390000{i:04d}", digits=(str(d),), talk=0.2 + 0.05 * (i % 5),
                                       patience=2.0, line="enterprise" if i % 7 == 0 else "main"))
                   for i, d in zip(range(24), [1, 2, 3, 9, 0] * 5)]
        await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in callers)), 30)
    rows = await records(pool)
    truth = {r["uniqueid"]: r for r in sim.truth.records}
    assert set(rows) == set(truth) and len(rows) == 24
    for uid, row in rows.items():
        assert row["outcome"] == truth[uid]["outcome"], uid
        if row["outcome"] == "answered":
            assert row["agent"] == truth[uid]["agent"]
            # (The ACD times the queue by when it hears the events, the simulator by when it sends
            # them: a stall of the one event loop they share on a busy 2-core box shows as ~0.1 s.
            # Getting the first queue time wrong would be off by a whole ring time, 0.75 s.)
            assert row["wait_s"] == pytest.approx(truth[uid]["wait_s"], abs=0.25)
    # Every call ended with its agent back to ready: nobody stuck in the wrong state.
    assert {a.state for a in acd.agents.agents.values()} == {AgentState.READY}


async def test_unregistered_phone_sends_the_call_to_the_next_agent(redis, pool, redis_url, pg_url, tmp_path):
    agents = (("1001", {"mandarin": 5}), ("1002", {"mandarin": 5}))
    async with hotline(redis, pool, redis_url, pg_url, tmp_path, agents=agents) as (sim, acd):
        sim.unregister_phone("1001")          # longest idle, but its phone is gone
        caller = sim.place_call(plan(talk=0.2))
        await asyncio.wait_for(caller.done.wait(), 10)
        assert acd.agents.get("1001").state == AgentState.NOT_READY
        assert acd.agents.get("1001").reason == "no_answer"
    row = (await records(pool))[caller.channel.uniqueid]
    assert row["outcome"] == "answered" and row["agent"] == "1002"


async def test_ring_no_answer_requeues_and_another_agent_answers(redis, pool, redis_url, pg_url, tmp_path):
    agents = (("1001", {"mandarin": 5}), ("1002", {"mandarin": 5}))
    async with hotline(redis, pool, redis_url, pg_url, tmp_path, agents=agents) as (sim, acd):
        sim.phones["1001"].no_answer_share = 1.0   # 1001 lets it ring out (15 s, 20x faster here)
        caller = sim.place_call(plan(talk=0.2, patience=30))
        await asyncio.wait_for(caller.done.wait(), 15)
    row = (await records(pool))[caller.channel.uniqueid]
    assert (row["outcome"], row["agent"], row["ring_attempts"]) == ("answered", "1002", 2)
    truth = sim.truth.records[0]
    assert row["wait_s"] == pytest.approx(truth["wait_s"], abs=0.1) and truth["wait_s"] >= 15 / 20


async def test_agent_hangs_up_first_survey_is_not_talk_time(redis, pool, redis_url, pg_url, tmp_path):
    async with hotline(redis, pool, redis_url, pg_url, tmp_path) as (sim, acd):
        caller = sim.place_call(plan(talk=0.3, agent_hangs_up=True))
        await asyncio.wait_for(caller.done.wait(), 15)
    row = (await records(pool))[caller.channel.uniqueid]
    truth = sim.truth.records[0]
    assert row["outcome"] == truth["outcome"] == "answered"
    assert row["talk_s"] == pytest.approx(truth["talk_s"], abs=0.05)
    assert row["talk_s"] == pytest.approx(0.3, abs=0.1)
    survey_s = (row["ended_at"] - row["answered_at"]).total_seconds() - row["talk_s"]
    assert survey_s > 0.05, "the caller stayed for the survey after the agent hung up"
    assert row["survey"] == truth["survey"] == "satisfied"      # the simulated caller keyed 1


async def test_priority_beats_arrival_order(redis, pool, redis_url, pg_url, tmp_path):
    """An elderly caller (priority 30) who queued later is answered before an ordinary one."""
    skills = {"mandarin": 5, "elderly": 5}
    async with hotline(redis, pool, redis_url, pg_url, tmp_path, agents=()) as (sim, acd):
        ordinary = sim.place_call(plan(number="13900000101", digits=("1",), talk=0.2, patience=30))
        await _until(lambda: ordinary.queued_at is not None)
        elderly = sim.place_call(plan(number="13900000102", digits=("9",), talk=0.2, patience=30))
        await _until(lambda: elderly.queued_at is not None)
        sim.register_phone("1001")
        await acd.agents.upsert("1001", "Agent 1001", "general", skills)
        await acd.core.agents.free("1001")       # what the agent's "ready" does (API, phone)
        await asyncio.wait_for(asyncio.gather(ordinary.done.wait(), elderly.done.wait()), 20)
    rows = await records(pool)
    first, second = rows[elderly.channel.uniqueid], rows[ordinary.channel.uniqueid]
    assert (first["queue"], first["priority"], second["priority"]) == ("elderly", 30, 0), (first, second)
    assert first["queued_at"] > second["queued_at"]
    assert first["answered_at"] < second["answered_at"]
    assert (first["agent"], second["agent"]) == ("1001", "1001")


async def _until(predicate, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)
