"""Background tasks of the services."""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Coroutine, Optional

__all__ = ["Background", "stop_task"]

log = logging.getLogger(__name__)


async def stop_task(task: Optional[asyncio.Task]) -> None:
    """Stop a background loop and wait until it has."""
    if task is not None:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass


class Background:
    """The short tasks a service starts from event handlers (a write, an AMI action): kept, so
    that they are not collected half-way, their failures are logged, and a caller can wait until
    none is left (tests, shut-down)."""

    def __init__(self, name: str = "service") -> None:
        self.name = name
        self._tasks: set[asyncio.Task] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s task failed", self.name, exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    async def wait_idle(self) -> None:
        """Until no task is left (tasks started meanwhile included)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
