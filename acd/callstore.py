"""The followed calls' live state in Redis: the call hashes (``hotline:call:<uniqueid>``, laid out
by :class:`hotline.live.LiveCall`), the set of live calls, and a call's place in the queue.

Errors are Redis's own (``RedisError``, ``OSError``): each caller decides what a failed write means.
"""
from __future__ import annotations

import json
import logging
from typing import Optional

from redis.asyncio import Redis
from redis.exceptions import RedisError

from hotline.keys import Keys
from hotline.live import LiveCall

from . import scripts
from .callbook import CallBook
from .router import Router

__all__ = ["CallStore"]

log = logging.getLogger(__name__)

CLAIM = scripts.load("claim")


class CallStore:
    def __init__(self, redis: Redis, router: Router, book: CallBook, node: str) -> None:
        self.redis = redis
        self.router = router
        self.book = book
        self.node = node
        self._claim = redis.register_script(CLAIM)

    async def save(self, call: LiveCall) -> None:
        """The call's live state as it is now."""
        await self.redis.hset(Keys.call(call.uniqueid), mapping=call.to_redis())

    async def claim(self, call: LiveCall, *, taking_from: str = "") -> bool:
        """Save a new call (or one adopted from the dead node ``taking_from``) and follow it, in one
        script: False when another node follows it; the book then lets it go."""
        flat = [item for pair in call.to_redis().items() for item in pair]
        claimed = await self._claim(keys=[Keys.call(call.uniqueid), Keys.calls],
                                    args=[self.node, taking_from, call.uniqueid, *flat])
        if claimed:
            call.owner = self.node
            return True
        log.info("call %s: followed by another node", call.uniqueid)
        self.book.let_go(call)
        return False

    async def announce_waiting(self, call: LiveCall, leaving: str = "") -> None:
        """The call's state saved and announced as waiting (desktops, wallboard); queued before in
        another bucket (``leaving``), it leaves that one, or two agents could be offered it."""
        async with self.redis.pipeline(transaction=True) as pipe:
            if leaving:
                await self.router.withdraw(pipe, call.uniqueid, leaving)
            pipe.hset(Keys.call(call.uniqueid), mapping=call.to_redis())
            pipe.publish(Keys.events, json.dumps({"type": "call_waiting", "uniqueid": call.uniqueid,
                                                  "queue": call.queue, "caller": call.caller}))
            await pipe.execute()

    async def withdraw(self, call: LiveCall) -> None:
        """The call leaves the queue (overflow, a message, the end of a returning caller's wait)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(Keys.waiting, call.uniqueid)
            if call.bucket:
                await self.router.withdraw(pipe, call.uniqueid, call.bucket)
            await pipe.execute()

    async def save_offer(self, call: LiveCall) -> None:
        """What the next announcement offers the caller past the queue's limit (ivr/announce.py)."""
        await self.redis.hset(Keys.call(call.uniqueid), "offer", call.offer)

    async def channel(self, uniqueid: str) -> str:
        return await self.redis.hget(Keys.call(uniqueid), "channel") or ""

    async def last_agent(self, caller: str) -> Optional[str]:
        """The agent who answered this caller last (returning callers), None if unknown or unreadable."""
        try:
            return await self.redis.get(Keys.last_agent(caller))
        except (RedisError, OSError):
            return None

    async def owners(self, uniqueids: list[str]) -> list[Optional[str]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for uid in uniqueids:
                pipe.hget(Keys.call(uid), "owner")
            return list(await pipe.execute())

    async def live(self) -> dict[str, dict[str, str]]:
        """Every live call's hash, by uniqueid (the set ``hotline:calls``)."""
        uids = sorted(await self.redis.smembers(Keys.calls))
        async with self.redis.pipeline(transaction=False) as pipe:
            for uid in uids:
                pipe.hgetall(Keys.call(uid))
            hashes = await pipe.execute()
        return dict(zip(uids, hashes))

    async def forget(self, uniqueid: str) -> None:
        """A call hash no one can read leaves the live set."""
        await self.redis.srem(Keys.calls, uniqueid)
