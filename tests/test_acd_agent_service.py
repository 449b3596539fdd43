"""The agent service's rules (acd/agent_service.py), with no Redis server at all: the client points
at a port nobody listens on, so every write fails as it does when Redis is down."""
from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisDown

from acd.agents import Agent, AgentDirectory, AgentError
from acd.service import build_core
from hotline.embedded import free_port
from hotline.model import AgentState

NOW = 1795340000.0


@pytest.fixture
async def core():
    redis = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", decode_responses=True, socket_connect_timeout=0.5)
    directory = AgentDirectory(redis)
    for agent_id, state in (("1001", AgentState.LOGGED_OUT), ("1002", AgentState.READY),
                            ("1003", AgentState.ON_CALL), ("1004", AgentState.WRAPUP)):
        directory.agents[agent_id] = Agent(agent_id, agent_id, "general", {"mandarin": 5}, state, NOW)
    core = build_core(None, redis, directory)
    yield core
    core.writeback.records.clear()
    directory.dirty.clear()
    directory.unsaved_rows.clear()
    await core.close(timeout=0.1)
    await redis.aclose()


async def test_verbs_the_state_machine_refuses_are_refused_before_anything_is_written(core):
    agents = core.agents
    with pytest.raises(AgentError, match="already logged in"):
        await agents.login("1002")
    with pytest.raises(AgentError, match="on_call -> ready is not allowed"):
        await agents.ready("1003")
    with pytest.raises(AgentError, match="on_call -> not_ready is not allowed"):
        await agents.not_ready("1003", "break")
    with pytest.raises(AgentError, match="reason must be one of"):
        await agents.not_ready("1002", "nap")
    with pytest.raises(AgentError, match="reason must be one of"):
        await agents.login("1001", reason="nap")
    with pytest.raises(AgentError, match="unknown agent"):
        await agents.logout("9999")
    assert not core.directory.dirty and not core.directory.unsaved_rows
    assert {a.id: a.state for a in core.directory.agents.values()} == {
        "1001": AgentState.LOGGED_OUT, "1002": AgentState.READY, "1003": AgentState.ON_CALL,
        "1004": AgentState.WRAPUP}


@pytest.mark.parametrize("verb, agent_id, expected", [
    (lambda s: s.login("1001"), "1001", AgentState.READY),
    (lambda s: s.login("1001", reason="training"), "1001", AgentState.NOT_READY),
    (lambda s: s.not_ready("1002", "meal"), "1002", AgentState.NOT_READY),
    (lambda s: s.logout("1002"), "1002", AgentState.LOGGED_OUT),
    (lambda s: s.ready("1004"), "1004", AgentState.READY),          # wrap-up ended early
], ids=["login", "login-not-ready", "not-ready", "logout", "ready"])
async def test_with_redis_down_a_verb_is_kept_in_memory_and_written_back_later(core, verb, agent_id, expected):
    change = await verb(core.agents)
    assert change.stored is False and change.agent.state == expected
    assert core.directory.get(agent_id).state == expected
    assert agent_id in core.directory.dirty and len(core.directory.unsaved_rows) == 1
    assert core.writeback.pending and core.writeback.writing


async def test_with_redis_down_the_acds_own_steps_behave_like_the_verbs(core):
    assert await core.agents.change("1002", AgentState.RESERVED, call="1795340000.1") is False
    assert await core.agents.change("1002", AgentState.ON_CALL, call="1795340000.1") is False
    assert core.directory.get("1002").state == AgentState.ON_CALL and core.directory.get("1002").call == "1795340000.1"
    # A change the state machine refuses is logged, not raised, and changes nothing.
    assert await core.agents.change("1001", AgentState.ON_CALL) is True
    assert core.directory.get("1001").state == AgentState.LOGGED_OUT
    assert core.directory.dirty == {"1002"} and len(core.directory.unsaved_rows) == 2
    assert core.writeback.writing


async def test_with_redis_down_a_profile_change_changes_nothing(core):
    with pytest.raises(RedisDown):
        await core.agents.save("1002", "Wang", "enterprise", {"enterprise": 3})
    agent = core.directory.get("1002")
    assert (agent.name, agent.team, agent.skills) == ("1002", "general", {"mandarin": 5})
    with pytest.raises(RedisDown):
        await core.agents.save("2001", "New", "general", {"mandarin": 1})
    assert "2001" not in core.directory.agents
