"""Starting the CTI service: the web application on ``settings.cti_host``:``settings.cti_port``."""
from __future__ import annotations

import logging
from typing import Any, Optional

from aiohttp import web

from .app import CtiAccess, make_app
from .tickets.calendar import CalendarError
from .tickets.catalogue import CatalogueError
from .tickets.wiring import tickets_config

__all__ = ["CTIError", "access_from", "bound_port", "cti_urls", "run_cti"]

log = logging.getLogger("cti.service")

SHUTDOWN_TIMEOUT_S = 5.0


class CTIError(OSError):
    """The CTI cannot start (port taken, bad address, a bad ticket catalogue or holiday calendar); the
    message is one line.

    An OSError, so that a caller that reports OSErrors in one line (the ``hotline``
    command does) needs nothing more.
    """


def access_from(settings: Any, acd_url: Optional[str] = None) -> CtiAccess:
    """Who may reach what, from the settings (the ACD's API where the settings put it, or ``acd_url``)."""
    return CtiAccess(acd_url=acd_url or f"http://{_host(settings.acd_host)}:{settings.acd_port}",
                     service_token=settings.service_token, public_health=settings.public_health,
                     metrics_from=tuple(settings.metrics_from), allowed_origins=tuple(settings.cti_allowed_origins),
                     cookie_secure=settings.cti_cookie_secure, access_ttl_s=settings.auth_access_ttl_s,
                     session_ttl_s=settings.auth_session_ttl_s)


async def run_cti(settings: Any, stores: Any, *, ami: Optional[Any] = None,
                  acd_url: Optional[str] = None) -> web.AppRunner:
    """Serve the CTI and return its runner; the caller must ``await runner.cleanup()``.

    ``settings`` is a :class:`hotline.settings.Settings` (``cti_host``, ``cti_port`` and the access
    settings are read), ``stores`` a :class:`hotline.stores.Stores` (``redis``, ``pool``); both stay
    the caller's. Port 0 picks a free port: read it back with :func:`bound_port`.
    """
    try:
        tickets = tickets_config(settings)
    except (CatalogueError, CalendarError) as exc:
        raise CTIError(str(exc)) from None
    runner = web.AppRunner(make_app(stores.redis, stores.pool, ami=ami, access=access_from(settings, acd_url),
                                    tickets=tickets),
                           access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.cti_host, settings.cti_port)
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise CTIError(f"cti http://{_host(settings.cti_host)}:{settings.cti_port}: cannot listen "
                       f"({exc.strerror or exc})") from None
    urls = cti_urls(settings, port=bound_port(runner))
    log.info("CTI ready: desktop %s, wallboard %s, metrics %s", urls["desktop"], urls["wallboard"], urls["metrics"])
    return runner


def bound_port(runner: web.AppRunner) -> Optional[int]:
    """The port the runner actually listens on (useful with ``cti_port`` 0)."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return None


def _host(host: str) -> str:
    """An address a browser can open: a wildcard becomes loopback, IPv6 gets brackets."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def cti_urls(settings: Any, *, port: Optional[int] = None) -> dict[str, str]:
    """Where people and tools find the CTI: desktop, wallboard, API, metrics (and health)."""
    base = f"http://{_host(settings.cti_host)}:{port or settings.cti_port}"
    return {
        "desktop": f"{base}/desktop",
        "wallboard": f"{base}/wallboard",
        "api": f"{base}/api/v1/docs",
        "openapi": f"{base}/api/v1/openapi.json",
        "health": f"{base}/api/v1/health",
        "metrics": f"{base}/metrics",
    }
