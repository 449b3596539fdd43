"""Starting the IVR service: the menus checked, then the FastAGI server with the hotline's handlers."""
from __future__ import annotations

import logging
from typing import Any

from .app import build_handlers, default_services
from .fastagi import FastAGIServer
from .menu import MENUS_DIR, MenuError, load_lines

__all__ = ["run_ivr", "MenuError"]

log = logging.getLogger("ivr.service")


async def run_ivr(settings: Any, redis: Any) -> FastAGIServer:
    """Start the FastAGI server on ``settings.agi_host``:``settings.agi_port``.

    The menus (``settings.ivr_menus_dir``, default ``ivr/menus``) are loaded and
    checked first: with a problem the IVR does not start and :class:`MenuError`
    lists every problem, one line each. ``settings`` is a
    :class:`hotline.settings.Settings`; ``redis`` a ``redis.asyncio`` client or
    None. The caller owns the returned server and must ``await server.stop()``.
    """
    menus_dir = getattr(settings, "ivr_menus_dir", None) or MENUS_DIR
    lines = load_lines(menus_dir)
    services = default_services(getattr(settings, "tickets_url", None), getattr(settings, "tickets_timeout_s", 1.5))
    handlers = build_handlers(redis, lines=lines, services=services)
    server = FastAGIServer(handlers, host=settings.agi_host, port=settings.agi_port)
    await server.start()
    log.info("IVR ready on agi://%s:%d/ivr (lines: %s)", settings.agi_host, server.port, ", ".join(sorted(lines)))
    return server
