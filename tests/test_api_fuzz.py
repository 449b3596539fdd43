"""A property-based fuzz of /api/v1 from its own OpenAPI document (schemathesis): whatever the
parameters and bodies, no request gets a 5xx. The CTI runs with the ACD's API behind it (agents'
verbs really reach the ACD), in a thread of its own, on the session's PostgreSQL and Redis."""
from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from typing import Any, Optional

import asyncpg
import pytest
import schemathesis
from aiohttp import web
from aiohttp.test_utils import unused_port
from hypothesis import HealthCheck, Phase, settings
from redis.asyncio import Redis
from schemathesis.checks import not_a_server_error

from acd.agents import AgentDirectory
from acd.http import make_acd_app
from acd.service import build_core
from cti.app import CtiAccess, make_app
from cti.v1 import API
from hotline.auth import Role, SessionStore
from hotline.auth.sessions import SessionStore as Sessions
from hotline.web.security import Authenticator

from .auth_helpers import make_user

SERVICE_TOKEN = "f" * 40
schema = schemathesis.openapi.from_dict(API.openapi())


class Hotline:
    """The CTI and the ACD's API on a loop of their own thread (schemathesis calls are blocking)."""

    def __init__(self, pg_url: str, redis_url: str) -> None:
        self.pg_url, self.redis_url = pg_url, redis_url
        self.cti_port, self.acd_port = unused_port(), unused_port()
        self.loop = asyncio.new_event_loop()
        self.ready: Future = Future()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self.loop.run_forever()

    async def _start(self) -> None:
        try:
            self.pool = await asyncpg.create_pool(self.pg_url, min_size=1, max_size=5)
            self.redis = Redis.from_url(self.redis_url, decode_responses=True)
            await self.redis.flushdb()
            await self.pool.execute("TRUNCATE users, sessions, audit, calls, agents, agent_states "
                                    "RESTART IDENTITY CASCADE")
            directory = AgentDirectory(self.redis)
            await directory.upsert("1001", "Agent 1001", "general", {"mandarin": 5})
            core = build_core(None, self.redis, directory)
            self.sessions = SessionStore(self.pool, self.redis)
            acd = make_acd_app(core.agents, core.assignment, self.redis,
                               Authenticator(Sessions(self.pool, self.redis), service_token=SERVICE_TOKEN))
            cti = make_app(self.redis, self.pool, access=CtiAccess(
                acd_url=f"http://127.0.0.1:{self.acd_port}", service_token=SERVICE_TOKEN))
            self.runners = []
            for app, port in ((acd, self.acd_port), (cti, self.cti_port)):
                runner = web.AppRunner(app, access_log=None)
                await runner.setup()
                await web.TCPSite(runner, "127.0.0.1", port).start()
                self.runners.append(runner)
            self.admin = await make_user(self.pool, Role.ADMIN)
            self.ready.set_result(True)
        except BaseException as exc:       # noqa: BLE001 - reported to the test, not lost in the thread
            self.ready.set_exception(exc)

    def token(self) -> str:
        async def open_session() -> str:
            from hotline.auth import UserStore
            user = await UserStore(self.pool).get(self.admin)
            assert user is not None
            return (await self.sessions.open(user)).access_token
        return asyncio.run_coroutine_threadsafe(open_session(), self.loop).result(10)

    def stop(self) -> None:
        async def stop() -> None:
            for runner in reversed(self.runners):
                await runner.cleanup()
            await self.pool.close()
            await self.redis.aclose()
        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def hotline(pg_url, redis_url):
    server = Hotline(pg_url, redis_url)
    server.thread.start()
    server.ready.result(60)
    yield server
    server.stop()


@schema.parametrize()
@settings(max_examples=20, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error(case: Any, hotline: Optional[Hotline]) -> None:
    assert hotline is not None
    # A fresh admin session for every request: an operation may end it (sign-out, a password).
    headers = {"Authorization": f"Bearer {hotline.token()}"}
    case.call_and_validate(base_url=f"http://127.0.0.1:{hotline.cti_port}", headers=headers,
                           checks=[not_a_server_error], timeout=10)
