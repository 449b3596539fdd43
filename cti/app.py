"""The CTI web application: the API (``/api/v1``, cti/v1/), the pages, the desktops' WebSocket,
/metrics, and the checks every request passes (hotline/web/security.py: who is asking; the CSRF
token and Origin of a page's request).

==================================  ==========================================================
``/api/v1/...``                     the API; its OpenAPI document at ``/api/v1/openapi.json``,
                                    browsable at ``/api/v1/docs``
``GET /api/v1/ws/agent/{agent_id}`` the agent desktop's WebSocket (see :mod:`cti.desktop`)
``GET /metrics``                    Prometheus text, to the addresses of ``metrics_from``
``GET /desktop``, ``/wallboard``    the pages (``cti/static``); they sign in through the API
==================================  ==========================================================

The clients (Redis, PostgreSQL pool, AMI) are the caller's: the application uses them and
never closes them. What it opens itself (the pub/sub subscription, the sockets, its client of
the ACD) it closes in ``cleanup_ctx``; open desktops are also closed in ``on_shutdown`` so that
a stopping server does not wait for them until its shutdown timeout.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Optional, Sequence

import asyncpg
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from hotline.auth import AuditLog, SessionStore, SignInLimiter, UserStore
from hotline.web.security import Authenticator

from . import v1
from .acd_client import AcdClient
from .appkeys import (ACD, ALLOWED_ORIGINS, AMI, AUDIT, COOKIE_SECURE, HUB, KPIS, LIMITER, METRICS, METRICS_FROM,
                      POOL, PUBLIC_HEALTH, REDIS, SESSION_CHECK, SESSIONS, SOCKETS, USERS)
from .desktop import SESSION_CHECK_S, agent_socket, close_all
from .events import EventHub
from .metrics import CONTENT_TYPE_LATEST, LiveCollector
from .records import TodayKpis
from .tickets.wiring import TicketsConfig, install as install_tickets

__all__ = ["CtiAccess", "make_app", "AMI", "HUB", "KPIS", "METRICS", "POOL", "REDIS", "SOCKETS"]

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


@dataclass(frozen=True)
class CtiAccess:
    """Who may reach what (from the settings)."""
    acd_url: str = "http://127.0.0.1:8081"
    service_token: Optional[str] = None          # shared with the ACD (its API refuses anything else)
    public_health: bool = True
    metrics_from: Sequence[str] = ("127.0.0.1/32", "::1/128")
    allowed_origins: Sequence[str] = ()
    cookie_secure: Optional[bool] = None
    access_ttl_s: float = 900.0
    session_ttl_s: float = 43200.0


def make_app(redis: Redis, pool: asyncpg.Pool, *, ami: Optional[Any] = None, kpi_ttl_s: float = 2.0,
             access: CtiAccess = CtiAccess(), max_body: int = 2 * 1024 * 1024,
             session_check_s: float = SESSION_CHECK_S, tickets: Optional[TicketsConfig] = None) -> web.Application:
    """The CTI application on the caller's clients.

    ``redis`` must decode responses to ``str`` (as :func:`hotline.stores.connect_redis`
    does); ``ami`` (a :class:`hotline.ami.AMIClient`) is kept for the actions to come; ``tickets``:
    the ticket hand-off's files and delivery (cti/tickets; default: shipped files, no delivery).
    """
    if not redis.connection_pool.connection_kwargs.get("decode_responses"):
        raise ValueError("make_app: the Redis client must be created with decode_responses=True")
    sessions = SessionStore(pool, redis, access_ttl_s=access.access_ttl_s, session_ttl_s=access.session_ttl_s)
    authenticator = Authenticator(sessions, service_token=access.service_token,
                                  allowed_origins=access.allowed_origins)
    app = web.Application(middlewares=[_errors, authenticator.middleware], client_max_size=max_body)
    app[SESSIONS] = sessions
    app[USERS] = UserStore(pool, sessions)
    app[AUDIT] = AuditLog(pool, redis)
    app[LIMITER] = SignInLimiter(redis)
    app[ACD] = AcdClient(access.acd_url, access.service_token)
    app[PUBLIC_HEALTH] = access.public_health
    app[METRICS_FROM] = tuple(ipaddress.ip_network(net, strict=False) for net in access.metrics_from)
    app[COOKIE_SECURE] = access.cookie_secure
    app[ALLOWED_ORIGINS] = tuple(access.allowed_origins)
    app[SESSION_CHECK] = session_check_s
    app[REDIS] = redis
    app[POOL] = pool
    app[AMI] = ami
    app[HUB] = EventHub(redis)
    app[SOCKETS] = weakref.WeakSet()
    app[KPIS] = TodayKpis(pool, ttl_s=kpi_ttl_s)
    app[METRICS] = LiveCollector(redis, app[KPIS], desktops=lambda: len(app[SOCKETS]))
    app.cleanup_ctx.append(_event_hub)
    app.cleanup_ctx.append(_acd_client)
    install_tickets(app, redis, pool, tickets or TicketsConfig())
    app.on_shutdown.append(close_all)
    app.add_routes(v1.API.routes())
    app.add_routes([
        web.get("/metrics", metrics),
        web.get("/desktop", desktop_page),
        web.get("/wallboard", wallboard_page),
        web.get("/static/session.js", session_script),
        web.get("/api/v1/ws/agent/{agent_id}", agent_socket),
    ])
    return app


async def _acd_client(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[ACD].close()


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


async def session_script(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "session.js", headers=PAGE_HEADERS)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text, to the scrapers' addresses only (setting metrics_from)."""
    try:
        address = ipaddress.ip_address((request.remote or "").split("%")[0])
    except ValueError:
        address = None
    if address is None or not any(address in net for net in request.app[METRICS_FROM]):
        return web.json_response({"error": "metrics are served to the Prometheus addresses only (metrics_from)"},
                                 status=403)
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
