"""Failed sign-ins are limited: after ``per_user`` failures for one user name, or ``per_address``
from one address, within ``window_s``, further attempts are refused until the window has passed
(429, with when to try again). Counted in Redis, so every CTI process counts the same; in memory
while Redis is down."""
from __future__ import annotations

import logging
import time
from typing import Optional

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..keys import Keys

__all__ = ["SignInLimiter"]

log = logging.getLogger(__name__)


class SignInLimiter:
    def __init__(self, redis: Optional[Redis], *, per_user: int = 5, per_address: int = 20,
                 window_s: int = 300) -> None:
        self.redis = redis
        self.per_user, self.per_address, self.window_s = per_user, per_address, window_s
        self._memory: dict[str, tuple[float, int]] = {}        # key -> (window start, failures)

    def _keys(self, username: str, address: str) -> list[tuple[str, int]]:
        return [(Keys.sign_in_failures(f"user:{username}"), self.per_user),
                (Keys.sign_in_failures(f"addr:{address}"), self.per_address)]

    async def retry_after(self, username: str, address: str) -> Optional[int]:
        """Seconds to wait before this sign-in may be tried, or None."""
        for key, limit in self._keys(username, address):
            count, ttl = await self._read(key)
            if count >= limit:
                return max(1, ttl)
        return None

    async def failed(self, username: str, address: str) -> None:
        for key, _ in self._keys(username, address):
            try:
                if self.redis is None:
                    raise RedisError("no Redis")
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.incr(key)
                    pipe.expire(key, self.window_s, nx=True)
                    await pipe.execute()
            except (RedisError, OSError):
                start, count = self._memory.get(key, (time.monotonic(), 0))
                if time.monotonic() - start > self.window_s:
                    start, count = time.monotonic(), 0
                self._memory[key] = (start, count + 1)

    async def succeeded(self, username: str) -> None:
        key = Keys.sign_in_failures(f"user:{username}")
        self._memory.pop(key, None)
        try:
            if self.redis is not None:
                await self.redis.delete(key)
        except (RedisError, OSError):
            pass

    async def _read(self, key: str) -> tuple[int, int]:
        try:
            if self.redis is None:
                raise RedisError("no Redis")
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.get(key)
                pipe.ttl(key)
                raw, ttl = await pipe.execute()
            count = int(raw or 0)
        except (RedisError, OSError, ValueError):
            count, ttl = 0, 0
        start, remembered = self._memory.get(key, (0.0, 0))
        left = self.window_s - (time.monotonic() - start)
        if remembered and left > 0 and remembered > count:
            return remembered, int(left)
        return count, int(ttl if ttl and ttl > 0 else 0)
