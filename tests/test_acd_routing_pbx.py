"""ACD routing acceptance items, through the simulated PBX running the shipped dialplan (AMI and
FastAGI over TCP), our IVR and ACD, and the real Redis and PostgreSQL fixtures:

- skill expansion: a caller is offered to an agent who lacks the required skill only once the wait
  set in queues.yaml has passed, never before;
- wrap-up: a team's wrap-up time (queues.yaml ``teams``) holds the agent back from the next caller,
  and extending it over the ACD's HTTP API holds it back longer;
- ring-no-answer: the caller the agent did not answer goes back to the HEAD of the queue, ahead of a
  caller who queued after it, and the agent goes not ready (no_answer), recorded once although
  Asterisk reports the miss twice (DialEnd and the dialplan's HotlineRingNoAnswer).

The ACD's limits in queues.yaml (expansion waits, wrap-up) are real seconds; the dialplan (prompts,
ring timeout: 15 s here 0.75 s) runs SPEED times faster.
"""
from __future__ import annotations

import asyncio

import aiohttp
import pytest

from hotline.keys import Keys
from hotline.model import AgentState
from tests.test_call_end_to_end import SERVICE, hotline, plan, records

# Scheduling on a busy 2-core machine: how late a timer may fire or a row's time may be stamped.
LATE = 0.35


async def until(predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def until_async(predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.01)


async def _in_waiting(redis, uid: str) -> bool:
    """The ACD has the call waiting in Redis (its routing score in hotline:waiting)."""
    return await redis.zscore(Keys.waiting, uid) is not None


def queues_file(tmp_path, text: str):
    path = tmp_path / "queues.yaml"
    path.write_text(text, encoding="utf-8")
    return path


async def states(pool, agent_id: str) -> list[dict]:
    return [dict(r) for r in await pool.fetch(
        "SELECT state, reason, call_uniqueid, at FROM agent_states WHERE agent_id = $1 ORDER BY at, id", agent_id)]


async def add_agent(sim, acd, agent_id: str, team: str, skills: dict[str, int], *, ready: bool = True) -> None:
    sim.register_phone(agent_id)
    await acd.agents.upsert(agent_id, f"Agent {agent_id}", team, skills)
    if ready:
        await acd.agents.transition(agent_id, AgentState.READY)
    else:
        await acd.agents.transition(agent_id, AgentState.NOT_READY, reason="break")


# ---- 1. skill expansion after the set wait ------------------------------------------------------

EXPAND_AFTER = 0.6          # real seconds (the ACD's clock)

DROP = f"""
queues:
  enterprise:
    strategy: best_skill
    expand:
      - after_s: {EXPAND_AFTER}
        drop: [enterprise]
"""
REPLACE = f"""
queues:
  enterprise:
    strategy: best_skill
    expand:
      - after_s: {EXPAND_AFTER}
        replace: {{enterprise: "mandarin:4"}}
"""


@pytest.mark.parametrize("rules, agents, expected, back_from_break", [
    # Nobody has the enterprise skill; after the wait the requirement is dropped: mandarin:1 is enough.
    # 1003 speaks no Mandarin: not even the widened requirement lets it take the call.
    (DROP, (("1001", {"mandarin": 5}), ("1003", {"cantonese": 5})), "1001", False),
    # The same, but 1001 comes back from a break half-way through the wait: offered the call then, it
    # must not take it yet (the offer checks how long the call has waited).
    (DROP, (("1001", {"mandarin": 5}), ("1003", {"cantonese": 5})), "1001", True),
    # After the wait enterprise is replaced by mandarin:4: 1001's level 3 is too low, 1002's 5 is enough
    # (1001 is idle longest, so it is offered first and must refuse).
    (REPLACE, (("1001", {"mandarin": 3}), ("1002", {"mandarin": 5})), "1002", False),
], ids=["drop", "drop-agent-back-before-the-wait", "replace-level-too-low"])
async def test_skill_expansion_connects_only_after_the_set_wait(redis, pool, redis_url, pg_url, tmp_path,
                                                                rules, agents, expected, back_from_break):
    path = queues_file(tmp_path, rules)
    async with hotline(redis, pool, redis_url, pg_url, tmp_path, agents=(), acd_queues_file=path) as (sim, acd):
        for ext, skills in agents:
            await add_agent(sim, acd, ext, "general", skills, ready=not (back_from_break and ext == expected))
        caller = sim.place_call(plan(number="13900000201", line="enterprise", digits=("1",), talk=0.2, patience=5))
        await until(lambda: caller.queued_at is not None)
        uid = caller.channel.uniqueid
        # The ACD queued it (nobody meets enterprise:1+mandarin:1 on arrival) ...
        await until_async(lambda: _in_waiting(redis, uid), timeout=2)
        await asyncio.sleep(EXPAND_AFTER / 2)
        if back_from_break:
            await acd.core.agents.free(expected)          # what "ready" does (API, phone *43)
            await asyncio.sleep(0.05)
            assert acd.agents.get(expected).state == AgentState.READY, "took the call before the wait"
        # ... and before the expansion nobody's phone has rung.
        assert sim.pbx.now() - caller.queued_at < EXPAND_AFTER, "too slow to look before the expansion"
        assert {ext: phone.rings for ext, phone in sim.phones.items()} == {ext: 0 for ext, _ in agents}
        assert caller.answered_at is None
        assert await redis.zscore(Keys.waiting, uid) is not None
        await asyncio.wait_for(caller.done.wait(), 10)
        rings = {ext: phone.rings for ext, phone in sim.phones.items()}
        decisions = [d for d in acd.core.assignment.decisions if d["call"] == uid]
    row = (await records(pool))[uid]
    # What the enterprise menu asks for (UserEvent HotlineWaiting: Queue/Skills/CallPriority).
    assert (row["queue"], row["skills"], row["priority"]) == ("enterprise", "enterprise:1+mandarin:1", 10)
    assert (row["outcome"], row["agent"], row["ring_attempts"]) == ("answered", expected, 1)
    assert row["wait_s"] >= EXPAND_AFTER - 0.02, row["wait_s"]
    assert row["wait_s"] < EXPAND_AFTER + 1.5, row["wait_s"]       # connected by the expansion, not by chance
    assert rings == {ext: (1 if ext == expected else 0) for ext, _ in agents}
    # The routing decision was an agent-free offer made once the wait had passed.
    assert len(decisions) == 1 and decisions[0]["kind"] == "agent_free" and decisions[0]["agent"] == expected
    assert decisions[0]["waited_s"] >= EXPAND_AFTER


# ---- 2. wrap-up timing ----------------------------------------------------------------------------

def _wrapup_periods(rows: list[dict]) -> list[tuple[float, float]]:
    """(start, seconds) of every wrap-up on record: from the wrapup row to the next ready row."""
    periods = []
    for i, row in enumerate(rows):
        if row["state"] == "wrapup":
            following = rows[i + 1]
            assert following["state"] == "ready", rows
            periods.append((row["at"].timestamp(), (following["at"] - row["at"]).total_seconds()))
    return periods


async def _two_callers_one_agent(sim):
    """Two callers in the general queue at about the same time: the first queued is served first."""
    callers = [sim.place_call(plan(number="13900000301", talk=0.3, patience=20))]
    await asyncio.sleep(0.2)
    callers.append(sim.place_call(plan(number="13900000302", talk=0.3, patience=20)))
    await until(lambda: any(c.answered_at is not None for c in callers))
    first = next(c for c in callers if c.answered_at is not None)
    second = next(c for c in callers if c is not first)
    return first, second


async def test_team_wrapup_holds_the_agent_back_from_the_next_caller(redis, pool, redis_url, pg_url, tmp_path):
    wrapup = 0.8
    path = queues_file(tmp_path, f"teams:\n  slow:\n    wrapup_s: {wrapup}\n")
    # The setting wrap-up is 0.05 s: only the team's rule can make it 0.8 s.
    async with hotline(redis, pool, redis_url, pg_url, tmp_path, agents=(), acd_queues_file=path,
                       wrapup=0.05) as (sim, acd):
        await add_agent(sim, acd, "1001", "slow", {"mandarin": 5})
        first, second = await _two_callers_one_agent(sim)
        await until(lambda: acd.agents.get("1001").state == AgentState.WRAPUP)
        wrapup_since = acd.agents.get("1001").state_since
        await until(lambda: second.queued_at is not None)
        await asyncio.sleep(wrapup / 2)
        # Half-way through the wrap-up: the waiting caller has not been offered to the agent.
        assert acd.agents.get("1001").state == AgentState.WRAPUP
        assert sim.phones["1001"].rings == 1 and second.answered_at is None
        assert await redis.zscore(Keys.waiting, second.channel.uniqueid) is not None
        await asyncio.wait_for(asyncio.gather(first.done.wait(), second.done.wait()), 15)
    rows = await states(pool, "1001")
    assert [r["state"] for r in rows] == ["ready", "reserved", "on_call", "wrapup", "ready",
                                          "reserved", "on_call", "wrapup", "ready"]
    (start, gap), (_, gap2) = _wrapup_periods(rows)
    assert start == pytest.approx(wrapup_since, abs=0.001)
    assert wrapup - 0.01 <= gap < wrapup + LATE, gap
    assert wrapup - 0.01 <= gap2 < wrapup + LATE, gap2
    calls = await records(pool)
    a, b = calls[first.channel.uniqueid], calls[second.channel.uniqueid]
    assert (a["outcome"], a["agent"], b["outcome"], b["agent"]) == ("answered", "1001", "answered", "1001")
    assert a["queued_at"] < b["queued_at"]
    ready_again = rows[4]["at"]
    # The second caller was reserved at the end of the wrap-up (the same step), answered after it.
    assert rows[5]["call_uniqueid"] == second.channel.uniqueid and rows[5]["at"] >= ready_again
    assert b["answered_at"] > ready_again
    assert (b["answered_at"] - calls[first.channel.uniqueid]["ended_at"]).total_seconds() >= wrapup - 0.01


async def test_wrapup_extended_over_the_api_lasts_longer(redis, pool, redis_url, pg_url, tmp_path):
    wrapup, extra = 0.6, 0.6
    path = queues_file(tmp_path, f"teams:\n  slow:\n    wrapup_s: {wrapup}\n")
    async with hotline(redis, pool, redis_url, pg_url, tmp_path, agents=(), acd_queues_file=path,
                       wrapup=0.05) as (sim, acd):
        await add_agent(sim, acd, "1001", "slow", {"mandarin": 5})
        base = f"http://127.0.0.1:{acd.http_port}"
        async with aiohttp.ClientSession(headers=SERVICE) as http:
            # Not in wrap-up: nothing to extend.
            async with http.post(f"{base}/agents/1001/wrapup/extend", json={"seconds": extra}) as resp:
                assert resp.status == 409, await resp.text()
            first, second = await _two_callers_one_agent(sim)
            await until(lambda: acd.agents.get("1001").state == AgentState.WRAPUP)
            wrapup_since = acd.agents.get("1001").state_since
            await asyncio.sleep(0.1)
            async with http.post(f"{base}/agents/1001/wrapup/extend", json={"seconds": extra}) as resp:
                assert resp.status == 200, await resp.text()
                body = await resp.json()
            assert body["state"] == "wrapup"
            assert body["wrapup_until"] == pytest.approx(wrapup_since + wrapup + extra, abs=0.001)
            # Past the team's wrap-up, inside the extension: still held back.
            await asyncio.sleep(wrapup_since + wrapup + extra / 2 - sim.pbx.now())
            assert acd.agents.get("1001").state == AgentState.WRAPUP
            assert sim.phones["1001"].rings == 1 and second.answered_at is None
            await asyncio.wait_for(asyncio.gather(first.done.wait(), second.done.wait()), 15)
    rows = await states(pool, "1001")
    assert [r["state"] for r in rows] == ["ready", "reserved", "on_call", "wrapup", "ready",
                                          "reserved", "on_call", "wrapup", "ready"]
    (start, gap), (_, gap2) = _wrapup_periods(rows)
    assert start == pytest.approx(wrapup_since, abs=0.001)
    assert wrapup + extra - 0.01 <= gap < wrapup + extra + LATE, gap
    # The extension was for that wrap-up only: the next one is the team's again.
    assert wrapup - 0.01 <= gap2 < wrapup + LATE, gap2
    b = (await records(pool))[second.channel.uniqueid]
    assert (b["outcome"], b["agent"]) == ("answered", "1001")
    assert b["answered_at"] > rows[4]["at"] and rows[5]["call_uniqueid"] == second.channel.uniqueid


# ---- 3. ring-no-answer requeues at the head -------------------------------------------------------

async def test_ring_no_answer_requeues_at_the_head_of_the_queue(redis, pool, redis_url, pg_url, tmp_path):
    async with hotline(redis, pool, redis_url, pg_url, tmp_path, agents=()) as (sim, acd):
        # 1001 is on a break while two callers queue; its phone will let the call ring out.
        await add_agent(sim, acd, "1001", "general", {"mandarin": 5}, ready=False)
        sim.phones["1001"].no_answer_share = 1.0
        callers = [sim.place_call(plan(number="13900000401", talk=0.2, patience=30))]
        await asyncio.sleep(0.3)
        callers.append(sim.place_call(plan(number="13900000402", talk=0.2, patience=30)))
        await until(lambda: all(c.queued_at is not None for c in callers))
        for c in callers:
            await until_async(lambda: _in_waiting(redis, c.channel.uniqueid), timeout=2)
        a, b = sorted(callers, key=lambda c: c.queued_at)          # A queued first, B after it
        ua, ub = a.channel.uniqueid, b.channel.uniqueid
        assert await redis.zscore(Keys.waiting, ua) < await redis.zscore(Keys.waiting, ub)
        # 1001 comes back: it is offered A, the head of the queue; it rings and is not answered.
        await acd.core.agents.free("1001")
        agent = acd.agents.get("1001")
        assert (agent.state, agent.call) == (AgentState.RESERVED, ua)
        await until(lambda: sim.phones["1001"].rings == 1)
        # Ring timeout (15 s, 0.75 s here): 1001 not ready (no_answer), A back in the queue.
        await until(lambda: acd.agents.get("1001").state == AgentState.NOT_READY, timeout=5)
        assert acd.agents.get("1001").reason == "no_answer"
        await until_async(lambda: _in_waiting(redis, ua), timeout=5)
        # A is ahead of B again: it kept its first queue time.
        assert await redis.zscore(Keys.waiting, ua) < await redis.zscore(Keys.waiting, ub)
        assert a.answered_at is None and b.answered_at is None
        # Only now another agent becomes ready: it must get A, not B.
        await add_agent(sim, acd, "1002", "general", {"mandarin": 5}, ready=False)
        await acd.core.agents.free("1002")
        assert acd.agents.get("1002").call == ua
        await asyncio.wait_for(asyncio.gather(a.done.wait(), b.done.wait()), 15)
        assert sim.phones["1001"].rings == 1            # not offered again while not ready
    rows = await records(pool)
    ra, rb = rows[ua], rows[ub]
    assert (ra["outcome"], ra["agent"], ra["ring_attempts"]) == ("answered", "1002", 2)
    assert (rb["outcome"], rb["agent"], rb["ring_attempts"]) == ("answered", "1002", 1)
    assert ra["queued_at"] < rb["queued_at"] and ra["answered_at"] < rb["answered_at"]
    truth = {r["uniqueid"]: r for r in sim.truth.records}
    assert ra["wait_s"] == pytest.approx(truth[ua]["wait_s"], abs=0.1)   # waited from its first queue time
    first_states = [(r["state"], r["reason"], r["call_uniqueid"]) for r in await states(pool, "1001")]
    assert first_states == [
        ("not_ready", "break", None), ("ready", None, None), ("reserved", None, ua), ("not_ready", "no_answer", None)]
    second_states = [(r["state"], r["call_uniqueid"]) for r in await states(pool, "1002")]
    assert [s for s in second_states if s[0] == "reserved"] == [("reserved", ua), ("reserved", ub)]


async def test_ring_no_answer_is_recorded_once(redis, pool, redis_url, pg_url, tmp_path):
    agents = (("1001", {"mandarin": 5, "enterprise": 1}),)
    async with hotline(redis, pool, redis_url, pg_url, tmp_path, agents=agents) as (sim, acd):
        sim.phones["1001"].no_answer_share = 1.0
        caller = sim.place_call(plan(number="13900000501", line="enterprise", patience=5))
        await until(lambda: acd.agents.get("1001").state == AgentState.NOT_READY, timeout=8)
        caller.hang_up()
        await asyncio.wait_for(caller.done.wait(), 5)
    rows = [(r["state"], r["reason"]) for r in await states(pool, "1001")]
    assert rows == [("ready", None), ("reserved", None), ("not_ready", "no_answer")]
