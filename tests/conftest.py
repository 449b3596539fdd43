"""Shared fixtures: a real PostgreSQL and a real Redis, embedded from PyPI wheels, per test session."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from hotline.db import upgrade
from hotline.embedded import EmbeddedPostgres, EmbeddedRedis

REPO = Path(__file__).resolve().parents[1]


@pytest_asyncio.fixture(scope="session")
async def pg_url(tmp_path_factory) -> str:
    """URL of a migrated PostgreSQL (HOTLINE_TEST_DATABASE_URL to use an existing one)."""
    url = os.environ.get("HOTLINE_TEST_DATABASE_URL")
    server = None
    if not url:
        # Not under pytest's basetemp: pytest keeps that 0700, and when we are root PostgreSQL
        # runs as an unprivileged user that must reach its data directory.
        data = Path(tempfile.mkdtemp(prefix="hotline-test-pg-"))
        server = EmbeddedPostgres(data)
        await server.start()
        url = server.url
    await upgrade(url)
    yield url
    if server is not None:
        await server.stop()
        shutil.rmtree(data, ignore_errors=True)


@pytest_asyncio.fixture(scope="session")
async def redis_url(tmp_path_factory) -> str:
    url = os.environ.get("HOTLINE_TEST_REDIS_URL")
    server = None
    if not url:
        server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
        await server.start()
        url = server.url
    yield url
    if server is not None:
        await server.stop()


@pytest_asyncio.fixture
async def redis(redis_url) -> Redis:
    """A clean Redis database for one test."""
    client = Redis.from_url(redis_url, decode_responses=True)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def pool(pg_url) -> asyncpg.Pool:
    """A connection pool on emptied tables for one test."""
    pool = await asyncpg.create_pool(pg_url, min_size=1, max_size=5)
    await pool.execute("TRUNCATE calls, agents, agent_states, users, sessions, audit RESTART IDENTITY CASCADE")
    yield pool
    await pool.close()
