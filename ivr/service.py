"""Starting the IVR service: the FastAGI server with the hotline's handlers."""
from __future__ import annotations

import logging
from typing import Any

from .app import build_handlers
from .fastagi import FastAGIServer

__all__ = ["run_ivr"]

log = logging.getLogger("ivr.service")


async def run_ivr(settings: Any, redis: Any) -> FastAGIServer:
    """Start the FastAGI server on ``settings.agi_host``:``settings.agi_port``.

    ``settings`` is a :class:`hotline.settings.Settings` (only those two
    attributes are read); ``redis`` a ``redis.asyncio`` client or None. The
    caller owns the returned server and must ``await server.stop()``.
    """
    server = FastAGIServer(build_handlers(redis), host=settings.agi_host, port=settings.agi_port)
    await server.start()
    log.info("IVR ready on agi://%s:%d/ivr", settings.agi_host, server.port)
    return server
