"""kill -9 of a real ACD process while callers talk, ring and wait; a new ACD process takes over
from Redis and Asterisk (CoreShowChannels): every call ends with exactly one correct record."""
from __future__ import annotations

import asyncio
import os
import signal
import sys
from contextlib import asynccontextmanager
from typing import Optional

from acd.agents import AgentDirectory
from hotline.embedded import free_port
from hotline.keys import Keys
from hotline.model import AgentState
from hotline.settings import Settings
from ivr.service import run_ivr
from hotline.paths import ASTERISK_CONFIG, SOUNDS
from pbxsim.scenario import Scenario
from pbxsim.simulator import Simulator, SimulatorConfig, read_manager_conf

from .test_call_end_to_end import SERVICE_TOKEN, SPEED, plan


async def until(predicate, timeout=10.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def records_settled(pool, count: int, timeout: float = 15.0) -> None:
    """Wait until ``count`` call records are in PostgreSQL, then a little longer: a duplicate
    would arrive by then."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while await pool.fetchval("SELECT count(*) FROM calls") < count and loop.time() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)


async def start_acd(env: dict[str, str], log_path) -> asyncio.subprocess.Process:
    log = open(log_path, "ab")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "launcher.cli", "acd", env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=log)
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert line.startswith(b"ACD: connected"), line
    return proc


class AcdProcess:
    """The ACD as a real process, so that it can be killed -9 and started again."""

    def __init__(self, env: dict[str, str], log_path) -> None:
        self.env, self.log_path = env, log_path
        self.proc: Optional[asyncio.subprocess.Process] = None

    async def start(self) -> None:
        self.proc = await start_acd(self.env, self.log_path)

    async def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)             # no cleanup of any kind
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.proc.wait(), 15)

    @property
    def log(self) -> str:
        return self.log_path.read_text()


@asynccontextmanager
async def killable(redis, redis_url, pg_url, tmp_path, agents=("1001",), queues: str = "", **dialplan):
    """The simulated PBX running our dialplan, the IVR, agents (logged out) with phones, and the
    ACD as a process (not started yet: a test sets up its floor first). ``dialplan``: globals."""
    user = read_manager_conf(ASTERISK_CONFIG / "manager.conf")[2][0]
    sim = Simulator(SimulatorConfig(config_dir=ASTERISK_CONFIG, sounds_dirs=[SOUNDS], ami_port=0, speed=SPEED,
                                    auth_fail_delay=0.01), Scenario(agents=0, answer_delay_s=(0.02, 0.05)))
    await sim.start()
    sim.pbx.globals.update(dialplan)
    ivr = await run_ivr(Settings(agi_port=0), redis)
    sim.pbx.globals["HOTLINE_AGI"] = f"agi://127.0.0.1:{ivr.port}"
    directory = AgentDirectory(redis)
    for agent_id in agents:
        sim.register_phone(agent_id)
        await directory.upsert(agent_id, f"Agent {agent_id}", "general", {"mandarin": 5})
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env.update(HOTLINE_DATABASE_URL=pg_url, HOTLINE_REDIS_URL=redis_url, HOTLINE_AMI_PORT=str(sim.ami_port),
               HOTLINE_AMI_USERNAME=user.username, HOTLINE_AMI_SECRET=user.secret,
               HOTLINE_ACD_PORT=str(free_port()), HOTLINE_WRAPUP_S="0.05", HOTLINE_LOG_LEVEL="INFO",
               HOTLINE_SERVICE_TOKEN=SERVICE_TOKEN)
    if queues:
        rules = tmp_path / "queues.yaml"
        rules.write_text(queues, encoding="utf-8")
        env["HOTLINE_ACD_QUEUES_FILE"] = str(rules)
    acd = AcdProcess(env, tmp_path / "acd.log")
    try:
        yield sim, directory, acd
    finally:
        await acd.stop()
        await ivr.stop()
        await sim.stop()


async def test_kill_9_and_restart_loses_and_duplicates_nothing(redis, pool, redis_url, pg_url, tmp_path):
    # HOTLINE_RING_TIMEOUT 100: 5 s at this speed, rings through the crash
    async with killable(redis, redis_url, pg_url, tmp_path, agents=("1001", "1002"),
                        HOTLINE_RING_TIMEOUT="100") as (sim, directory, acd):
        for agent_id in ("1001", "1002"):
            await directory.transition(agent_id, AgentState.READY)
        sim.phones["1002"].answer_delay_s = (1.0, 1.0)
        await acd.start()
        talking = sim.place_call(plan(number="13800000001", talk=3.5))
        await until(lambda: talking.answered_at is not None)
        ringing = sim.place_call(plan(number="13800000002", talk=3.0))
        await until(lambda: sim.phones["1002"].rings == 1)
        waiting = [sim.place_call(plan(number=f"1380000001{i}", talk=0.2, patience=30)) for i in range(2)]
        leaving = sim.place_call(plan(number="13800000020", patience=0.4))
        await until(lambda: all(c.queued_at is not None for c in (*waiting, leaving)))
        for caller in (*waiting, leaving):              # ... and queued by the ACD in Redis
            for _ in range(250):
                if await redis.zscore(Keys.waiting, caller.channel.uniqueid) is not None:
                    break
                await asyncio.sleep(0.02)
        await acd.kill()
        # While no ACD runs: the ringing call is answered, one waiting caller gives up, and the
        # first call ends.
        await until(lambda: talking.ended_at is not None and leaving.ended_at is not None
                    and ringing.answered_at is not None, timeout=8)
        assert all(c.answered_at is None for c in waiting)
        await acd.start()
        callers = [talking, ringing, *waiting, leaving]
        await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in callers)), 20)
        await records_settled(pool, len(callers))
    rows = {r["uniqueid"]: dict(r) for r in await pool.fetch("SELECT * FROM calls")}
    truth = {r["uniqueid"]: r for r in sim.truth.records}
    assert set(rows) == set(truth) and len(rows) == 5
    for uid, row in rows.items():
        assert (row["outcome"], row["abandoned_in"]) == (truth[uid]["outcome"], truth[uid]["abandoned_in"]), uid
        assert row["agent"] == truth[uid]["agent"], uid
    assert rows[leaving.channel.uniqueid]["outcome"] == "abandoned"
    assert rows[ringing.channel.uniqueid]["agent"] == "1002"
    # The order of the waiting callers was kept: the first in line was served first.
    first, second = (rows[c.channel.uniqueid] for c in waiting)
    assert first["answered_at"] <= second["answered_at"]
    states = {r["agent_id"]: r["state"] for r in await pool.fetch(
        "SELECT DISTINCT ON (agent_id) agent_id, state FROM agent_states ORDER BY agent_id, at DESC, id DESC")}
    assert states == {"1001": "ready", "1002": "ready"}


async def test_an_adopted_call_answered_meanwhile_puts_its_agent_on_call(redis):
    """A node dies while its caller is being connected; the survivor witnessed the answer (so it
    adopts the call as answered) and finds it bridged: the reserved agent is on call now, so its
    hang-up starts its wrap-up. (It stayed reserved until the 30 s reconcile: a stuck agent.)"""
    from acd.service import build_core
    from hotline.live import LiveCall

    directory = AgentDirectory(redis)
    await directory.upsert("1001", "Agent 1001", "general", {"mandarin": 5})
    await directory.transition("1001", AgentState.READY)
    await directory.transition("1001", AgentState.RESERVED, call="1795340000.7")
    core = build_core(None, redis, directory)
    now = 1795340010.0
    call = LiveCall("1795340000.7", "PJSIP/trunk-00000007", "1795340000.7", "main", "13900000001", now - 10,
                    queued_at=now - 8, queue="general", state="talking", agent="1001", answered_at=now - 1)
    await core.recovery.adopt(call, {"BridgeId": "b-1", "Context": "hotline-connect"}, now)
    await core.wait_idle()
    assert directory.get("1001").state == AgentState.ON_CALL
    assert (await redis.hgetall(Keys.agent("1001")))["state"] == "on_call"
    assert call.answered_at == now - 1                  # when it was answered, as witnessed
    await core.close()


async def test_agent_state_no_channel_explains_is_repaired(redis, pool, redis_url, pg_url, tmp_path):
    from .test_call_end_to_end import hotline

    agents = (("1001", {"mandarin": 5}), ("1002", {"mandarin": 5}))
    async with hotline(redis, pool, redis_url, pg_url, tmp_path, agents=agents) as (sim, acd):
        await acd.core.wait_idle()                # the start-up recovery is over
        # As if the events of a call were lost: 1001 reserved, 1002 on a call that never existed.
        await acd.agents.transition("1001", AgentState.RESERVED, call="1700000000.1")
        await acd.agents.transition("1002", AgentState.RESERVED, call="1700000000.2")
        await acd.agents.transition("1002", AgentState.ON_CALL, call="1700000000.2")
        assert await acd.core.recovery.reconcile_agents() == 2
        await until(lambda: {a.state for a in acd.agents.agents.values()} == {AgentState.READY})
        assert await acd.core.recovery.reconcile_agents() == 0


async def test_virtual_hold_survives_a_kill_9(redis, pool, redis_url, pg_url, tmp_path):
    """A caller who hung up to be called back keeps the place across kill -9 of the ACD: the new
    process calls them back when the agent is free; one record, answered."""
    from dataclasses import replace

    async with killable(redis, redis_url, pg_url, tmp_path, HOTLINE_ANNOUNCE_EVERY="10",
                        queues="queues:\n  general:\n    max_wait_s: 0.2\n    offer: [callback, message]\n") \
            as (sim, directory, acd):
        await directory.transition("1001", AgentState.READY)
        await acd.start()
        busy = sim.place_call(plan(number="13800000001", talk=6.0))
        await until(lambda: busy.answered_at is not None)
        keeper = sim.place_call(replace(plan(number="13800000002", patience=30, talk=0.3), queue_choice="callback"))
        await until(lambda: keeper.waiting_for_callback and not keeper.channel.alive, timeout=5)
        uid = keeper.channel.uniqueid
        for _ in range(100):                         # the ACD has it on record as owed a call back
            if await redis.hget(Keys.call(uid), "callback"):
                break
            await asyncio.sleep(0.02)
        await acd.kill()
        await acd.start()
        await asyncio.wait_for(asyncio.gather(busy.done.wait(), keeper.done.wait()), 20)
        await records_settled(pool, 2)
    assert keeper.was_called_back
    rows = {r["uniqueid"]: dict(r) for r in await pool.fetch("SELECT * FROM calls")}
    assert len(rows) == 2
    kept = rows[uid]
    assert (kept["outcome"], kept["agent"]) == ("answered", "1001")
    assert "still owed a call back" in acd.log


async def test_a_returning_caller_found_again_by_recovery_waits_in_one_queue_only(redis, pool, redis_url, pg_url,
                                                                                    tmp_path):
    """A returning caller waiting in its own bucket for the agent who answered it last, when the
    ACD is killed: the new process puts it back in its usual queue and takes it out of the old
    bucket (else the agent's offer and another agent's could both take it). One record, answered."""
    from acd.router import RETURNING_QUEUE, bucket_id, preference_skill

    own = Keys.bucket(bucket_id(RETURNING_QUEUE, {preference_skill("1001"): 1}))
    async with killable(redis, redis_url, pg_url, tmp_path, agents=("1001", "1002"),
                        queues="returning:\n  enabled: true\n  wait_s: 60\n") as (sim, directory, acd):
        await directory.transition("1001", AgentState.READY)
        await directory.transition("1002", AgentState.NOT_READY, reason="break")
        await redis.set(Keys.last_agent("13900000001"), "1001")        # 1001 answered this caller before
        await acd.start()
        busy = sim.place_call(plan(number="13800000001", talk=6.0))          # keeps 1001 on a call
        await until(lambda: busy.answered_at is not None)
        again = sim.place_call(plan(number="13900000001", talk=0.2, patience=30))
        await until(lambda: again.queued_at is not None)
        uid = again.channel.uniqueid
        for _ in range(250):                         # waiting for 1001 in its own bucket
            if await redis.zscore(own, uid) is not None:
                break
            await asyncio.sleep(0.02)
        assert await redis.zscore(own, uid) is not None
        await acd.kill()
        await acd.start()
        usual = bucket_id("general", {"mandarin": 1})
        for _ in range(250):                         # recovery queues it again, in its usual bucket
            if await redis.zscore(Keys.bucket(usual), uid) is not None:
                break
            await asyncio.sleep(0.02)
        assert await redis.zscore(Keys.bucket(usual), uid) is not None
        assert await redis.zscore(own, uid) is None, "still in the returning caller's own bucket too"
        await asyncio.wait_for(asyncio.gather(busy.done.wait(), again.done.wait()), 20)
        await records_settled(pool, 2)
    rows = {r["uniqueid"]: dict(r) for r in await pool.fetch("SELECT * FROM calls")}
    assert len(rows) == 2
    assert (rows[uid]["outcome"], rows[uid]["agent"]) == ("answered", "1001")
    offered = await pool.fetch("SELECT agent_id FROM agent_states WHERE state = 'reserved' AND call_uniqueid = $1", uid)
    assert [r["agent_id"] for r in offered] == ["1001"]


async def test_a_call_back_ringing_at_a_kill_9_is_followed_not_placed_again(redis, pool, redis_url, pg_url,
                                                                             tmp_path):
    """kill -9 while the call back rings the caller: the new process finds that leg in Asterisk by the
    uniqueid given to it (Originate ChannelId, saved first) and follows it; it does not call the
    caller a second time nor free the agent reserved for it. One record, answered by that agent."""
    from dataclasses import replace

    # The call back rings up to 200 s: 10 s here (the simulator runs 20x), through the restart.
    queues = ("queues:\n  general:\n    max_wait_s: 0.2\n    offer: [callback, message]\n"
              "    callback_ring_s: 200\n")
    async with killable(redis, redis_url, pg_url, tmp_path, queues=queues, HOTLINE_ANNOUNCE_EVERY="10") \
            as (sim, directory, acd):
        await directory.transition("1001", AgentState.READY)
        await acd.start()
        busy = sim.place_call(plan(number="13800000001", talk=4.0))       # keeps 1001 busy meanwhile
        await until(lambda: busy.answered_at is not None, timeout=10)
        keeper = sim.place_call(replace(plan(number="13800000002", patience=60, talk=0.3), queue_choice="callback",
                                        callback_answer_s=3.0))      # answers the call back after 3 s of ringing
        await until(lambda: keeper.was_called_back, timeout=20)    # 1001 free: the call back rings
        uid = keeper.first_uniqueid
        await acd.kill()
        await acd.start()
        await asyncio.wait_for(asyncio.gather(busy.done.wait(), keeper.done.wait()), 30)
        await records_settled(pool, 2)
    rows = {r["uniqueid"]: dict(r) for r in await pool.fetch("SELECT * FROM calls")}
    assert len(rows) == 2
    assert (rows[uid]["outcome"], rows[uid]["agent"]) == ("answered", "1001")
    assert "still owed a call back" not in acd.log
    reserved = await pool.fetch("SELECT agent_id FROM agent_states WHERE state = 'reserved' AND call_uniqueid = $1",
                                uid)
    assert [r["agent_id"] for r in reserved] == ["1001"]            # one reservation, one call back
