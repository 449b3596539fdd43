"""Several ACD processes at once: who follows which call, and what they tell each other.

Every ACD process sees every AMI event, so each call must be *followed* by exactly one of them
(the one that records it, redirects it and drives its agent's on-call and wrap-up states):

- **membership**: each process (a *node*) renews its lease in ``hotline:acd:nodes`` (a sorted set
  scored by the last beat) every ``beat_s``; a node not heard of for ``lease_s`` is dead;
- **who follows a new call**: rendezvous hashing of the call's Linkedid (shared by the caller's
  channel and the agent's leg) over the live nodes, confirmed by claiming the call's hash in Redis
  (``owner``, first writer wins) for the moment two nodes' views of the membership differ;
- **a dead node's calls**: when a lease expires, the survivors run recovery; each call whose owner
  is dead is adopted by the one that wins its compare-and-set on ``owner``;
- **routing stays shared**: any node may decide (a freed agent takes the best call of any node,
  atomically in Redis); a call followed by another node is handed to it on its channel
  ``hotline:acd:node:<name>`` by the routing script itself, so the follower redirects it;
- **agent caches**: every agent transition is published on ``hotline:events`` with the node that
  made it; the other nodes update their copies (their decisions are checked in Redis anyway).

One node alone owns everything, and pays nothing for this.
"""
from __future__ import annotations

import asyncio
import json
import logging
import hashlib
import time
from typing import Any, Callable, Optional

from redis.asyncio import Redis
from redis.exceptions import RedisError

from hotline.keys import Keys

from hotline.subscriber import Subscriber
from hotline.tasks import stop_task

__all__ = ["Cluster", "PeerListener", "node_channel"]

log = logging.getLogger(__name__)


def node_channel(node: str) -> str:
    return Keys.acd_node(node)


class Cluster:
    """This node's view of the live ACD nodes (renewed every ``beat_s``)."""

    def __init__(self, redis: Redis, node: str, *, lease_s: float = 3.0, beat_s: float = 1.0,
                 clock=time.time) -> None:
        self.redis = redis
        self.node = node
        self.lease_s = lease_s
        self.beat_s = beat_s
        self.clock = clock
        self.live: tuple[str, ...] = (node,)
        self.on_peer_lost: Optional[Callable[[list[str]], None]] = None
        # Our own lease ran out (Redis unreachable too long): the others may have adopted our calls.
        self.on_lease_lost: Optional[Callable[[], None]] = None
        self._renewed_at: Optional[float] = None
        self._task: Optional[asyncio.Task] = None

    def owns(self, key: str) -> bool:
        """Whether this node should follow the call with this Linkedid (rendezvous hashing:
        a node joining or leaving moves only the calls that hash to it)."""
        live = self.live
        if len(live) == 1:
            return live[0] == self.node
        # (A real hash: CRC32 is linear and shares calls out unevenly between nodes.)
        best = max(live, key=lambda node: hashlib.blake2b(f"{node}|{key}".encode(), digest_size=8).digest())
        return best == self.node

    def alive(self, node: str) -> bool:
        return node in self.live

    async def join(self) -> None:
        await self.beat()
        self._task = asyncio.create_task(self._beating(), name="acd-cluster")

    async def leave(self) -> None:
        await stop_task(self._task)
        try:
            await self.redis.zrem(Keys.acd_nodes, self.node)
        except (RedisError, OSError):
            pass

    async def beat(self) -> list[str]:
        """Renew our lease, read the others'; returns the nodes whose lease just expired."""
        now = self.clock()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(Keys.acd_nodes, {self.node: now})
            pipe.zrangebyscore(Keys.acd_nodes, now - self.lease_s, "+inf")
            pipe.zrangebyscore(Keys.acd_nodes, "-inf", f"({now - self.lease_s}")
            _, live, expired = await pipe.execute()
        gap = now - self._renewed_at if self._renewed_at is not None else 0.0
        self._renewed_at = now
        if gap >= self.lease_s:
            log.warning("ACD node %s: lease not renewed for %.1fs; other nodes may have adopted its calls",
                        self.node, gap)
            if self.on_lease_lost is not None:
                self.on_lease_lost()
        lost = []
        for node in expired:
            # Whoever removes it first reports it; the others see it gone.
            if await self.redis.zrem(Keys.acd_nodes, node):
                lost.append(node)
        if self.node not in live:
            live.append(self.node)
        if tuple(sorted(live)) != tuple(sorted(self.live)):
            log.info("ACD nodes now %s (this one %s)", sorted(live), self.node)
        self.live = tuple(sorted(live))
        return lost

    async def _beating(self) -> None:
        while True:
            await asyncio.sleep(self.beat_s)
            try:
                lost = await self.beat()
            except (RedisError, OSError) as exc:
                log.warning("ACD lease not renewed (%s)", exc)
                continue
            if lost:
                log.warning("ACD node(s) %s stopped renewing their lease: adopting their calls", lost)
                if self.on_peer_lost is not None:
                    self.on_peer_lost(lost)


class PeerListener:
    """Messages from the other nodes: agent transitions (``hotline:events``) and calls handed to
    this node (its own channel), on a :class:`hotline.subscriber.Subscriber` (a lean connection:
    every agent change of the cluster reaches every node). After a gap ``on_gap`` runs (the caller
    re-reads what it may have missed)."""

    def __init__(self, redis: Redis, node: str, *, on_agent: Callable[[dict[str, Any]], None],
                 on_handoff: Callable[[dict[str, Any]], None], on_gap: Callable[[], None],
                 lean: bool = True) -> None:
        self.node = node
        self.on_agent = on_agent
        self.on_handoff = on_handoff
        self._channel = node_channel(node)
        # How every change this node publishes ends (the node's name is the last field).
        self._own = f', "node": {json.dumps(node)}}}'
        self.subscriber = Subscriber(redis, [Keys.events, self._channel], self.dispatch, on_gap=on_gap,
                                     lean=lean, name="ACD peer messages")

    async def start(self) -> None:
        await self.subscriber.start()

    async def stop(self) -> None:
        await self.subscriber.stop()

    @property
    def subscribed(self) -> bool:
        return self.subscriber.connected

    def dispatch(self, channel: str, raw: str) -> None:
        if type(raw) is str and raw.endswith(self._own) and channel != self._channel:
            return          # our own change, the most common message: not even parsed
        try:
            event = json.loads(raw)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        if channel == self._channel:
            self.on_handoff(event)
        elif event.get("node") and event.get("node") != self.node and event.get("type") in ("agent", "agent_profile"):
            self.on_agent(event)
