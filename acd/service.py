"""The ACD service: AMI connection, agents, routing, and the outbox writer, started together."""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator

from hotline.ami import AMIClient
from hotline.settings import Settings
from hotline.stores import Stores

from .agents import AgentDirectory
from .distributor import Distributor
from .outbox import OutboxWriter

__all__ = ["ACD", "ACDConfigError", "run_acd"]

log = logging.getLogger(__name__)


@dataclass
class ACD:
    ami: AMIClient
    agents: AgentDirectory
    distributor: Distributor
    outbox: OutboxWriter


class ACDConfigError(Exception):
    pass


@asynccontextmanager
async def run_acd(settings: Settings, stores: Stores) -> AsyncIterator[ACD]:
    if not settings.ami_secret:
        raise ACDConfigError("setting HOTLINE_AMI_SECRET: required to log in to Asterisk's AMI "
                             "(the secret of the AMI user in manager.conf)")
    ami = AMIClient(settings.ami_host, settings.ami_port, settings.ami_username, settings.ami_secret,
                    action_timeout=settings.ami_action_timeout_s, ping_interval=settings.ami_ping_interval_s)
    agents = AgentDirectory(stores.redis)
    await agents.load()
    distributor = Distributor(ami, stores.redis, agents, wrapup_s=settings.wrapup_s,
                              default_queue=settings.default_queue)
    distributor.attach()
    outbox = OutboxWriter(stores.redis, stores.pool)
    outbox.start()
    await ami.connect()
    try:
        yield ACD(ami, agents, distributor, outbox)
    finally:
        await ami.close()
        await distributor.close()
        await outbox.stop()
