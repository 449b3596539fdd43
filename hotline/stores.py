"""Opening the stores every service needs: PostgreSQL (with migrations) and Redis.

With no address configured, embedded servers are started in the data directory. Every
failure becomes one :class:`StoreError` line that names the store and the reason.
"""
from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator, Optional
from urllib.parse import urlsplit

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import RedisError

from .db import DatabaseError, connect_pool, upgrade
from .embedded import EmbeddedPostgres, EmbeddedRedis, EmbeddedStoreError
from .settings import Settings

__all__ = ["Stores", "StoreError", "open_database", "open_stores", "connect_redis"]

log = logging.getLogger(__name__)


class StoreError(Exception):
    """A store cannot be reached or started; the message is one line."""


@dataclass
class Stores:
    database_url: str
    redis_url: str
    pool: asyncpg.Pool
    redis: Redis
    embedded: bool


async def connect_redis(url: str, timeout: float = 5.0) -> Redis:
    client = Redis.from_url(url, decode_responses=True, socket_connect_timeout=timeout,
                            socket_timeout=30, health_check_interval=15)
    try:
        await asyncio.wait_for(client.ping(), timeout)
    except (RedisError, OSError, asyncio.TimeoutError) as exc:
        await client.aclose()
        parts = urlsplit(url)
        raise StoreError(f"redis {parts.hostname}:{parts.port or 6379}: cannot connect "
                         f"({str(exc) or type(exc).__name__})") from None
    return client


@asynccontextmanager
async def open_stores(settings: Settings, *, migrate: bool = True) -> AsyncIterator[Stores]:
    """Start or connect PostgreSQL and Redis, apply migrations, and close all on exit."""
    started: list = []
    pool: Optional[asyncpg.Pool] = None
    redis: Optional[Redis] = None
    try:
        database_url, redis_url = settings.database_url, settings.redis_url
        if database_url is None:
            pg = EmbeddedPostgres(settings.data_dir.resolve() / "postgres")
            await pg.start()
            started.append(pg)
            database_url = pg.url
        if redis_url is None:
            rd = EmbeddedRedis(settings.data_dir.resolve() / "redis")
            await rd.start()
            started.append(rd)
            redis_url = rd.url
        pool = await connect_pool(database_url, timeout=settings.db_connect_timeout_s)
        if migrate:
            await upgrade(database_url)
        redis = await connect_redis(redis_url)
        yield Stores(database_url, redis_url, pool, redis, embedded=bool(started))
    except (DatabaseError, EmbeddedStoreError) as exc:
        raise StoreError(str(exc)) from None
    finally:
        if redis is not None:
            await redis.aclose()
        if pool is not None:
            await pool.close()
        for server in reversed(started):
            await server.stop()


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """PostgreSQL alone, migrated (the command-line tools that only need the records and users)."""
    server: Optional[EmbeddedPostgres] = None
    pool: Optional[asyncpg.Pool] = None
    try:
        database_url = settings.database_url
        if database_url is None:
            server = EmbeddedPostgres(settings.data_dir.resolve() / "postgres")
            await server.start()
            database_url = server.url
        pool = await connect_pool(database_url, timeout=settings.db_connect_timeout_s)
        await upgrade(database_url)
        yield pool
    except (DatabaseError, EmbeddedStoreError) as exc:
        raise StoreError(str(exc)) from None
    finally:
        if pool is not None:
            await pool.close()
        if server is not None:
            await server.stop()
