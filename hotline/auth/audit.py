"""The audit trail (table ``audit``): sign-ins, failed sign-ins, sign-outs, changes of users, of
an agent's state by someone else, data exports: who, what, to whom, when, from where.

An entry is written to PostgreSQL at once; if PostgreSQL is down it goes to the Redis outbox and
the ACD's outbox writer writes it when PostgreSQL is back (an id makes it written once).
"""
from __future__ import annotations

import json
import logging
import secrets
import time
from datetime import datetime, timezone
from typing import Any, Optional

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..keys import Keys

__all__ = ["AuditLog", "INSERT_AUDIT"]

log = logging.getLogger(__name__)

INSERT_AUDIT = """
INSERT INTO audit (event_id, at, actor, action, target, detail, address) VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (event_id) DO NOTHING
"""


class AuditLog:
    def __init__(self, pool: asyncpg.Pool, redis: Optional[Redis] = None) -> None:
        self.pool = pool
        self.redis = redis

    async def write(self, action: str, *, actor: Optional[str], target: Optional[str] = None,
                    detail: Optional[dict[str, Any]] = None, address: Optional[str] = None) -> None:
        event_id, at = secrets.token_hex(16), time.time()
        detail_json = json.dumps(detail or {}, ensure_ascii=False)
        try:
            await self.pool.execute(INSERT_AUDIT, event_id, datetime.fromtimestamp(at, tz=timezone.utc), actor,
                                    action, target, detail_json, address)
            return
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("audit %s by %s: PostgreSQL unavailable (%s); through the outbox", action, actor, exc)
        row = json.dumps({"kind": "audit", "event_id": event_id, "at": at, "actor": actor, "action": action,
                          "target": target, "detail": detail or {}, "address": address}, ensure_ascii=False)
        try:
            if self.redis is None:
                raise RedisError("no Redis")
            await self.redis.rpush(Keys.outbox, row)
        except (RedisError, OSError):
            log.error("audit entry not stored (PostgreSQL and Redis down): %s", row)

    async def read(self, *, before: Optional[int] = None, limit: int = 100, actor: Optional[str] = None,
                   action: Optional[str] = None, since: Optional[datetime] = None,
                   until: Optional[datetime] = None) -> list[dict[str, Any]]:
        """Entries newest first, from before the id ``before`` (a cursor)."""
        rows = await self.pool.fetch(
            "SELECT id, at, actor, action, target, detail, address FROM audit "
            "WHERE ($1::bigint IS NULL OR id < $1) AND ($2::text IS NULL OR actor = $2) "
            "AND ($3::text IS NULL OR action = $3) AND ($4::timestamptz IS NULL OR at >= $4) "
            "AND ($5::timestamptz IS NULL OR at < $5) ORDER BY id DESC LIMIT $6",
            before, actor, action, since, until, limit)
        return [{"id": r["id"], "at": r["at"].isoformat(), "actor": r["actor"], "action": r["action"],
                 "target": r["target"], "detail": json.loads(r["detail"]), "address": r["address"]} for r in rows]
