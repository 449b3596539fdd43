"""The simulated PBX assembled from the project's Asterisk configuration, and its call generator.

``Simulator`` reads ``extensions.conf`` (the dialplan it runs), ``pjsip.conf`` (endpoints
and their contexts) and ``manager.conf`` (AMI users and address), then places calls from
a :class:`Scenario` over the trunk and answers them with simulated agents' phones.
"""
from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .ami_server import AMIUser
from .asterisk_conf import load_conf
from .callers import SimCaller, SimPhone, TruthLog
from .dialplan import Dialplan
from .pbx import PBX, Endpoint
from .scenario import CallerPlan, Scenario
from .sounds import SoundLibrary

__all__ = ["Simulator", "SimulatorConfig"]

log = logging.getLogger(__name__)


@dataclass
class SimulatorConfig:
    config_dir: Path
    sounds_dirs: list[Path] = field(default_factory=list)
    ami_host: Optional[str] = None               # None: manager.conf's bindaddr
    ami_port: Optional[int] = None               # None: manager.conf's port (0 = any free port)
    speed: float = 1.0                           # >1 plays media faster (tests)
    agi_url: Optional[str] = None                # overrides the HOTLINE_AGI global
    auth_fail_delay: float = 1.0
    recordings_dir: Optional[Path] = None
    truth_log: Optional[Path] = None
    extra_sounds: dict[str, float] = field(default_factory=dict)


def _entries(section) -> list[tuple[str, str]]:
    return [(entry.key, entry.value) for entry in section.entries]


def read_manager_conf(path: Path) -> tuple[str, int, list[AMIUser]]:
    conf = load_conf(path)
    host, port, users = "127.0.0.1", 5038, []
    for section in conf:
        values = dict(_entries(section))
        if section.name == "general":
            host = values.get("bindaddr", host)
            port = int(values.get("port", port))
        elif "secret" in values:
            split = lambda text: frozenset(p.strip() for p in text.split(",") if p.strip())
            users.append(AMIUser(section.name, values["secret"], split(values.get("read", "")),
                                 split(values.get("write", ""))))
    return host, port, users


def read_pjsip_endpoints(path: Path) -> list[Endpoint]:
    endpoints = []
    for section in load_conf(path):
        values = dict(_entries(section))
        if values.get("type") != "endpoint":
            continue
        num, name = "", ""
        callerid = values.get("callerid", "")
        if "<" in callerid:
            name = callerid.split("<")[0].strip().strip('"')
            num = callerid.split("<")[1].rstrip(">").strip()
        endpoints.append(Endpoint(section.name, values.get("context", "default"), num, name))
    return endpoints


class Simulator:
    def __init__(self, config: SimulatorConfig, scenario: Scenario) -> None:
        self.config = config
        self.scenario = scenario
        self.rng = random.Random(scenario.seed)
        dialplan = Dialplan.load(config.config_dir / "extensions.conf")
        if config.agi_url:
            dialplan.globals["HOTLINE_AGI"] = config.agi_url
        host, port, users = read_manager_conf(config.config_dir / "manager.conf")
        self.pbx = PBX(
            dialplan, SoundLibrary(config.sounds_dirs, speed=config.speed, extra=config.extra_sounds),
            ami_users=users, ami_host=config.ami_host or host,
            ami_port=config.ami_port if config.ami_port is not None else port,
            auth_fail_delay=config.auth_fail_delay, speed=config.speed, recordings_dir=config.recordings_dir)
        for endpoint in read_pjsip_endpoints(config.config_dir / "pjsip.conf"):
            self.pbx.add_endpoint(endpoint)
        self.truth = TruthLog(config.truth_log)
        self.phones: dict[str, SimPhone] = {}
        self.callers: list[SimCaller] = []
        self._generator: Optional[asyncio.Task] = None

    @property
    def ami_port(self) -> int:
        return self.pbx.ami.port

    def agent_extensions(self) -> list[str]:
        return [str(self.scenario.first_agent + i) for i in range(self.scenario.agents)]

    async def start(self) -> None:
        for ext in self.agent_extensions():
            self.register_phone(ext)
        await self.pbx.start()
        log.info("simulated PBX: AMI on %s:%s, %d agent phones", self.pbx.ami.host, self.pbx.ami.port,
                 len(self.phones))

    def register_phone(self, ext: str) -> SimPhone:
        endpoint = self.pbx.endpoints.get(ext)
        if endpoint is None:
            # More agents than pjsip.conf lists: the same template as the configured agents.
            endpoint = Endpoint(ext, "agents", ext, f"Agent {ext}")
            self.pbx.add_endpoint(endpoint)
        phone = SimPhone(self.pbx, ext, random.Random(self.rng.random()),
                         self.scenario.answer_delay_s, self.scenario.no_answer_share)
        endpoint.phone = phone
        self.phones[ext] = phone
        self._contact(ext, "Created")
        return phone

    def unregister_phone(self, ext: str) -> None:
        """The phone's REGISTER expires or is removed: calls to it fail with CHANUNAVAIL."""
        endpoint = self.pbx.endpoints.get(ext)
        if endpoint is not None and endpoint.phone is not None:
            endpoint.phone = None
            self.phones.pop(ext, None)
            self._contact(ext, "Removed")

    def _contact(self, ext: str, status: str) -> None:
        # What chan_pjsip reports when a contact is added or removed by REGISTER.
        self.pbx.emit("ContactStatus", "system,all", [
            ("URI", f"sip:{ext}@127.0.0.1:5060"), ("ContactStatus", status), ("AOR", ext),
            ("EndpointName", ext), ("RoundtripUsec", "0")])
        self.pbx.emit("DeviceStateChange", "call,all", [
            ("Device", f"PJSIP/{ext}"), ("State", "NOT_INUSE" if status != "Removed" else "UNAVAILABLE")])

    def phone_dials(self, ext: str, exten: str):
        """The agent's phone calls ``exten`` in its own context (feature codes such as *41)."""
        endpoint = self.pbx.endpoints[ext]
        channel = self.pbx.new_channel("PJSIP", ext, endpoint.context, exten, caller_num=endpoint.callerid_num,
                                       caller_name=endpoint.callerid_name, dnid=exten)
        self.pbx.start_dialplan(channel, endpoint.context, exten, 1)
        return channel

    def place_call(self, plan: Optional[CallerPlan] = None) -> SimCaller:
        plan = plan or CallerPlan.draw(self.scenario, self.rng)
        caller = SimCaller(self.pbx, plan, self.truth, len(self.callers) + 1)
        self.callers.append(caller)
        number = self.scenario.enterprise_number if plan.line == "enterprise" else self.scenario.main_number
        caller.dial(number)
        return caller

    async def generate(self) -> None:
        """Place calls as a Poisson process until the duration or call count is reached."""
        loop = asyncio.get_running_loop()
        end = loop.time() + self.scenario.duration_s if self.scenario.duration_s else None
        rate = self.scenario.rate_per_min / 60.0
        while True:
            gap = self.rng.expovariate(rate)
            if end is not None and loop.time() + gap >= end:
                await asyncio.sleep(max(0.0, end - loop.time()))
                return
            await asyncio.sleep(gap)
            self.place_call()
            if self.scenario.max_calls and len(self.callers) >= self.scenario.max_calls:
                return

    def start_generating(self) -> asyncio.Task:
        self._generator = asyncio.create_task(self.generate())
        return self._generator

    async def drain(self, timeout: Optional[float] = None) -> int:
        """Wait for calls in progress to end; hang up the rest. Returns how many were cut off."""
        if self._generator is not None and not self._generator.done():
            self._generator.cancel()
            try:
                await self._generator
            except asyncio.CancelledError:
                pass
        pending = [c.done.wait() for c in self.callers if not c.done.is_set()]
        if pending:
            await asyncio.wait([asyncio.ensure_future(p) for p in pending],
                               timeout=self.scenario.drain_s if timeout is None else timeout)
        cut = [c for c in self.callers if not c.done.is_set()]
        for caller in cut:
            caller.hang_up()
        if cut:
            await asyncio.wait([asyncio.ensure_future(c.done.wait()) for c in cut], timeout=10)
        return len(cut)

    async def stop(self) -> None:
        await self.pbx.stop()
        self.truth.close()
