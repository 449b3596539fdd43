"""What the ACD could not write while Redis was down, written when it answers again: finished call
records (then the outbox takes them to PostgreSQL) and agents' states with their history rows.

Every part that meets a Redis failure keeps its change in memory and calls :meth:`WriteBack.failed`;
one loop retries until all of it is in Redis, then routing runs again (``on_written``).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable, Optional

from redis.asyncio import Redis
from redis.exceptions import RedisError

from hotline.keys import Keys

from .agents import AgentDirectory

__all__ = ["WriteBack"]

log = logging.getLogger(__name__)


class WriteBack:
    def __init__(self, redis: Redis, directory: AgentDirectory, *, interval_s: float = 0.5) -> None:
        self.redis = redis
        self.directory = directory
        self.interval_s = interval_s
        self.records: list[str] = []            # outbox rows of finished calls Redis could not take yet
        self.on_written: Callable[[], None] = lambda: None
        self._task: Optional[asyncio.Task] = None

    def keep_record(self, row: str) -> None:
        self.records.append(row)
        self.failed()

    def failed(self) -> None:
        """Something is kept in memory: write it back once Redis answers."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._write_back())

    @property
    def writing(self) -> bool:
        """The loop that writes back what is kept is running."""
        return self._task is not None and not self._task.done()

    @property
    def pending(self) -> bool:
        return bool(self.records or self.directory.dirty or self.directory.unsaved_rows)

    async def _write_back(self) -> None:
        while self.pending:
            await asyncio.sleep(self.interval_s)
            try:
                if self.records:
                    await self.redis.rpush(Keys.outbox, *self.records)
                    log.info("%d call record(s) handed to the outbox after a Redis outage", len(self.records))
                    self.records.clear()
                await self.directory.save_dirty()
            except (RedisError, OSError):
                continue
        self.on_written()

    async def close(self, timeout: float = 10.0) -> None:
        """Wait (up to ``timeout``) for what is kept to be written."""
        if self._task is None or self._task.done():
            return
        try:
            await asyncio.wait_for(self._task, timeout)
        except asyncio.TimeoutError:
            log.error("Redis still down at shutdown: %d call record(s) not saved: %s",
                      len(self.records), self.records)
