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

__all__ = ["Database", "Stores", "StoreError", "open_database", "open_stores", "connect_redis"]

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


@dataclass
class Database:
    url: str
    pool: asyncpg.Pool
    embedded: bool


@asynccontextmanager
async def open_database(settings: Settings, *, migrate: bool = True) -> AsyncIterator[Database]:
    """PostgreSQL (started embedded in the data directory when no address is set), migrated."""
    server: Optional[EmbeddedPostgres] = None
    pool: Optional[asyncpg.Pool] = None
    try:
        database_url = settings.database_url
        if database_url is None:
            server = EmbeddedPostgres(settings.data_dir.resolve() / "postgres")
            await server.start()
            database_url = server.url
        pool = await connect_pool(database_url, timeout=settings.db_connect_timeout_s)
        if migrate:
            await upgrade(database_url)
        yield Database(database_url, pool, embedded=server is not None)
    except (DatabaseError, EmbeddedStoreError) as exc:
        raise StoreError(str(exc)) from None
    finally:
        if pool is not None:
            await pool.close()
        if server is not None:
            await server.stop()


@asynccontextmanager
async def open_stores(settings: Settings, *, migrate: bool = True) -> AsyncIterator[Stores]:
    """Start or connect PostgreSQL and Redis, apply migrations, and close all on exit."""
    async with open_database(settings, migrate=migrate) as database:
        server: Optional[EmbeddedRedis] = None
        redis: Optional[Redis] = None
        try:
            redis_url = settings.redis_url
            if redis_url is None:
                server = EmbeddedRedis(settings.data_dir.resolve() / "redis")
                await server.start()
                redis_url = server.url
            redis = await connect_redis(redis_url)
            yield Stores(database.url, redis_url, database.pool, redis,
                         embedded=database.embedded or server is not None)
        except EmbeddedStoreError as exc:
            raise StoreError(str(exc)) from None
        finally:
            if redis is not None:
                await redis.aclose()
            if server is not None:
                await server.stop()
