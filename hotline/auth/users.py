"""The users who may sign in (table ``users``): added, changed, disabled, listed. A disabled user's
sessions end at once; so do the other sessions of a user whose password changes."""
from __future__ import annotations

from typing import Iterable, Optional

import asyncpg

from ..model import valid_name
from .passwords import check_password_rules, hash_password
from .roles import Role, valid_username
from .sessions import SessionStore
from .user import COLUMNS as _COLUMNS, User, user_from_row as _user

__all__ = ["User", "UserError", "UserStore", "check_user"]


class UserError(ValueError):
    pass


def check_user(username: str, role: Role, agent_id: Optional[str], teams: Iterable[str]) -> tuple[str, ...]:
    """The rules of a user's fields; returns the teams as kept. An agent is bound to one agent id;
    only a supervisor is limited to teams."""
    if not valid_username(username):
        raise UserError("a user name is 1 to 64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit")
    teams = tuple(sorted(set(teams)))
    if role == Role.AGENT:
        if not agent_id or not agent_id.isascii() or not agent_id.isdigit() or len(agent_id) > 16:
            raise UserError("an agent user needs agent_id: the agent's extension (digits)")
    elif agent_id is not None:
        raise UserError(f"only an agent user has an agent_id, not a {role.value}")
    if teams and role != Role.SUPERVISOR:
        raise UserError(f"only a supervisor is limited to teams, not a {role.value}")
    for team in teams:
        if not valid_name(team):
            raise UserError(f"team {team!r}: letters, digits, '-' or '_'")
    return teams


class UserStore:
    def __init__(self, pool: asyncpg.Pool, sessions: Optional["SessionStore"] = None) -> None:
        self.pool = pool
        self.sessions = sessions or SessionStore(pool)

    async def add(self, username: str, role: Role, password: str, *, agent_id: Optional[str] = None,
                  teams: Iterable[str] = ()) -> User:
        kept = check_user(username, role, agent_id, teams)
        check_password_rules(password, username)
        hashed = await hash_password(password)
        try:
            row = await self.pool.fetchrow(
                f"INSERT INTO users (username, role, agent_id, teams, password_hash) VALUES ($1, $2, $3, $4, $5) "
                f"RETURNING {_COLUMNS}", username, role.value, agent_id, list(kept), hashed)
        except asyncpg.UniqueViolationError as exc:
            what = "agent " + str(agent_id) if "agent_id" in str(exc) else "user name " + username
            raise UserError(f"{what} already has a user") from None
        return _user(row)

    async def get(self, username: str) -> Optional[User]:
        row = await self.pool.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE username = $1", username)
        return _user(row) if row else None

    async def credentials(self, username: str) -> tuple[Optional[User], Optional[str]]:
        """The user and their password hash (None, None for an unknown name)."""
        row = await self.pool.fetchrow(f"SELECT {_COLUMNS}, password_hash FROM users WHERE username = $1", username)
        return (_user(row), row["password_hash"]) if row else (None, None)

    async def list(self, *, after: str = "", limit: int = 100, role: Optional[Role] = None) -> list[User]:
        """Users by name, from after ``after`` (a cursor: the last name of the previous page)."""
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM users WHERE username > $1 AND ($2::text IS NULL OR role = $2) "
            f"ORDER BY username LIMIT $3", after, role.value if role else None, limit)
        return [_user(row) for row in rows]

    async def change(self, username: str, *, role: Optional[Role] = None, agent_id: Optional[str] = None,
                     teams: Optional[Iterable[str]] = None, disabled: Optional[bool] = None) -> User:
        """Change a user's role, agent, teams or disabled flag; disabling ends their sessions."""
        current = await self.get(username)
        if current is None:
            raise UserError(f"unknown user {username!r}")
        new_role = role or current.role
        new_agent = agent_id if agent_id is not None else (current.agent_id if new_role == Role.AGENT else None)
        new_teams = tuple(teams) if teams is not None else (current.teams if new_role == Role.SUPERVISOR else ())
        kept = check_user(username, new_role, new_agent, new_teams)
        new_disabled = current.disabled if disabled is None else disabled
        ended: list[str] = []
        async with self.pool.acquire() as conn, conn.transaction():
            try:
                row = await conn.fetchrow(
                    f"UPDATE users SET role = $2, agent_id = $3, teams = $4, disabled = $5, updated_at = now() "
                    f"WHERE username = $1 RETURNING {_COLUMNS}", username, new_role.value, new_agent, list(kept),
                    new_disabled)
            except asyncpg.UniqueViolationError:
                raise UserError(f"agent {new_agent} already has a user") from None
            if new_disabled or new_role != current.role or new_agent != current.agent_id or kept != current.teams:
                # What a session may do follows the user: sign in again.
                ended = await self.sessions.end_user_sessions(conn, current.id)
        await self.sessions.forget(ended)
        return _user(row)

    async def set_password(self, username: str, password: str) -> User:
        """A new password; every session of the user ends."""
        check_password_rules(password, username)
        hashed = await hash_password(password)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"UPDATE users SET password_hash = $2, password_changed_at = now(), updated_at = now() "
                f"WHERE username = $1 RETURNING {_COLUMNS}", username, hashed)
            if row is None:
                raise UserError(f"unknown user {username!r}")
            ended = await self.sessions.end_user_sessions(conn, row["id"])
        await self.sessions.forget(ended)
        return _user(row)

