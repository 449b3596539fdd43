"""The CTI web application: routes, error handling, start-up and shut-down.

==================================  ==========================================================
``GET /api/health``                 ``{"redis": bool, "postgres": bool}`` (503 unless both)
``GET /api/calls``                  recent call records (``limit``, ``since``, ``agent``)
``GET /api/stats``                  :func:`hotline.stats.call_summary` (``since``, ``until``)
``GET /api/agents``                 agents as Redis holds them
``GET /api/live``                   the wallboard's live picture and today's KPIs
``GET /metrics``                    Prometheus text (see :mod:`cti.metrics`)
``GET /desktop``, ``/wallboard``    the two pages (``cti/static``)
``GET /ws/agent/{agent_id}``        the agent desktop's WebSocket (see :mod:`cti.desktop`)
==================================  ==========================================================

The clients (Redis, PostgreSQL pool, AMI) are the caller's: the application uses them and
never closes them. What it opens itself (the pub/sub subscription, the sockets) it closes
in ``cleanup_ctx``; open desktops are also closed in ``on_shutdown`` so that a stopping
server does not wait for them until its shutdown timeout.
"""
from __future__ import annotations

import asyncio
import logging
import weakref
from pathlib import Path
from typing import Any, AsyncIterator, Optional

import asyncpg
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from . import api
from .appkeys import AMI, HUB, KPIS, METRICS, POOL, REDIS, SOCKETS
from .desktop import agent_socket, close_all
from .events import EventHub
from .metrics import CONTENT_TYPE_LATEST, LiveCollector
from .records import TodayKpis

__all__ = ["make_app", "AMI", "HUB", "KPIS", "METRICS", "POOL", "REDIS", "SOCKETS"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Everything from this server, nothing from elsewhere (no CDN).
    "Content-Security-Policy": ("default-src 'self'; script-src 'self' 'unsafe-inline'; "
                                "style-src 'self' 'unsafe-inline'; connect-src 'self' ws: wss:; "
                                "img-src 'self' data:; base-uri 'none'; form-action 'none'"),
}


def make_app(redis: Redis, pool: asyncpg.Pool, *, ami: Optional[Any] = None,
             kpi_ttl_s: float = 2.0) -> web.Application:
    """The CTI application on the caller's clients.

    ``redis`` must decode responses to ``str`` (as :func:`hotline.stores.connect_redis`
    does); ``ami`` (a :class:`hotline.ami.AMIClient`) is kept for the actions to come.
    """
    if not redis.connection_pool.connection_kwargs.get("decode_responses"):
        raise ValueError("make_app: the Redis client must be created with decode_responses=True")
    app = web.Application(middlewares=[_errors])
    app[REDIS] = redis
    app[POOL] = pool
    app[AMI] = ami
    app[HUB] = EventHub(redis)
    app[SOCKETS] = weakref.WeakSet()
    app[KPIS] = TodayKpis(pool, ttl_s=kpi_ttl_s)
    app[METRICS] = LiveCollector(redis, app[KPIS], desktops=lambda: len(app[SOCKETS]))
    app.cleanup_ctx.append(_event_hub)
    app.on_shutdown.append(close_all)
    app.add_routes(api.routes)
    app.add_routes([
        web.get("/metrics", metrics),
        web.get("/desktop", desktop_page),
        web.get("/wallboard", wallboard_page),
        web.get("/ws/agent/{agent_id}", agent_socket),
    ])
    return app


async def _event_hub(app: web.Application) -> AsyncIterator[None]:
    """The one pub/sub subscription of the process, and the desktops it feeds."""
    hub = app[HUB]
    await hub.start()
    yield
    await hub.stop()            # every desktop's event queue ends: they close themselves
    await close_all(app)        # and whatever is left is closed here


# ---- pages and metrics ---------------------------------------------------------------------
async def desktop_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "desktop.html", headers=PAGE_HEADERS)


async def wallboard_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "wallboard.html", headers=PAGE_HEADERS)


async def metrics(request: web.Request) -> web.Response:
    body = await request.app[METRICS].scrape()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# ---- errors --------------------------------------------------------------------------------
@web.middleware
async def _errors(request: web.Request, handler) -> web.StreamResponse:
    """API errors are JSON; a store that is down is a 503 that says which, never a traceback."""
    if request.path.startswith("/ws/"):
        return await handler(request)       # a WebSocket handles its own errors
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if not request.path.startswith("/api/") or exc.status < 400 or exc.content_type == "application/json":
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return web.json_response({"error": exc.reason}, status=exc.status, headers=headers)
    except RedisError as exc:
        log.warning("%s %s: redis: %s", request.method, request.path, exc)
        return web.json_response({"error": "redis unavailable"}, status=503)
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning("%s %s: postgres: %s", request.method, request.path, exc)
        return web.json_response({"error": "postgres unavailable"}, status=503)
    except (OSError, asyncio.TimeoutError) as exc:
        log.warning("%s %s: store unreachable: %s", request.method, request.path, str(exc) or type(exc).__name__)
        return web.json_response({"error": "a store is unreachable or too slow"}, status=503)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return web.json_response({"error": "internal error"}, status=500)
