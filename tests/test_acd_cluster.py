"""Two ACD processes at once on one simulated PBX: each call followed by one of them, decisions by
either (handed to the follower), never one agent for two calls or two agents for one call; and
when one of them is killed (-9) the other adopts its calls without a restart."""
from __future__ import annotations

import asyncio
import os
import signal
from collections import defaultdict
from contextlib import asynccontextmanager

import pytest

from acd.agents import TRANSITIONS
from acd.service import run_acd
from hotline.embedded import free_port
from hotline.keys import Keys
from hotline.model import AgentState
from hotline.settings import Settings
from hotline.stores import Stores
from ivr.service import run_ivr
from hotline.paths import ASTERISK_CONFIG, SOUNDS
from pbxsim.scenario import Scenario
from pbxsim.simulator import Simulator, SimulatorConfig, read_manager_conf

from .test_acd_recovery import records_settled, start_acd, until
from .test_call_end_to_end import SERVICE_TOKEN, SPEED, plan, records

AGENTS = ("1001", "1002", "1003", "1004")


async def simulator(tmp_path, redis, answer_delay=(0.02, 0.08)):
    user = read_manager_conf(ASTERISK_CONFIG / "manager.conf")[2][0]
    sim = Simulator(SimulatorConfig(config_dir=ASTERISK_CONFIG, sounds_dirs=[SOUNDS], ami_port=0, speed=SPEED,
                                    agi_url=None, auth_fail_delay=0.01, truth_log=tmp_path / "truth.jsonl"),
                    Scenario(agents=0, answer_delay_s=answer_delay, seed=7))
    await sim.start()
    ivr = await run_ivr(Settings(agi_port=0), redis)
    sim.pbx.globals["HOTLINE_AGI"] = f"agi://127.0.0.1:{ivr.port}"
    for agent_id in AGENTS:
        sim.register_phone(agent_id)
    return sim, ivr, user


@asynccontextmanager
async def two_nodes(redis, pool, redis_url, pg_url, tmp_path, agents, wrapup_s):
    """The simulated PBX, the IVR and two ACD nodes in this process ("acd-a", "acd-b"), the agents
    ready (made so through a; b knows them from a's published changes)."""
    sim, ivr, user = await simulator(tmp_path, redis)
    stores = Stores(pg_url, redis_url, pool, redis, embedded=False)
    common = dict(database_url=pg_url, redis_url=redis_url, ami_port=sim.ami_port, ami_username=user.username,
                  ami_secret=user.secret, agi_port=0, acd_port=0, wrapup_s=wrapup_s, ami_ping_interval_s=5)
    try:
        async with run_acd(Settings(acd_node="acd-a", **common), stores) as a, \
                run_acd(Settings(acd_node="acd-b", **common), stores) as b:
            await until(lambda: a.cluster.live == b.cluster.live == ("acd-a", "acd-b"), timeout=5)
            for agent_id in agents:
                await a.agents.upsert(agent_id, f"Agent {agent_id}", "general", {"mandarin": 5})
                await a.agents.transition(agent_id, AgentState.READY)
            await until(lambda: all(b.agents.agents.get(x) and b.agents.agents[x].state == AgentState.READY
                                    for x in agents))
            yield sim, a, b
    finally:
        await ivr.stop()
        await sim.stop()


async def assert_history_is_sound(pool) -> None:
    """Every agent's recorded states follow the state machine: in particular never reserved
    again while reserved (two calls for one agent)."""
    history = defaultdict(list)
    for row in await pool.fetch("SELECT agent_id, state, call_uniqueid FROM agent_states ORDER BY at, id"):
        history[row["agent_id"]].append((AgentState(row["state"]), row["call_uniqueid"]))
    for agent_id, states in history.items():
        for (before, _), (after, call) in zip(states, states[1:]):
            assert after in TRANSITIONS[before] or (after == before and after != AgentState.RESERVED), \
                (agent_id, before, after, call)


async def test_two_acd_nodes_share_calls_without_double_assignment(redis, pool, redis_url, pg_url, tmp_path):
    async with two_nodes(redis, pool, redis_url, pg_url, tmp_path, AGENTS, wrapup_s=0.05) as (sim, a, b):
        callers = []
        for i in range(28):
            callers.append(sim.place_call(plan(number=f"1380000{i:04d}", talk=0.15 + (i % 4) * 0.05)))
            await asyncio.sleep(0.03)
        await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in callers)), 40)
        for _ in range(200):
            if await pool.fetchval("SELECT count(*) FROM calls") >= len(callers):
                break
            await asyncio.sleep(0.05)
        await a.core.wait_idle()
        await b.core.wait_idle()
        # Both followed calls; decisions crossed between them (a freed agent took the other's caller).
        assert a.core.book.followed > 0 and b.core.book.followed > 0
        assert a.core.book.followed + b.core.book.followed == len(callers)
        assert a.core.assignment.handed_out + b.core.assignment.handed_out > 0
        assert a.core.peers.handed_in + b.core.peers.handed_in == \
            a.core.assignment.handed_out + b.core.assignment.handed_out
        await until(lambda: all(a.agents.agents[x].state == b.agents.agents[x].state == AgentState.READY
                                for x in AGENTS))
    # No phone was ever offered a second call while on one.
    assert sum(phone.busy_rejections for phone in sim.phones.values()) == 0
    rows = await records(pool)
    truth = {r["uniqueid"]: r for r in sim.truth.records}
    assert set(rows) == set(truth) and len(rows) == len(callers)
    for uid, row in rows.items():
        assert (row["outcome"], row["agent"]) == (truth[uid]["outcome"], truth[uid]["agent"]) == ("answered", row["agent"])
    # Each answered call once, each by one agent; every agent's history a valid sequence.
    reserved = await pool.fetch("SELECT call_uniqueid, count(*) AS n FROM agent_states WHERE state = 'reserved' "
                                "GROUP BY call_uniqueid")
    assert all(r["n"] == 1 for r in reserved) and len(reserved) == len(callers)
    await assert_history_is_sound(pool)
    assert await redis.zcard(Keys.waiting) == 0 and await redis.scard(Keys.calls) == 0


async def test_a_killed_node_s_calls_are_adopted_by_the_other(redis, pool, redis_url, pg_url, tmp_path):
    """kill -9 of one of two ACD processes while callers ring and wait: the survivor notices the
    lease run out, adopts them, connects them and records every call once."""
    sim, ivr, user = await simulator(tmp_path, redis, answer_delay=(0.05, 0.1))
    sim.pbx.globals["HOTLINE_RING_TIMEOUT"] = "100"      # 5 s at this speed: rings through the crash
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env.update(HOTLINE_DATABASE_URL=pg_url, HOTLINE_REDIS_URL=redis_url, HOTLINE_AMI_PORT=str(sim.ami_port),
               HOTLINE_AMI_USERNAME=user.username, HOTLINE_AMI_SECRET=user.secret, HOTLINE_WRAPUP_S="0.05",
               HOTLINE_LOG_LEVEL="INFO", HOTLINE_ACD_LEASE_S="1", HOTLINE_SERVICE_TOKEN=SERVICE_TOKEN)
    from acd.agents import AgentDirectory
    directory = AgentDirectory(redis)
    for agent_id in AGENTS[:2]:
        await directory.upsert(agent_id, f"Agent {agent_id}", "general", {"mandarin": 5})
        await directory.transition(agent_id, AgentState.READY)
    sim.phones["1002"].answer_delay_s = (1.0, 1.0)     # rings across the kill
    procs = {}
    try:
        for name in ("acd-a", "acd-b"):
            procs[name] = await start_acd({**env, "HOTLINE_ACD_NODE": name, "HOTLINE_ACD_PORT": str(free_port())},
                                          tmp_path / f"{name}.log")
        # Both nodes see both (until then, a node alone in its view follows every new call).
        both = "ACD nodes now ['acd-a', 'acd-b']"
        await until(lambda: all(both in (tmp_path / f"{name}.log").read_text() for name in procs), timeout=10)
        callers = [sim.place_call(plan(number=f"1390000{i:04d}", talk=0.3, patience=30)) for i in range(8)]
        await until(lambda: sum(c.queued_at is not None for c in callers) >= 6 and sim.phones["1002"].rings >= 1)
        # Both follow calls in progress (the hash of a Linkedid decides; more callers if it fell one
        # way). Owners are gathered as they are seen: an ended call's hash is gone.
        owners = set()
        while True:
            owners |= {await redis.hget(Keys.call(c.channel.uniqueid), "owner") for c in callers}
            if {"acd-a", "acd-b"} <= owners or len(callers) >= 16:
                break
            callers.append(sim.place_call(plan(number=f"1390000{len(callers):04d}", talk=0.3, patience=30)))
            await until(lambda: callers[-1].queued_at is not None)
        assert {"acd-a", "acd-b"} <= owners, owners
        procs["acd-a"].send_signal(signal.SIGKILL)
        await procs["acd-a"].wait()
        await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in callers)), 40)
        await records_settled(pool, len(callers), timeout=20)
    finally:
        for proc in procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 15)
        await ivr.stop()
        await sim.stop()
    assert sum(phone.busy_rejections for phone in sim.phones.values()) == 0
    rows = await records(pool)
    truth = {r["uniqueid"]: r for r in sim.truth.records}
    assert set(rows) == set(truth) and len(rows) == len(callers)
    for uid, row in rows.items():
        assert (row["outcome"], row["agent"]) == (truth[uid]["outcome"], truth[uid]["agent"]), uid
        assert row["outcome"] == "answered", uid
    log = (tmp_path / "acd-b.log").read_text()
    assert "adopted from node acd-a" in log
    await assert_history_is_sound(pool)
    states = {r["agent_id"]: r["state"] for r in await pool.fetch(
        "SELECT DISTINCT ON (agent_id) agent_id, state FROM agent_states ORDER BY agent_id, at DESC, id DESC")}
    assert states == {"1001": "ready", "1002": "ready"}


async def test_wrap_up_extended_through_the_other_node(redis, pool, redis_url, pg_url, tmp_path):
    """The desktop may reach any node's API: a wrap-up timed by one node is extended through the other."""
    async with two_nodes(redis, pool, redis_url, pg_url, tmp_path, ("1001",), wrapup_s=1.0) as (sim, a, b):
        caller = sim.place_call(plan(number="13800000001", talk=0.2))
        await asyncio.wait_for(caller.done.wait(), 15)
        await until(lambda: a.agents.agents["1001"].state == b.agents.agents["1001"].state == AgentState.WRAPUP)
        timing, other = (a, b) if "1001" in a.core.agents.wrapups.until else (b, a)
        assert "1001" not in other.core.agents.wrapups.until
        started = timing.core.agents.wrapups.until["1001"] - 1.0
        until_ = await other.core.agents.extend_wrapup("1001", 1.0)
        assert abs(until_ - (started + 2.0)) < 0.01
        await until(lambda: timing.core.agents.wrapups.until.get("1001") == until_, timeout=2)
        await until(lambda: a.agents.agents["1001"].state == AgentState.READY, timeout=5)
    rows = await pool.fetch("SELECT state, extract(epoch from at) AS at FROM agent_states WHERE agent_id = '1001' "
                            "ORDER BY at, id")
    states = [(r["state"], float(r["at"])) for r in rows]
    wrapup = next(at for state, at in states if state == "wrapup")
    ready_again = next(at for state, at in states if state == "ready" and at > wrapup)
    assert ready_again - wrapup >= 1.95


async def test_membership_ownership_and_a_lapsed_lease(redis):
    """Each Linkedid is followed by exactly one live node (the same answer on every node); a node
    silent past its lease is reported lost once; a node whose own lease lapsed is told so."""
    from acd.cluster import Cluster

    now = [1000.0]
    clock = lambda: now[0]          # noqa: E731
    nodes = {name: Cluster(redis, name, lease_s=3.0, clock=clock) for name in ("a", "b", "c")}
    for cluster in nodes.values():
        await cluster.beat()
    for cluster in nodes.values():
        await cluster.beat()            # everyone sees everyone
        assert cluster.live == ("a", "b", "c")
    keys = [f"17953{i:05d}.{i}" for i in range(300)]
    owners = [[name for name, c in nodes.items() if c.owns(key)] for key in keys]
    assert all(len(o) == 1 for o in owners)
    share = {name: sum(o == [name] for o in owners) for name in nodes}
    assert all(60 <= n <= 140 for n in share.values()), share
    # c goes silent; a and b go on: c is lost (reported by one of them), and only c's calls move.
    lost, lapsed = [], []
    for name in ("a", "b"):
        nodes[name].on_peer_lost = lost.extend
    nodes["c"].on_lease_lost = lambda: lapsed.append(True)
    for _ in range(4):
        now[0] += 1.0
        for name in ("a", "b"):
            lost += await nodes[name].beat()
    assert lost == ["c"] and nodes["a"].live == nodes["b"].live == ("a", "b")
    moved = [k for k, o in zip(keys, owners) if o != [n for n in ("a", "b") if nodes[n].owns(k)]]
    assert moved and all(o == ["c"] for k, o in zip(keys, owners) if k in moved)
    # c comes back: its lease had lapsed, it is told (its calls may be adopted by now).
    await nodes["c"].beat()
    assert lapsed == [True]


def test_node_names_are_stable_across_restarts_and_distinct_on_a_host():
    from acd.service import node_name

    assert node_name(Settings(acd_node="acd-east-1")) == "acd-east-1"
    assert node_name(Settings(acd_port=8081)) == node_name(Settings(acd_port=8081))      # a restart: same name
    assert node_name(Settings(acd_port=8081)) != node_name(Settings(acd_port=8082))      # two on one host
    assert node_name(Settings(acd_port=0)) != node_name(Settings(acd_port=0))            # tests: any port


def test_peer_messages_that_are_not_ours_are_ignored():
    """What arrives on the nodes' channels is untrusted: anything unreadable is dropped, and a
    node's own published changes are not applied twice."""
    from acd.cluster import PeerListener, node_channel

    agents, handed = [], []
    listener = PeerListener(None, "acd-a", on_agent=agents.append, on_handoff=handed.append, on_gap=lambda: None)
    for raw in ("not json", "[1, 2]", '"text"', "{"):
        listener.dispatch(node_channel("acd-a"), raw)
        listener.dispatch(Keys.events, raw)
    listener.dispatch(Keys.events, '{"type": "agent", "agent": "1001", "state": "ready", "at": 1, "node": "acd-a"}')
    listener.dispatch(Keys.events, '{"type": "call_ended", "uniqueid": "1", "node": "acd-b"}')
    assert agents == [] and handed == []
    listener.dispatch(Keys.events, '{"type": "agent", "agent": "1001", "state": "ready", "at": 1, "node": "acd-b"}')
    listener.dispatch(node_channel("acd-a"), '{"call": "1", "agent": "1001", "at": "x"}')
    assert [e["node"] for e in agents] == ["acd-b"] and len(handed) == 1


@pytest.mark.parametrize("lean", [True, False])
async def test_peer_messages_arrive_and_the_subscription_survives_its_connection(redis, lean):
    """Agent changes of the other nodes reach the listener (on the lean connection, or through
    redis-py); a handler that fails does not end the subscription; a killed connection is
    subscribed again, and the gap reported (the node then re-reads its agents)."""
    import json

    from acd.cluster import PeerListener

    seen, gaps = [], []

    def on_agent(event):
        if event["agent"] == "bad":
            raise RuntimeError("handler failed")
        seen.append(event["agent"])

    def change(agent):
        return json.dumps({"type": "agent", "agent": agent, "state": "ready", "at": 1, "node": "acd-b"})

    listener = PeerListener(redis, "acd-a", on_agent=on_agent, on_handoff=lambda e: None,
                            on_gap=lambda: gaps.append(1), lean=lean)
    await listener.start()
    try:
        assert listener.subscriber.lean is lean
        await redis.publish(Keys.events, change("bad"))
        await redis.publish(Keys.events, change("1001"))
        await until(lambda: seen == ["1001"])
        await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        await until(lambda: gaps == [1])
        await until(lambda: listener.subscribed)
        for _ in range(100):                 # subscribed again: a change published now arrives
            await redis.publish(Keys.events, change("1002"))
            await asyncio.sleep(0.02)
            if "1002" in seen:
                break
        assert seen[:2] == ["1001", "1002"]
    finally:
        await listener.stop()
