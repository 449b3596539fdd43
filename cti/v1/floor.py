"""/api/v1/live and /api/v1/health: the floor as it is now, and whether the stores answer."""
from __future__ import annotations

import asyncio
import time

import asyncpg
from aiohttp import web
from redis.exceptions import RedisError

from hotline.auth.roles import Role
from hotline.web.api import ApiError, Request

from ..appkeys import KPIS, POOL, PUBLIC_HEALTH, REDIS
from ..live import live_snapshot
from .base import ANY_ROLE, API, json_answer
from .schemas import Health, Live

HEALTH_TIMEOUT_S = 2.0


@API.endpoint("GET", "/live", roles=(Role.AGENT, Role.SUPERVISOR, Role.OPS, Role.ADMIN), tag="floor", response=Live,
              summary="The wallboard's picture: calls waiting per queue, agents per state, today's KPIs (counts "
                      "only: no caller's data)")
async def live(request: Request) -> web.Response:
    snapshot, today = await asyncio.gather(live_snapshot(request.app[REDIS], time.time()), request.app[KPIS].get())
    return json_answer({**snapshot, "today": today})


@API.endpoint("GET", "/health", roles=None, tag="floor", response=Health, statuses=(503,),
              summary="Whether Redis and PostgreSQL answer (open, or signed-in only: setting public_health)")
async def health(request: Request) -> web.Response:
    if not request.app[PUBLIC_HEALTH]:
        if request.principal is None:
            raise ApiError(401, "sign in first (POST /api/v1/auth/sign-in)")
        if not request.principal.has(*ANY_ROLE):
            raise ApiError(403, "not allowed")

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
    return json_answer({"redis": redis, "postgres": postgres}, status=200 if redis and postgres else 503)
