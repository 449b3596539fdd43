"""The ACD service: AMI connection, agents, routing, and the outbox writer, started together."""
from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator

from hotline.ami import AMIClient
from hotline.settings import Settings
from hotline.stores import Stores

from .agents import AgentDirectory
from .cluster import Cluster, PeerListener
from .distributor import Distributor
from .http import start_acd_http
from .outbox import OutboxWriter
from .queues import DEFAULT_QUEUES_FILE, QueueBook, QueueConfigError

__all__ = ["ACD", "ACDConfigError", "run_acd"]

log = logging.getLogger(__name__)


@dataclass
class ACD:
    ami: AMIClient
    agents: AgentDirectory
    distributor: Distributor
    outbox: OutboxWriter
    cluster: Cluster
    http_port: int = 0


class ACDConfigError(Exception):
    pass


async def _watch_queues(distributor: Distributor, every_s: float = 5.0) -> None:
    """Queue rules changed on disk take effect without a restart; a bad file keeps the old rules."""
    while True:
        await asyncio.sleep(every_s)
        try:
            book = distributor.router.queues.reload_if_changed()
        except QueueConfigError as exc:
            log.error("queue rules not reloaded: %s", exc)
            continue
        if book is not None:
            distributor.router.set_queues(book)
            log.info("queue rules reloaded from %s", book.source)


async def _reconcile_agents(distributor: Distributor, every_s: float = 30.0) -> None:
    """Agent states checked against Asterisk's channels, between reconnects too."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await distributor.reconcile_agents()
        except Exception:               # a bad pass must not end the loop
            log.exception("agent reconcile failed")


@asynccontextmanager
async def run_acd(settings: Settings, stores: Stores) -> AsyncIterator[ACD]:
    if not settings.ami_secret:
        raise ACDConfigError("setting HOTLINE_AMI_SECRET: required to log in to Asterisk's AMI "
                             "(the secret of the AMI user in manager.conf)")
    ami = AMIClient(settings.ami_host, settings.ami_port, settings.ami_username, settings.ami_secret,
                    action_timeout=settings.ami_action_timeout_s, ping_interval=settings.ami_ping_interval_s)
    try:
        queues = QueueBook.from_file(settings.acd_queues_file or DEFAULT_QUEUES_FILE)
    except QueueConfigError as exc:
        raise ACDConfigError(f"setting acd_queues_file: {exc}") from None
    node = node_name(settings)
    cluster = Cluster(stores.redis, node, lease_s=settings.acd_lease_s, beat_s=settings.acd_lease_s / 3)
    agents = AgentDirectory(stores.redis, node=node)
    await agents.load()
    distributor = Distributor(ami, stores.redis, agents, wrapup_s=settings.wrapup_s,
                              default_queue=settings.default_queue, queues=queues, cluster=cluster)
    await distributor.router.prepare(agent.skills for agent in agents.agents.values())
    distributor.attach()
    peers = PeerListener(stores.redis, node, on_agent=distributor.on_peer_agent,
                         on_handoff=distributor.on_handoff, on_gap=distributor.on_peer_gap)
    cluster.on_peer_lost = distributor.on_peers_lost
    cluster.on_lease_lost = distributor.on_lease_lost
    # Subscribed and counted in before the first AMI event: no hand-over or agent change is missed.
    await peers.start()
    await cluster.join()
    outbox = OutboxWriter(stores.redis, stores.pool, writer=node)
    outbox.start()
    await ami.connect()
    watcher = asyncio.create_task(_watch_queues(distributor))
    reconciler = asyncio.create_task(_reconcile_agents(distributor))
    runner = None
    try:
        runner, port = await start_acd_http(distributor, settings.acd_host, settings.acd_port)
        yield ACD(ami, agents, distributor, outbox, cluster, port)
    finally:
        watcher.cancel()
        reconciler.cancel()
        if runner is not None:
            await runner.cleanup()
        await ami.close()
        await distributor.close()
        await cluster.leave()
        await peers.stop()
        await outbox.stop()


def node_name(settings: Settings) -> str:
    """This ACD process's name among several: configured, else host:port (unique on a host, and
    the same after a restart), else host plus a random part (tests, port 0)."""
    if settings.acd_node:
        return settings.acd_node
    host = socket.gethostname() or "acd"
    if settings.acd_port:
        return f"{host}:{settings.acd_port}"
    return f"{host}:{uuid.uuid4().hex[:8]}"
