"""``hotline pbxsim``: the simulated PBX alone, for services that run in their own processes."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Optional

from hotline.settings import Settings
from pbxsim.scenario import Scenario
from pbxsim.simulator import Simulator, SimulatorConfig

from hotline.paths import ASTERISK_CONFIG, SOUNDS
from .services import wait_for_signal

__all__ = ["run_simulator"]


async def run_simulator(settings: Settings, scenario: Scenario, sim_log: Optional[Path]) -> None:
    stop = await wait_for_signal()
    sim = Simulator(SimulatorConfig(config_dir=ASTERISK_CONFIG, sounds_dirs=[SOUNDS], ami_host=settings.ami_host,
                                    ami_port=settings.ami_port, agi_url=f"agi://{settings.agi_host}:{settings.agi_port}",
                                    truth_log=sim_log), scenario)
    await sim.start()
    print(f"simulated PBX: AMI on {settings.ami_host}:{sim.ami_port}, {len(sim.phones)} agent phones, "
          f"{scenario.rate_per_min:g} calls/min", flush=True)
    generator = sim.start_generating()
    stop_wait = asyncio.ensure_future(stop.wait())
    await asyncio.wait({generator, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
    stop_wait.cancel()
    cut = await sim.drain(5.0 if stop.is_set() else None)
    await sim.stop()
    print(f"placed {len(sim.callers)} calls ({cut} cut off at the end)", flush=True)
