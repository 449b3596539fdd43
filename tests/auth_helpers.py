"""Signed-in test clients: users made in PostgreSQL as the CLI makes them, sessions opened as
signing in opens them (hotline.auth)."""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Optional

from aiohttp.test_utils import TestClient, TestServer

from hotline.auth import Role, SessionStore, UserStore

PASSWORD = "correct horse battery staple"


async def make_user(pool, role: Role, username: Optional[str] = None, *, agent_id: Optional[str] = None,
                    teams: tuple[str, ...] = ()) -> str:
    username = username or (f"agent{agent_id}" if agent_id else role.value)
    users = UserStore(pool)
    if await users.get(username) is None:
        await users.add(username, role, PASSWORD, agent_id=agent_id, teams=teams)
    return username


async def token_for(pool, redis, role: Role, username: Optional[str] = None, *, agent_id: Optional[str] = None,
                    teams: tuple[str, ...] = ()) -> str:
    """An access token of a user with this role (made if missing), as signing in gives it."""
    name = await make_user(pool, role, username, agent_id=agent_id, teams=teams)
    user = await UserStore(pool).get(name)
    assert user is not None
    return (await SessionStore(pool, redis).open(user)).access_token


@contextlib.asynccontextmanager
async def client_for(app, pool, role: Optional[Role] = Role.ADMIN, **user) -> AsyncIterator[TestClient]:
    """A test client of ``app`` signed in with this role (None: anonymous); the user is made in
    ``pool`` (and the session cached in the app's Redis)."""
    from cti.appkeys import REDIS

    headers = {"Authorization": f"Bearer {await token_for(pool, app[REDIS], role, **user)}"} if role else {}
    client = TestClient(TestServer(app), headers=headers)
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
