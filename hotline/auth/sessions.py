"""Sessions: signing in gives a short-lived access token and a refresh token (table ``sessions``).

Tokens are random (256 bits) and only their SHA-256 is stored, so a copy of the database opens no
session. An access token lives ``access_ttl_s`` (15 minutes by default); the refresh token gives a
new pair (the old one stops working) until the session ends, ``session_ttl_s`` after sign-in (12
hours: a shift). Signing out, disabling the user, or changing their password or role ends it.

Who holds a live access token is also cached in Redis for the rest of the token's life, so that the
pages and the live view keep working while PostgreSQL is down (and a request costs no query);
ending a session removes its entry. (A session ended while Redis is down, too, lasts until its access
token runs out: at most ``access_ttl_s``.)
"""
from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable, Optional

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..keys import Keys
from .roles import Principal, Role
from .user import User, user_from_row

log = logging.getLogger(__name__)

__all__ = ["IssuedTokens", "SessionStore", "token_hash"]


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def _new_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class IssuedTokens:
    session_id: int
    access_token: str
    access_expires_at: datetime
    refresh_token: str
    expires_at: datetime

    def to_json(self) -> dict:
        return {"token_type": "bearer", "access_token": self.access_token,
                "expires_in": max(0, int((self.access_expires_at - datetime.now(timezone.utc)).total_seconds())),
                "refresh_token": self.refresh_token, "session_expires_at": self.expires_at.isoformat()}


class SessionStore:
    def __init__(self, pool: asyncpg.Pool, redis: Optional[Redis] = None, *, access_ttl_s: float = 900.0,
                 session_ttl_s: float = 43200.0) -> None:
        self.pool = pool
        self.redis = redis
        self.access_ttl = timedelta(seconds=access_ttl_s)
        self.session_ttl = timedelta(seconds=session_ttl_s)

    # ---- the cache of live access tokens ---------------------------------------------------
    async def _cache(self, access_hash: str, principal: Principal, expires: datetime) -> None:
        ms = int((expires - datetime.now(timezone.utc)).total_seconds() * 1000)
        if self.redis is None or ms <= 0:
            return
        value = json.dumps({"username": principal.username, "role": principal.role.value if principal.role else None,
                            "agent_id": principal.agent_id, "teams": list(principal.teams),
                            "session_id": principal.session_id})
        try:
            await self.redis.set(Keys.session(access_hash), value, px=ms)
        except (RedisError, OSError) as exc:
            log.warning("session cache not written: %s", exc)

    async def _cached(self, access_hash: str) -> Optional[Principal]:
        if self.redis is None:
            return None
        try:
            raw = await self.redis.get(Keys.session(access_hash))
        except (RedisError, OSError):
            return None
        if not raw:
            return None
        try:
            data = json.loads(raw)
            return Principal(data["username"], Role(data["role"]), data["agent_id"], tuple(data["teams"]),
                             session_id=data["session_id"])
        except (ValueError, KeyError, TypeError):
            return None

    async def forget(self, access_hashes: Iterable[str]) -> None:
        """These access tokens no longer work (their sessions ended): out of the cache."""
        keys = [Keys.session(h) for h in access_hashes if h]
        if self.redis is None or not keys:
            return
        try:
            await self.redis.delete(*keys)
        except (RedisError, OSError) as exc:
            log.warning("ended sessions still cached until their tokens run out: %s", exc)

    async def open(self, user: User, address: Optional[str] = None) -> IssuedTokens:
        now = datetime.now(timezone.utc)
        access, refresh = _new_token(), _new_token()
        expires = now + self.session_ttl
        access_expires = min(now + self.access_ttl, expires)
        session_id = await self.pool.fetchval(
            "INSERT INTO sessions (user_id, access_hash, access_expires_at, refresh_hash, expires_at, address) "
            "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            user.id, token_hash(access), access_expires, token_hash(refresh), expires, address)
        await self._cache(token_hash(access), user.principal(session_id), access_expires)
        return IssuedTokens(session_id, access, access_expires, refresh, expires)

    async def principal(self, access_token: str) -> Optional[Principal]:
        """Who holds this access token, if it is live and its user enabled."""
        access_hash = token_hash(access_token)
        cached = await self._cached(access_hash)
        if cached is not None:
            return cached
        row = await self.pool.fetchrow(
            "SELECT s.id AS session_id, s.access_expires_at, u.username, u.role, u.agent_id, u.teams FROM sessions s "
            "JOIN users u ON u.id = s.user_id "
            "WHERE s.access_hash = $1 AND s.access_expires_at > now() AND NOT u.disabled", access_hash)
        if row is None:
            return None
        principal = Principal(row["username"], Role(row["role"]), row["agent_id"], tuple(row["teams"]),
                              session_id=row["session_id"])
        await self._cache(access_hash, principal, row["access_expires_at"])
        return principal

    async def refresh(self, refresh_token: str) -> Optional[tuple[IssuedTokens, User]]:
        """A new token pair for a live session; the refresh token used stops working."""
        access, refresh = _new_token(), _new_token()
        now = datetime.now(timezone.utc)
        async with self.pool.acquire() as conn, conn.transaction():
            old = await conn.fetchval("SELECT access_hash FROM sessions WHERE refresh_hash = $1 FOR UPDATE",
                                      token_hash(refresh_token))
            row = await conn.fetchrow(
                "UPDATE sessions s SET access_hash = $2, access_expires_at = least($3, s.expires_at), refresh_hash = $4 "
                "FROM users u WHERE u.id = s.user_id AND s.refresh_hash = $1 AND s.expires_at > now() "
                "AND NOT u.disabled RETURNING s.id, s.access_expires_at, s.expires_at, u.id AS user_id",
                token_hash(refresh_token), token_hash(access), now + self.access_ttl, token_hash(refresh))
            if row is None:
                return None
            user_row = await conn.fetchrow(
                "SELECT id, username, role, agent_id, teams, disabled, created_at, updated_at FROM users "
                "WHERE id = $1", row["user_id"])
        tokens = IssuedTokens(row["id"], access, row["access_expires_at"], refresh, row["expires_at"])
        user = user_from_row(user_row)
        await self.forget([old])
        await self._cache(token_hash(access), user.principal(tokens.session_id), tokens.access_expires_at)
        return tokens, user

    async def alive(self, session_id: int) -> bool:
        """Whether this session still runs (not ended, not expired, its user enabled)."""
        return bool(await self.pool.fetchval(
            "SELECT true FROM sessions s JOIN users u ON u.id = s.user_id "
            "WHERE s.id = $1 AND s.expires_at > now() AND NOT u.disabled", session_id))

    async def close(self, session_id: int) -> None:
        ended = await self.pool.fetch("DELETE FROM sessions WHERE id = $1 RETURNING access_hash", session_id)
        await self.forget(row["access_hash"] for row in ended)

    async def end_user_sessions(self, conn: asyncpg.Connection, user_id: int) -> list[str]:
        """End every session of a user, in the caller's transaction; returns what to :meth:`forget`
        once it has committed."""
        rows = await conn.fetch("DELETE FROM sessions WHERE user_id = $1 RETURNING access_hash", user_id)
        return [row["access_hash"] for row in rows]

    async def purge_expired(self) -> int:
        result = await self.pool.execute("DELETE FROM sessions WHERE expires_at <= now()")
        return int(result.split()[-1])
