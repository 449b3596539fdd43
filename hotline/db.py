"""PostgreSQL: connection pool and versioned schema migrations.

Migrations are plain SQL files in ``hotline/migrations`` applied by yoyo-migrations,
which records what ran in its own table; ``hotline db upgrade`` and every service start
apply what is missing.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

__all__ = ["DatabaseError", "MIGRATIONS_DIR", "connect_pool", "upgrade", "pending_migrations"]

log = logging.getLogger(__name__)
MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class DatabaseError(Exception):
    """PostgreSQL is unreachable or refused us; the message is one line."""


def _describe_target(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or ''}"


def _yoyo_url(url: str) -> str:
    # yoyo picks the driver from the scheme; psycopg 3 ships binary wheels.
    scheme, rest = url.split("://", 1)
    return "postgresql+psycopg://" + rest


def _apply(url: str, apply: bool) -> list[str]:
    from yoyo import get_backend, read_migrations

    backend = get_backend(_yoyo_url(url))
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with backend.lock():
        todo = backend.to_apply(migrations)
        ids = [m.id for m in todo]
        if apply and todo:
            backend.apply_migrations(todo)
    return ids


async def upgrade(url: str) -> list[str]:
    """Apply missing migrations; returns the ids applied."""
    try:
        applied = await asyncio.to_thread(_apply, url, True)
    except Exception as exc:  # the driver's errors are many; report one line
        raise DatabaseError(f"database {_describe_target(url)}: migration failed: {str(exc).splitlines()[0]}") from None
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    return applied


async def pending_migrations(url: str) -> list[str]:
    return await asyncio.to_thread(_apply, url, False)


async def connect_pool(url: str, *, timeout: float = 5.0, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """Open a pool, turning 'cannot connect' into one clear DatabaseError line."""
    try:
        return await asyncpg.create_pool(url, min_size=min_size, max_size=max_size, timeout=timeout,
                                         command_timeout=30)
    except (OSError, asyncio.TimeoutError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise DatabaseError(f"database {_describe_target(url)}: cannot connect ({reason})") from None
    except asyncpg.PostgresError as exc:
        raise DatabaseError(f"database {_describe_target(url)}: {exc}") from None
