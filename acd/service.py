"""The ACD service: its parts built and wired by constructor injection (:func:`build_core`), then
run with the AMI connection, the other nodes, the outbox writer and the HTTP API (:func:`run_acd`).

A call's path through the parts, by file:
``events.py`` (AMI event) -> ``callbook.py`` (followed calls) -> ``queueing.py`` (placed) ->
``router.py`` (the decision, one Redis script) -> ``routing.py`` -> ``assignment.py`` (reserved) ->
``connector.py`` (AMI Redirect) ... ``events.py`` (Hangup) -> ``records.py`` (the record, into
the Redis outbox) -> ``outbox.py`` (PostgreSQL). Agents change only through ``agent_service.py``.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Iterable, Optional

from redis.asyncio import Redis

from hotline.ami import AMIClient
from hotline.auth.sessions import SessionStore
from hotline.settings import Settings
from hotline.stores import Stores
from hotline.tasks import Background, stop_task

from .agent_service import AgentService
from .agents import AgentDirectory
from .assignment import Assignment
from .call_control import CallControl
from .callbacks import CallBacks
from .callbook import CallBook
from .callstore import CallStore
from .cluster import Cluster, PeerListener
from .connector import Connector
from .events import CallEvents
from .feature_codes import FeatureCodes
from .http import start_acd_http
from .outbox import OutboxWriter
from .ownership import Ownership
from .peers import Peers
from .queueing import Queueing
from .queues import DEFAULT_QUEUES_FILE, QueueBook, QueueConfigError
from .records import Records
from .recovery import Recovery
from .router import Router
from .routing import Routing
from .wrapups import Wrapups
from .writeback import WriteBack

__all__ = ["ACD", "ACDConfigError", "ACDCore", "build_core", "node_name", "run_acd"]

log = logging.getLogger(__name__)


@dataclass
class ACDCore:
    background: Background
    directory: AgentDirectory
    router: Router
    book: CallBook
    connector: Connector
    store: CallStore
    writeback: WriteBack
    routing: Routing
    agents: AgentService
    records: Records
    queueing: Queueing
    callbacks: CallBacks
    assignment: Assignment
    recovery: Recovery
    peers: Peers
    events: CallEvents
    ownership: Ownership
    control: CallControl

    def attach(self, ami: Any) -> None:
        """Listen to Asterisk: the call events, and recovery after every AMI login."""
        self.events.attach(ami)
        ami.on_connected(self.recovery.on_connected)

    async def wait_idle(self) -> None:
        """Until every task started by an event has finished (tests, shut-down)."""
        await self.background.wait_idle()

    async def close(self, timeout: float = 10.0) -> None:
        await self.wait_idle()
        await self.writeback.close(timeout)
        await self.router.aclose()


def build_core(ami: Any, redis: Redis, directory: AgentDirectory, *, inbound_contexts: Iterable[str] = ("from-trunk",),
               enterprise_numbers: Iterable[str] = ("123451",), wrapup_s: float = 5.0, default_queue: str = "general",
               connect_context: str = "hotline-connect", queues: Optional[QueueBook] = None,
               cluster: Optional[Cluster] = None, specialists: Iterable[str] = (),
               clock: Callable[[], float] = time.time) -> ACDCore:
    node = cluster.node if cluster is not None else directory.node
    directory.node = node
    background = Background("ACD")
    ownership = Ownership(node, cluster)
    router = Router(redis, queues, clock=clock, node=node)
    book = CallBook(clock)
    connector = Connector(ami, connect_context=connect_context)
    store = CallStore(redis, router, book, node)
    writeback = WriteBack(redis, directory)
    routing = Routing(directory, router, writeback, background)
    writeback.on_written = routing.schedule
    wrapups = Wrapups(redis, directory, ownership, queues=lambda: router.queues, wrapup_s=wrapup_s, clock=clock)
    agents = AgentService(directory, router, routing, writeback, wrapups, clock=clock)
    records = Records(redis, router, book, writeback, agents, routing)
    queueing = Queueing(book, store, router, routing, directory, background, default_queue=default_queue, clock=clock)
    callbacks = CallBacks(book, store, connector, agents, records, queueing, background,
                          queues=lambda: router.queues, default_queue=default_queue, clock=clock)
    assignment = Assignment(directory, agents, book, store, connector, callbacks, background, node=node)
    routing.on_decision = assignment.assigned
    inbound = set(inbound_contexts)
    # Where a caller's channel can be while the ACD follows it (recovery adopts these).
    caller_contexts = inbound | {"hotline-inbound", "hotline-wait", connect_context, "hotline-transfer-out"}
    recovery = Recovery(book, store, connector, records, agents, directory, queueing, routing, ownership, background,
                        caller_contexts=caller_contexts, clock=clock)
    peers = Peers(redis, directory, agents, book, store, router, assignment, recovery, ownership, background)
    events = CallEvents(book, store, queueing, callbacks, records, agents, FeatureCodes(agents, ownership, background),
                        connector, ownership, background, inbound_contexts=inbound,
                        enterprise_numbers=set(enterprise_numbers), clock=clock)
    control = CallControl(redis, directory, agents, connector, queues=lambda: router.queues,
                          default_queue=default_queue, specialists=specialists, clock=clock)
    return ACDCore(background, directory, router, book, connector, store, writeback, routing, agents, records,
                   queueing, callbacks, assignment, recovery, peers, events, ownership, control)


@dataclass
class ACD:
    ami: AMIClient
    core: ACDCore
    outbox: OutboxWriter
    cluster: Cluster
    http_port: int = 0

    @property
    def agents(self) -> AgentDirectory:
        return self.core.directory


class ACDConfigError(Exception):
    pass


async def _watch_queues(router: Router, every_s: float = 5.0) -> None:
    """Queue rules changed on disk take effect without a restart; a bad file keeps the old rules."""
    while True:
        await asyncio.sleep(every_s)
        try:
            book = router.queues.reload_if_changed()
        except QueueConfigError as exc:
            log.error("queue rules not reloaded: %s", exc)
            continue
        if book is not None:
            router.set_queues(book)
            log.info("queue rules reloaded from %s", book.source)


async def _reconcile_agents(recovery: Recovery, every_s: float = 30.0) -> None:
    """Agent states checked against Asterisk's channels, between reconnects too."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await recovery.reconcile_agents()
        except Exception:               # a bad pass must not end the loop
            log.exception("agent reconcile failed")


@asynccontextmanager
async def run_acd(settings: Settings, stores: Stores) -> AsyncIterator[ACD]:
    if not settings.ami_secret:
        raise ACDConfigError("setting HOTLINE_AMI_SECRET: required to log in to Asterisk's AMI "
                             "(the secret of the AMI user in manager.conf)")
    try:
        queues = QueueBook.from_file(settings.acd_queues_file or DEFAULT_QUEUES_FILE)
    except QueueConfigError as exc:
        raise ACDConfigError(f"setting acd_queues_file: {exc}") from None
    ami = AMIClient(settings.ami_host, settings.ami_port, settings.ami_username, settings.ami_secret,
                    action_timeout=settings.ami_action_timeout_s, ping_interval=settings.ami_ping_interval_s)
    node = node_name(settings)
    cluster = Cluster(stores.redis, node, lease_s=settings.acd_lease_s, beat_s=settings.acd_lease_s / 3)
    directory = AgentDirectory(stores.redis, node=node)
    await directory.load()
    core = build_core(ami, stores.redis, directory, wrapup_s=settings.wrapup_s,
                      default_queue=settings.default_queue, queues=queues, cluster=cluster,
                      specialists=settings.transfer_specialists)
    await core.router.prepare(agent.skills for agent in directory.agents.values())
    core.attach(ami)
    peers = PeerListener(stores.redis, node, on_agent=core.peers.on_agent, on_handoff=core.peers.on_handoff,
                         on_gap=core.peers.on_gap)
    cluster.on_peer_lost = core.peers.on_peers_lost
    cluster.on_lease_lost = core.peers.on_lease_lost
    outbox = OutboxWriter(stores.redis, stores.pool, writer=node)
    # Everything started is stopped, in the reverse order, whatever fails on the way: the records
    # in memory reach the outbox before its writer stops.
    async with AsyncExitStack() as stack:
        outbox.start()
        stack.push_async_callback(outbox.stop)
        # Subscribed and counted in before the first AMI event: no hand-over or agent change is missed.
        await peers.start()
        stack.push_async_callback(peers.stop)
        await cluster.join()
        stack.push_async_callback(cluster.leave)
        stack.push_async_callback(core.close)
        stack.push_async_callback(ami.close)
        await ami.connect()
        for loop in (_watch_queues(core.router), _reconcile_agents(core.recovery)):
            stack.push_async_callback(stop_task, asyncio.create_task(loop))
        runner, port = await start_acd_http(core.agents, core.assignment, stores.redis, settings.acd_host,
                                            settings.acd_port, sessions=SessionStore(stores.pool, stores.redis),
                                            service_token=settings.service_token, call_control=core.control)
        stack.push_async_callback(runner.cleanup)
        yield ACD(ami, core, outbox, cluster, port)


def node_name(settings: Settings) -> str:
    """This ACD process's name among several: configured, else host:port (unique on a host, and
    the same after a restart), else host plus a random part (tests, port 0)."""
    if settings.acd_node:
        return settings.acd_node
    host = socket.gethostname() or "acd"
    if settings.acd_port:
        return f"{host}:{settings.acd_port}"
    return f"{host}:{uuid.uuid4().hex[:8]}"
