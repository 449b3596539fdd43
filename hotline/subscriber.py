"""A Redis subscription that outlives its connections.

Messages are handed to ``on_message(channel, data)`` as they are read; after every
re-subscription ``on_gap()`` runs, since messages may have been missed meanwhile (the caller
re-reads its state, tells its desktops to resync, ...). Read on a lean connection
(:meth:`hotline.lane.Lane.subscribe`: a few µs a message, no task per message) when the client
allows one, else through redis-py, whose own silent re-subscription counts as a gap too.
Re-subscribes with backoff; one failing message or handler never ends it.

Used by the ACD nodes (``acd.cluster.PeerListener``) and the CTI's event hub (``cti.events``).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Optional

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from .lane import Subscription, open_lane
from .tasks import stop_task

__all__ = ["Subscriber"]

log = logging.getLogger(__name__)


class Subscriber:
    def __init__(self, redis: Redis, channels: list[str], on_message: Callable[[str, Any], None], *,
                 on_gap: Callable[[], None] = lambda: None, lean: bool = True, name: str = "subscription",
                 first_backoff_s: float = 0.2, max_backoff_s: float = 5.0, read_timeout_s: float = 5.0) -> None:
        self.redis = redis
        self.channels = list(channels)
        self.on_message = on_message
        self.on_gap = on_gap
        self.name = name
        self.first_backoff_s, self.max_backoff_s = first_backoff_s, max_backoff_s
        self.read_timeout_s = read_timeout_s
        self.lane = open_lane(redis) if lean else None
        self._lean: Optional[Subscription] = None
        self._pubsub: Optional[PubSub] = None
        self._task: Optional[asyncio.Task] = None

    @property
    def lean(self) -> bool:
        """Reading on the lean connection (else through redis-py)."""
        return self.lane is not None

    @property
    def connected(self) -> bool:
        return self._lean is not None or self._pubsub is not None

    async def start(self, timeout: float = 5.0, *, must_subscribe: bool = True) -> None:
        """Subscribe (so that nothing published from now on is missed), then read in a task. If
        that fails within ``timeout``: raised, or with ``must_subscribe=False`` logged, and the
        task keeps trying with backoff."""
        try:
            async with asyncio.timeout(timeout):
                await self._subscribe()
        except Exception as exc:  # noqa: BLE001 - Redis down at start: retried below when allowed
            await self._close()
            if must_subscribe:
                raise
            log.warning("%s: cannot subscribe yet (%s); will retry", self.name, str(exc) or type(exc).__name__)
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)
        await self._close()

    async def _subscribe(self) -> None:
        if self.lane is not None:
            self._lean = await self.lane.subscribe(self.channels, self.on_message)
            return
        pubsub = self.redis.pubsub()
        self._pubsub = pubsub
        await pubsub.subscribe(*self.channels)
        # Wait for the confirmations: from here on, every publish reaches us.
        confirmed = 0
        while confirmed < len(self.channels):
            message = await pubsub.get_message(timeout=1.0)
            if message is not None and message.get("type") == "subscribe":
                confirmed += 1
        # redis-py may also reconnect and re-subscribe by itself, silently: that is a gap too.
        if pubsub.connection is not None:
            pubsub.connection.register_connect_callback(self._reconnected)

    def _reconnected(self, connection) -> None:
        log.info("%s: re-subscribed by the client; messages may have been missed", self.name)
        self.on_gap()

    async def _close(self) -> None:
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
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass

    async def _run(self) -> None:
        delay = self.first_backoff_s
        while True:
            try:
                if not self.connected:
                    async with asyncio.timeout(max(self.read_timeout_s, 2.0)):
                        await self._subscribe()
                    delay = self.first_backoff_s
                    self.on_gap()
                if self._lean is not None:
                    raise await self._lean.lost         # messages are handed over as they are read
                assert self._pubsub is not None         # (subscribed above)
                message = await self._pubsub.get_message(ignore_subscribe_messages=True,
                                                         timeout=self.read_timeout_s)
                delay = self.first_backoff_s
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the subscription must outlive any one failure
                log.warning("%s: subscription lost (%s); subscribing again in %.1fs", self.name,
                            str(exc) or type(exc).__name__, delay)
                await self._close()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)
                continue
            if message is None or message.get("type") != "message":
                continue
            try:
                self.on_message(message["channel"], message["data"])
            except Exception:  # noqa: BLE001 - one bad message must not end the subscription
                log.exception("%s: message not handled: %r", self.name, str(message.get("data"))[:200])
