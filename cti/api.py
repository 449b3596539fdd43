"""``/api/*``: health, call records, KPIs, agents and the wallboard's live picture (JSON).

Every query parameter is checked here; a bad one is answered ``400 {"error": "..."}`` with
a message that names the parameter.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import datetime
from functools import partial
from typing import Any, Optional

import asyncpg
from aiohttp import web
from redis.exceptions import RedisError

from hotline.stats import call_summary

from .appkeys import KPIS, POOL, REDIS
from .live import live_snapshot, read_agents
from .records import recent_calls

__all__ = ["ParamError", "json_response", "parse_limit", "parse_time", "routes"]

routes = web.RouteTableDef()

MAX_LIMIT = 500
HEALTH_TIMEOUT_S = 2.0
QUERY_TIMEOUT_S = 15.0
AGENT_PARAM = re.compile(r"[0-9]{1,16}")
# '+' in an unencoded query string arrives as a space: "2025-01-01T08:00:00 08:00".
_SPACED_OFFSET = re.compile(r"^(.*\d) (\d{2}(?::?\d{2})?)$")

dumps = partial(json.dumps, ensure_ascii=False)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=dumps)


class ParamError(web.HTTPBadRequest):
    """A query parameter is missing or wrong: 400 with a JSON body naming it."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(text=dumps({"error": f"parameter '{name}': {message}", "parameter": name}),
                         content_type="application/json")


def parse_limit(request: web.Request, name: str = "limit", default: int = 50, maximum: int = MAX_LIMIT) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 6:
        raise ParamError(name, f"must be a whole number from 1 to {maximum}")
    value = int(raw)
    if not 1 <= value <= maximum:
        raise ParamError(name, f"must be from 1 to {maximum}, got {value}")
    return value


def parse_time(request: web.Request, name: str) -> Optional[datetime]:
    """An ISO 8601 date or date-time; without an offset it is the server's local time."""
    raw = request.query.get(name)
    if raw is None or raw.strip() == "":
        return None
    text = raw.strip()
    if len(text) > 40 or not text.isascii():
        raise ParamError(name, "must be an ISO 8601 date-time such as 2025-01-31T08:00:00+08:00")
    text = _SPACED_OFFSET.sub(r"\1+\2", text) if "T" in text else text
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ParamError(name, f"{_shown(raw)} is not an ISO 8601 date-time "
                               "(e.g. 2025-01-31 or 2025-01-31T08:00:00+08:00)") from None
    if not 1970 <= value.year <= 2200:
        raise ParamError(name, f"{_shown(raw)} is out of range (years 1970 to 2200)")
    return value.astimezone() if value.tzinfo is None else value


def _shown(raw: str) -> str:
    return repr(raw if len(raw) <= 40 else raw[:40] + "…")


def _agent_param(request: web.Request) -> Optional[str]:
    raw = request.query.get("agent")
    if raw is None or raw == "":
        return None
    if not AGENT_PARAM.fullmatch(raw):
        raise ParamError("agent", "must be an agent id (digits only)")
    return raw


# ---- routes --------------------------------------------------------------------------------
@routes.get("/api/health")
async def health(request: web.Request) -> web.Response:
    """Whether Redis and PostgreSQL answer now; 503 when either does not."""

    async def redis_ok() -> bool:
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_S):
                return bool(await request.app[REDIS].ping())
        except (RedisError, OSError, asyncio.TimeoutError):
            return False

    async def postgres_ok() -> bool:
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_S):
                return await request.app[POOL].fetchval("SELECT 1") == 1
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncio.TimeoutError):
            return False

    redis, postgres = await asyncio.gather(redis_ok(), postgres_ok())
    return json_response({"redis": redis, "postgres": postgres}, status=200 if redis and postgres else 503)


@routes.get("/api/calls")
async def calls(request: web.Request) -> web.Response:
    """Recent call records, newest first: ``limit`` (1..500, default 50), ``since``, ``agent``."""
    limit = parse_limit(request)
    since = parse_time(request, "since")
    agent = _agent_param(request)
    async with asyncio.timeout(QUERY_TIMEOUT_S):
        rows = await recent_calls(request.app[POOL], limit=limit, since=since, agent=agent)
    return json_response({"calls": rows, "count": len(rows), "limit": limit})


@routes.get("/api/stats")
async def stats(request: web.Request) -> web.Response:
    """hotline.stats.call_summary over calls that arrived in [since, until)."""
    since = parse_time(request, "since")
    until = parse_time(request, "until")
    if since is not None and until is not None and until <= since:
        raise ParamError("until", "must be later than 'since'")
    async with asyncio.timeout(QUERY_TIMEOUT_S):
        summary = await call_summary(request.app[POOL], since=since, until=until)
    return json_response({"since": since.isoformat() if since else None,
                          "until": until.isoformat() if until else None, **summary})


@routes.get("/api/agents")
async def agents(request: web.Request) -> web.Response:
    rows = await read_agents(request.app[REDIS])
    return json_response({"agents": rows, "count": len(rows)})


@routes.get("/api/live")
async def live(request: web.Request) -> web.Response:
    """The wallboard's picture: Redis now, plus today's KPIs (null while PostgreSQL is away)."""
    snapshot, today = await asyncio.gather(live_snapshot(request.app[REDIS], time.time()),
                                           request.app[KPIS].get())
    return json_response({**snapshot, "today": today})
