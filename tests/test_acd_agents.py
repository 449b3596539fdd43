"""The agent state machine on a real Redis, under random, lost and duplicated events."""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acd.agents import TRANSITIONS, AgentDirectory, AgentError, busy_day
from hotline.keys import Keys
from hotline.model import AgentState

S = AgentState


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


events = st.lists(st.tuples(st.sampled_from(list(AgentState)), st.sampled_from(["", "break", "meal", "no_answer"]),
                            st.booleans(), st.floats(0.1, 100)), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=events)
async def test_only_valid_transitions_and_redis_agrees(redis, steps):
    """Events in any order, some repeated (a duplicated AMI event): a refused one changes
    nothing; an accepted one is stored in Redis, indexed, and written once to the history."""
    await redis.flushdb()
    clock = Clock()
    agents = AgentDirectory(redis, clock=clock)
    await agents.upsert("1001", "Agent 1001", "general", {"mandarin": 5, "elderly": 3})
    accepted = 0
    busy = 0.0
    for new, reason, duplicate, gap in steps:
        for _ in range(2 if duplicate else 1):
            clock.now += gap
            before = agents.get("1001").state
            before_since = agents.get("1001").state_since
            try:
                await agents.transition("1001", new, reason=reason)
            except AgentError:
                assert new not in TRANSITIONS[before] and new != before
                assert agents.get("1001").state == before
                continue
            assert new in TRANSITIONS[before] or new == before
            if before in (S.ON_CALL, S.WRAPUP):
                busy += clock.now - before_since
            accepted += 1
        agent = agents.get("1001")
        stored = await redis.hgetall(Keys.agent("1001"))
        assert stored["state"] == agent.state.value and float(stored["state_since"]) == agent.state_since
        ready = agent.state == S.READY
        assert (await redis.zscore(Keys.ready, "1001") is not None) == ready
        assert (await redis.zscore(Keys.ready_skill("mandarin"), "1001")) == (5 if ready else None)
        assert (await redis.zscore(Keys.ready_skill("elderly"), "1001")) == (3 if ready else None)
    history = [json.loads(r) for r in await redis.lrange(Keys.outbox, 0, -1)]
    assert len([r for r in history if r["kind"] == "agent_state"]) == accepted
    recorded = float(await redis.hget(Keys.busy(busy_day(clock.now)), "1001") or 0) if busy else 0.0
    assert abs(recorded - busy) < 1e-6 or busy_day(clock.now) != busy_day(1_700_000_000.0)
    # A restart reads the same agent back.
    again = AgentDirectory(redis, clock=clock)
    await again.load()
    assert again.get("1001").state == agents.get("1001").state


async def test_ready_step_rows_are_the_json_of_any_other_row(redis):
    """The ready step writes its history row and event by hand (every decision's path): the
    same JSON as the other rows and events, the time exact."""
    import json

    from acd.agents import outbox_row

    agents = AgentDirectory(redis, node="acd-a")
    await agents.upsert("1001", "Agent 1001", "general", {"mandarin": 5})
    now = 1795331939.123456789
    _, row, event, _ = agents.ready_step("1001", now)
    parsed = json.loads(row)
    assert parsed == json.loads(outbox_row("agent_state", event_id=parsed["event_id"], agent_id="1001", state="ready",
                                           reason=None, call_uniqueid=None, at=now))
    assert json.loads(event) == {"type": "agent", "agent": "1001", "state": "ready", "reason": "", "call": "",
                                 "at": now, "node": "acd-a"}
