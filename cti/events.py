"""The live events the ACD publishes on ``Keys.events``, fanned out to the agent desktops.

One Redis pub/sub subscription per process, whatever the number of open desktops: the hub
reads it and hands each event to the subscriptions it concerns (by agent id, or by a call
the desktop is showing). A desktop that does not keep up is not allowed to hold the others
back: its queue is emptied and it is told to ``resync`` (read its state again). So is every
desktop after the subscription was lost and re-made, since events may have been missed.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from typing import Any, Optional

from redis.asyncio import Redis

from hotline.keys import Keys
from hotline.subscriber import Subscriber

__all__ = ["EventHub", "RESYNC", "Subscription"]

log = logging.getLogger(__name__)

RESYNC: dict[str, Any] = {"type": "resync"}
MAX_EVENT_BYTES = 64 * 1024
MAX_TRACKED_CALLS = 16


class Subscription:
    """The events for one desktop. ``get()`` returns None once the hub has stopped."""

    def __init__(self, agent_id: str, queue_size: int) -> None:
        self.agent_id = agent_id
        self.queue: asyncio.Queue[Optional[dict[str, Any]]] = asyncio.Queue(queue_size)
        self.calls: OrderedDict[str, None] = OrderedDict()     # calls shown on this desktop
        self.dropped = 0
        self.ended = False

    def track_call(self, uniqueid: str) -> None:
        self.calls[uniqueid] = None
        self.calls.move_to_end(uniqueid)
        while len(self.calls) > MAX_TRACKED_CALLS:
            self.calls.popitem(last=False)

    def forget_call(self, uniqueid: str) -> None:
        self.calls.pop(uniqueid, None)

    def deliver(self, event: Optional[dict[str, Any]]) -> None:
        """Queue an event (None: the end), never waiting: the hub serves every desktop."""
        if self.ended:
            return
        if event is None:
            self.ended = True
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            # Too slow: drop what is queued, tell it to read its state again.
            self.dropped += self.queue.qsize()
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(RESYNC if event is not None else None)

    async def get(self) -> Optional[dict[str, Any]]:
        return await self.queue.get()


class EventHub:
    def __init__(self, redis: Redis, channel: str = Keys.events, *, queue_size: int = 256,
                 read_timeout_s: float = 5.0, max_backoff_s: float = 10.0, lean: bool = True) -> None:
        self.channel = channel
        self.queue_size = queue_size
        self.received = 0
        self._by_agent: dict[str, set[Subscription]] = {}
        self._stopped = False
        # Every agent change of the cluster comes through here (one per routing decision): read on
        # a lean subscription when the client allows one. After a gap, every desktop resyncs.
        self.subscriber = Subscriber(redis, [channel], self._message, on_gap=self._gap, lean=lean,
                                     name="events", first_backoff_s=0.5, max_backoff_s=max_backoff_s,
                                     read_timeout_s=read_timeout_s)

    @property
    def connected(self) -> bool:
        return self.subscriber.connected

    # ---- life cycle ---------------------------------------------------------------------
    async def start(self, timeout: float = 2.0) -> None:
        """Subscribe (so that no event published after start-up is missed), then read in a task.

        Redis unreachable at start-up is not fatal: the task keeps trying, with backoff.
        """
        await self.subscriber.start(timeout, must_subscribe=False)
        if self.connected:
            log.info("events: subscribed to %s", self.channel)

    async def stop(self) -> None:
        self._stopped = True
        await self.subscriber.stop()
        for subs in list(self._by_agent.values()):
            for sub in list(subs):
                sub.deliver(None)
        self._by_agent.clear()

    @property
    def subscribers(self) -> int:
        return sum(len(subs) for subs in self._by_agent.values())

    def subscribe(self, agent_id: str) -> Subscription:
        sub = Subscription(agent_id, self.queue_size)
        if self._stopped:
            sub.deliver(None)
            return sub
        self._by_agent.setdefault(agent_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._by_agent.get(sub.agent_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._by_agent[sub.agent_id]

    # ---- reading ------------------------------------------------------------------------
    def _message(self, channel: str, data: Any) -> None:
        self.received += 1
        self.dispatch(data)

    def _gap(self) -> None:
        log.info("events: subscribed to %s again; desktops resync", self.channel)
        self._broadcast(RESYNC)              # events may have been missed meanwhile

    def dispatch(self, raw: Any) -> None:
        """Route one published event to the subscriptions it concerns; ignore anything unreadable."""
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", "replace")
        if not isinstance(raw, str) or len(raw) > MAX_EVENT_BYTES:
            return
        try:
            event = json.loads(raw)
        except ValueError:
            log.debug("events: not JSON: %r", raw[:200])
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return
        targets: set[Subscription] = set()
        agent = event.get("agent")
        if isinstance(agent, str):
            targets |= self._by_agent.get(agent, set())
        uniqueid = event.get("uniqueid")
        if event["type"].startswith("call_") and isinstance(uniqueid, str):
            for subs in self._by_agent.values():
                targets |= {sub for sub in subs if uniqueid in sub.calls}
        for sub in targets:
            sub.deliver(event)

    def _broadcast(self, event: dict[str, Any]) -> None:
        for subs in self._by_agent.values():
            for sub in subs:
                sub.deliver(event)
