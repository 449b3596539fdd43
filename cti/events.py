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
from redis.exceptions import RedisError

from hotline.keys import Keys
from hotline.lane import Subscription as LeanSubscription
from hotline.lane import open_lane

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
        self.redis = redis
        # Every agent change of the cluster comes through here (one per routing decision): read on
        # a lean subscription (hotline.lane: a few µs a message) when the client allows one.
        self._lane = open_lane(redis) if lean else None
        self._lean: Optional[LeanSubscription] = None
        self.channel = channel
        self.queue_size = queue_size
        self.read_timeout_s = read_timeout_s
        self.max_backoff_s = max_backoff_s
        self.connected = False
        self.received = 0
        self._by_agent: dict[str, set[Subscription]] = {}
        self._pubsub = None
        self._task: Optional[asyncio.Task] = None
        self._stopped = False

    # ---- life cycle ---------------------------------------------------------------------
    async def start(self, timeout: float = 2.0) -> None:
        """Subscribe (so that no event published after start-up is missed), then read in a task.

        Redis unreachable at start-up is not fatal: the task keeps trying, with backoff.
        """
        try:
            async with asyncio.timeout(timeout):
                await self._connect()
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            log.warning("events: cannot subscribe to %s yet (%s); will retry", self.channel,
                        str(exc) or type(exc).__name__)
            await self._drop()
        self._task = asyncio.create_task(self._run(), name="cti-events")

    async def stop(self) -> None:
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self._drop()
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
    async def _connect(self) -> None:
        if self._lane is not None:
            self._lean = await self._lane.subscribe([self.channel], self._lean_message)
            self.connected = True
            log.info("events: subscribed to %s", self.channel)
            return
        pubsub = self.redis.pubsub()
        self._pubsub = pubsub
        await pubsub.subscribe(self.channel)
        # Wait for the confirmation: from here on, every publish reaches us.
        while True:
            message = await pubsub.get_message(timeout=1.0)
            if message is not None and message.get("type") == "subscribe":
                break
        # redis-py may also reconnect and re-subscribe by itself, silently: hear of it too.
        if pubsub.connection is not None:
            pubsub.connection.register_connect_callback(self._reconnected)
        self.connected = True
        log.info("events: subscribed to %s", self.channel)

    def _reconnected(self, connection) -> None:
        log.info("events: subscription re-made by the client; desktops resync")
        self._broadcast(RESYNC)

    def _lean_message(self, channel: str, data: str) -> None:
        self.received += 1
        self.dispatch(data)

    async def _drop(self) -> None:
        self.connected = False
        lean, self._lean = self._lean, None
        if lean is not None:
            lean.close()
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            if pubsub.connection is not None:
                try:
                    pubsub.connection.deregister_connect_callback(self._reconnected)
                except ValueError:
                    pass
            try:
                await pubsub.aclose()
            except (RedisError, OSError):
                pass

    async def _run(self) -> None:
        delay = 0.5
        while not self._stopped:
            try:
                if self._pubsub is None and self._lean is None:
                    async with asyncio.timeout(max(self.read_timeout_s, 2.0)):
                        await self._connect()
                    delay = 0.5
                    self._broadcast(RESYNC)          # events may have been missed meanwhile
                if self._lean is not None:
                    raise await self._lean.lost     # events are dispatched as they are read
                message = await self._pubsub.get_message(ignore_subscribe_messages=True,
                                                         timeout=self.read_timeout_s)
                delay = 0.5
                if message is not None and message.get("type") == "message":
                    self.received += 1
                    self.dispatch(message.get("data"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the subscription must outlive any one failure
                log.warning("events: subscription lost (%s); retrying in %.1fs",
                            str(exc) or type(exc).__name__, delay)
                await self._drop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)

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
