"""``hotline users``: who may sign in, managed on the server (PostgreSQL; the same as the API's
/api/v1/users for admins). Passwords are asked for (or read from stdin with --password-stdin),
never taken from the command line, where other users of the machine could read them."""
from __future__ import annotations

import asyncio
import getpass
import sys
from typing import Optional

import typer

from hotline.auth import AuditLog, PasswordError, Role, SessionStore, UserError, UserStore
from hotline.stores import StoreError, connect_redis, open_database

__all__ = ["users_app"]

users_app = typer.Typer(help="Users who may sign in (agents, supervisors, ops, quality, admins).",
                        no_args_is_help=True)


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"hotline: error: {message}", err=True)
    raise typer.Exit(code)


def _password(from_stdin: bool, username: str) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt(f"password for {username}", hide_input=True, confirmation_prompt=True)
    return password


def _run(ctx: typer.Context, action) -> None:
    from .cli import _settings

    settings = _settings(ctx.obj)

    async def main() -> None:
        async with open_database(settings) as database:
            # Sessions the running services cached in Redis end at once too, where Redis is known.
            redis = await connect_redis(settings.redis_url) if settings.redis_url else None
            try:
                sessions = SessionStore(database.pool, redis)
                await action(UserStore(database.pool, sessions), AuditLog(database.pool, redis))
            finally:
                if redis is not None:
                    await redis.aclose()
    try:
        asyncio.run(main())
    except (UserError, PasswordError) as exc:
        _fail(str(exc))
    except StoreError as exc:
        _fail(str(exc))


def _cached_note(users: UserStore) -> None:
    if users.sessions.redis is None:
        typer.echo("note: with no HOTLINE_REDIS_URL set, running services may take their cached access tokens "
                   "for up to HOTLINE_AUTH_ACCESS_TTL_S more (the API's /api/v1/users ends them at once)", err=True)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


@users_app.command("add")
def add(ctx: typer.Context, username: str,
        role: Role = typer.Option(..., help="agent, supervisor, ops, quality or admin"),
        agent: Optional[str] = typer.Option(None, help="an agent user's agent id (the extension)"),
        team: list[str] = typer.Option([], help="a supervisor's team (repeat for several; none: every team)"),
        password_stdin: bool = typer.Option(False, help="read the password from the first line of stdin")) -> None:
    """Add a user."""
    password = _password(password_stdin, username)

    async def action(users: UserStore, audit: AuditLog) -> None:
        user = await users.add(username, role, password, agent_id=agent, teams=team)
        await audit.write("user_added", actor=_actor(), target=user.username,
                          detail={"role": user.role.value, "agent_id": user.agent_id, "teams": list(user.teams)})
        typer.echo(f"added {user.username} ({user.role.value}"
                   f"{', agent ' + user.agent_id if user.agent_id else ''}"
                   f"{', teams ' + ','.join(user.teams) if user.teams else ''})")
    _run(ctx, action)


@users_app.command("passwd")
def passwd(ctx: typer.Context, username: str,
           password_stdin: bool = typer.Option(False, help="read the password from the first line of stdin")) -> None:
    """Set a user's password (their sessions end)."""
    password = _password(password_stdin, username)

    async def action(users: UserStore, audit: AuditLog) -> None:
        await users.set_password(username, password)
        await audit.write("password_set", actor=_actor(), target=username)
        typer.echo(f"password of {username} set; their sessions have ended")
        _cached_note(users)
    _run(ctx, action)


def _set_disabled(ctx: typer.Context, username: str, disabled: bool) -> None:
    async def action(users: UserStore, audit: AuditLog) -> None:
        await users.change(username, disabled=disabled)
        await audit.write("user_disabled" if disabled else "user_changed", actor=_actor(), target=username,
                          detail={"disabled": disabled})
        typer.echo(f"{username} {'disabled: their sessions have ended' if disabled else 'enabled'}")
        if disabled:
            _cached_note(users)
    _run(ctx, action)


@users_app.command("disable")
def disable(ctx: typer.Context, username: str) -> None:
    """Disable a user: they can no longer sign in, and their sessions end at once."""
    _set_disabled(ctx, username, True)


@users_app.command("enable")
def enable(ctx: typer.Context, username: str) -> None:
    """Enable a disabled user again."""
    _set_disabled(ctx, username, False)


@users_app.command("list")
def list_users(ctx: typer.Context) -> None:
    """Users with their roles."""
    async def action(users: UserStore, audit: AuditLog) -> None:
        after = ""
        while True:
            page = await users.list(after=after, limit=500)
            for user in page:
                scope = user.agent_id or ",".join(user.teams) or "-"
                typer.echo(f"{user.username:<24} {user.role.value:<11} {scope:<16}"
                           f"{' disabled' if user.disabled else ''}")
            if len(page) < 500:
                return
            after = page[-1].username
    _run(ctx, action)
