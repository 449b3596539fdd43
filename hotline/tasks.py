"""Background tasks of the services."""
from __future__ import annotations

import asyncio
from typing import Optional

__all__ = ["stop_task"]


async def stop_task(task: Optional[asyncio.Task]) -> None:
    """Stop a background loop and wait until it has."""
    if task is not None:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
