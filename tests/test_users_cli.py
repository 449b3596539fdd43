"""``hotline users``: users managed on the server, passwords never on the command line."""
from __future__ import annotations

import asyncio

from typer.testing import CliRunner

from hotline.auth import Role, SessionStore, UserStore
from launcher.cli import app

from .auth_helpers import PASSWORD


async def test_users_added_changed_disabled_and_listed(pool, pg_url, redis, redis_url):
    runner = CliRunner()
    env = {"HOTLINE_DATABASE_URL": pg_url, "HOTLINE_REDIS_URL": redis_url}

    async def users(*args: str, stdin: str = "") -> tuple[int, str]:
        result = await asyncio.to_thread(runner.invoke, app, ["users", *args], env=env, input=stdin)
        return result.exit_code, result.output

    code, out = await users("add", "li.na", "--role", "agent", "--agent", "1001", "--password-stdin",
                            stdin=PASSWORD + "\n")
    assert code == 0 and "added li.na (agent, agent 1001)" in out
    code, out = await users("add", "wang", "--role", "supervisor", "--team", "general", "--team", "elderly",
                            "--password-stdin", stdin=PASSWORD + "\n")
    assert code == 0 and "teams elderly,general" in out
    code, out = await users("add", "zhao", "--role", "agent", "--password-stdin", stdin=PASSWORD + "\n")
    assert code == 1 and "agent_id" in out                        # an agent user needs the agent's id
    code, out = await users("add", "chen", "--role", "ops", "--password-stdin", stdin="short\n")
    assert code == 1 and "at least 10 characters" in out
    code, out = await users("add", "li.na", "--role", "ops", "--password-stdin", stdin=PASSWORD + "\n")
    assert code == 1 and "already has a user" in out
    # A session of li.na ends when the password changes, and again when the user is disabled: in
    # PostgreSQL and in the running services' cache (Redis).
    store = UserStore(pool)
    user = await store.get("li.na")
    sessions = SessionStore(pool, redis)
    tokens = await sessions.open(user)
    code, out = await users("passwd", "li.na", "--password-stdin", stdin="another good password\n")
    assert code == 0 and await sessions.principal(tokens.access_token) is None
    tokens = await sessions.open(user)
    code, out = await users("disable", "li.na")
    assert code == 0 and await sessions.principal(tokens.access_token) is None
    code, out = await users("list")
    lines = out.strip().splitlines()
    assert lines[0].split() == ["li.na", "agent", "1001", "disabled"]
    assert lines[1].split() == ["wang", "supervisor", "elderly,general"]
    code, _ = await users("enable", "li.na")
    assert code == 0 and not (await store.get("li.na")).disabled
    actions = [r["action"] for r in await pool.fetch("SELECT action FROM audit ORDER BY id")]
    assert actions == ["user_added", "user_added", "password_set", "user_disabled", "user_changed"]
    assert (await store.get("wang")).role == Role.SUPERVISOR
