"""``hotline demo``: the whole hotline on one machine with synthetic 12345 traffic.

Embedded PostgreSQL and Redis, the simulated PBX running ``asterisk-config/``, and the
real services talking to it over AMI and FastAGI. At the end the summary is computed
from the PostgreSQL records, and the simulator's ground truth is printed beside it.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from hotline.auth import Role, UserStore, generate_password
from hotline.model import AgentState
from hotline.settings import Settings
from hotline.stats import call_summary
from hotline.stores import open_stores
from pbxsim.scenario import Scenario
from pbxsim.simulator import Simulator, SimulatorConfig, read_manager_conf

from hotline.paths import ASTERISK_CONFIG, SOUNDS
from .services import start_services, wait_for_signal

__all__ = ["DemoOptions", "run_demo", "demo_agents"]

log = logging.getLogger(__name__)


@dataclass
class DemoOptions:
    duration: Optional[float] = None
    rate: float = 120.0
    agents: int = 20
    summary_json: Optional[Path] = None
    sim_log: Optional[Path] = None
    talk_mean: float = 6.0
    patience_mean: float = 45.0
    wrapup: float = 1.0
    seed: int = 12345
    drain_s: float = 60.0
    speed: float = 1.0              # >1 plays the simulated media faster (tests)


def demo_agents(count: int, first: int = 1001) -> list[tuple[str, str, str, dict[str, int]]]:
    """A staffed floor: everyone speaks Mandarin; some Cantonese, English, enterprise, elderly care."""
    agents = []
    for i in range(count):
        skills = {"mandarin": 5}
        if i % 10 in (1, 4, 7):
            skills["cantonese"] = 3
        if i % 5 == 2:
            skills["english"] = 3
        if i % 4 == 0:
            skills["enterprise"] = 4
        if i % 5 == 3:
            skills["elderly"] = 5
        team = "enterprise" if "enterprise" in skills else "general"
        agents.append((str(first + i), f"坐席{first + i}", team, skills))
    return agents


async def demo_users(pool, agent_ids: list[str], listing: Path) -> str:
    """One user per role and one per agent, each with a random password (no default password):
    written to ``listing`` (readable by its owner only); returns what to print."""
    users = UserStore(pool)
    await pool.execute("TRUNCATE users, sessions")
    made = []
    for role in (Role.ADMIN, Role.SUPERVISOR, Role.OPS, Role.QUALITY):
        password = generate_password()
        await users.add(role.value, role, password)
        made.append((role.value, role.value, password))
    for agent_id in agent_ids:
        password = generate_password()
        await users.add(f"agent{agent_id}", Role.AGENT, password, agent_id=agent_id)
        made.append((f"agent{agent_id}", f"agent {agent_id}", password))
    listing.parent.mkdir(parents=True, exist_ok=True)
    with open(os.open(listing, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as out:
        out.write("".join(f"{name}\t{what}\t{password}\n" for name, what, password in made))
    os.chmod(listing, 0o600)
    shown = "\n".join(f"  {name:<14} {password}   ({what})" for name, what, password in made[:5])
    return (f"sign in (user name, password) at the desktop, the wallboard or POST /api/v1/auth/sign-in:\n{shown}\n"
            f"  ... every user, one per agent too: {listing}")


def truth_summary(records: list[dict]) -> dict:
    answered = [r for r in records if r["outcome"] == "answered"]
    mean = lambda xs: round(sum(xs) / len(xs), 3) if xs else None
    return {
        "offered": len(records),
        "answered": len(answered),
        "abandoned": sum(1 for r in records if r["outcome"] == "abandoned"),
        "avg_wait_s": mean([r["wait_s"] for r in answered if r["wait_s"] is not None]),
        "avg_talk_s": mean([r["talk_s"] for r in answered]),
    }


async def run_demo(settings: Settings, options: DemoOptions) -> dict:
    # The simulated PBX loads the shipped manager.conf: log in as its AMI user.
    _, _, users = read_manager_conf(ASTERISK_CONFIG / "manager.conf")
    settings = settings.model_copy(update={"wrapup_s": options.wrapup, "ami_username": users[0].username,
                                           "ami_secret": users[0].secret})
    stop = await wait_for_signal()
    scenario = Scenario(rate_per_min=options.rate, duration_s=options.duration, agents=options.agents,
                        talk_mean_s=options.talk_mean, patience_mean_s=options.patience_mean,
                        seed=options.seed, drain_s=options.drain_s).validated()
    sim = Simulator(SimulatorConfig(
        config_dir=ASTERISK_CONFIG, sounds_dirs=[SOUNDS], ami_host=settings.ami_host, ami_port=settings.ami_port,
        agi_url=f"agi://{settings.agi_host}:{settings.agi_port}", truth_log=options.sim_log, speed=options.speed,
        recordings_dir=settings.data_dir.resolve() / "recordings"), scenario)
    print("starting embedded stores and the simulated PBX ...", flush=True)
    async with open_stores(settings) as stores:
        await stores.redis.flushdb()   # the demo starts from an empty live state
        await stores.pool.execute("TRUNCATE calls, agent_states, ticket_outbox, ticketing_received")
        await sim.start()
        settings = settings.model_copy(update={"ami_port": sim.ami_port})
        try:
            async with start_services(settings, stores) as services:
                directory = services.acd.agents
                floor = demo_agents(options.agents)
                for agent_id, name, team, skills in floor:
                    await directory.upsert(agent_id, name, team, skills)
                    await directory.transition(agent_id, AgentState.READY)
                sign_in = await demo_users(stores.pool, [agent_id for agent_id, *_ in floor],
                                           settings.data_dir.resolve() / "demo-users.txt")
                print(f"simulated PBX (Asterisk AMI) : {settings.ami_host}:{sim.ami_port}")
                print(f"IVR (FastAGI)                : agi://{settings.agi_host}:{settings.agi_port}/ivr")
                for name, url in services.urls.items():
                    print(f"{name:<29}: {url}")
                print(sign_in, flush=True)
                print(f"traffic: {options.rate:g} calls/min, {options.agents} agents, "
                      + (f"{options.duration:g} s" if options.duration else "until Ctrl-C"), flush=True)
                generator = sim.start_generating()
                await _progress(sim, services, generator, stop)
                print("stopping traffic; letting calls in progress finish ...", flush=True)
                cut = await sim.drain(options.drain_s if not stop.is_set() else 5.0)
                if cut:
                    print(f"{cut} call(s) still in progress were hung up", flush=True)
                await services.acd.core.wait_idle()
        finally:
            await sim.stop()
        # The services have stopped: the outbox is flushed into PostgreSQL.
        summary = await call_summary(stores.pool)
    truth = truth_summary(sim.truth.records)
    if options.summary_json:
        options.summary_json.parent.mkdir(parents=True, exist_ok=True)
        options.summary_json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print("summary (from PostgreSQL): " + json.dumps(summary))
    print("simulator ground truth   : " + json.dumps(truth))
    return summary


async def _progress(sim: Simulator, services, generator: asyncio.Task, stop: asyncio.Event) -> None:
    started = time.monotonic()
    stop_task = asyncio.ensure_future(stop.wait())
    try:
        while not generator.done() and not stop.is_set():
            await asyncio.wait({generator, stop_task}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
            records = sim.truth.records
            book = services.acd.core.book
            states: dict[str, int] = {}
            for agent in services.acd.agents.agents.values():
                states[agent.state.value] = states.get(agent.state.value, 0) + 1
            print(f"[{time.monotonic() - started:6.0f}s] placed {len(sim.callers)}  ended {len(records)}  "
                  f"answered {sum(r['outcome'] == 'answered' for r in records)}  "
                  f"abandoned {sum(r['outcome'] == 'abandoned' for r in records)}  "
                  f"waiting {len(book.waiting)}  agents "
                  + " ".join(f"{k}={v}" for k, v in sorted(states.items())), flush=True)
    finally:
        stop_task.cancel()
