"""Moves finished rows from the Redis outbox into PostgreSQL, at least once, idempotently.

A row leaves the outbox only after the transaction that wrote it has committed; every
table has a natural unique key (call uniqueid, state event id, agent id), so a row written
twice after a crash is ignored the second time. PostgreSQL down: rows wait in Redis.

Every ACD process runs a writer, one at a time moves rows: the writer holding the lease
(``hotline:outbox:lock``) reads the head of the list, writes it, and trims it only if it still
holds the lease (two writers trimming the same head would drop rows nobody wrote). A writer that
dies leaves the lease to expire; the next one writes the same rows again, harmlessly.
"""
from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import datetime, timezone
from typing import Any, Optional

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import RedisError

from hotline.auth.audit import INSERT_AUDIT
from hotline.keys import Keys
from hotline.model import CallRecord

from . import scripts

__all__ = ["OutboxWriter"]

log = logging.getLogger(__name__)


def _ts(value: Optional[float]) -> Optional[datetime]:
    return datetime.fromtimestamp(value, tz=timezone.utc) if value is not None else None


INSERT_CALL = """
INSERT INTO calls (uniqueid, linkedid, line, caller_id, arrived_at, queued_at, answered_at, ended_at,
                   wait_s, talk_s, queue, agent, outcome, abandoned_in, hangup_cause, ring_attempts,
                   priority, skills, ivr_path, survey, talk_ended_at, agents, transfers)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)
ON CONFLICT (uniqueid) DO NOTHING
"""
INSERT_STATE = """
INSERT INTO agent_states (event_id, agent_id, state, reason, call_uniqueid, at)
VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING
"""
UPSERT_AGENT = """
INSERT INTO agents (id, name, team, skills) VALUES ($1, $2, $3, $4)
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, team = EXCLUDED.team, skills = EXCLUDED.skills,
                               updated_at = now()
"""


# The writers' lease and the trim that only its holder may do (acd/lua/outbox_*.lua).
LEASE = scripts.load("outbox_lease")
TRIM_IF_LEASED = scripts.load("outbox_trim")


class OutboxWriter:
    def __init__(self, redis: Redis, pool: asyncpg.Pool, *, batch: int = 200, idle_s: float = 0.2,
                 lease_s: float = 5.0, writer: Optional[str] = None) -> None:
        self.redis = redis
        # The ACD node's name: a restarted process takes its own lease back at once.
        self.writer = writer or uuid.uuid4().hex
        self.lease_ms = int(lease_s * 1000)
        self._trim = redis.register_script(TRIM_IF_LEASED)
        self._lease = redis.register_script(LEASE)
        self.pool = pool
        self.batch = batch
        self.idle_s = idle_s
        self.written = 0
        self._task: Optional[asyncio.Task] = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self, flush_timeout: float = 10.0) -> None:
        """Write what is left, then stop."""
        self._stopping = True
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, flush_timeout)
            except asyncio.TimeoutError:
                self._task.cancel()
                log.warning("outbox not empty at shutdown: rows stay in Redis for the next start")
        try:
            # Leave the lease to the other writers at once rather than when it expires.
            if await self.redis.get(Keys.outbox_lock) == self.writer:
                await self.redis.delete(Keys.outbox_lock)
        except (RedisError, OSError):
            pass

    async def _run(self) -> None:
        delay = self.idle_s
        while True:
            try:
                moved = await self.flush_once()
                delay = self.idle_s
            except (OSError, RedisError, asyncpg.PostgresError, asyncio.TimeoutError) as exc:
                log.warning("outbox: %s; retrying in %.1fs", exc, delay)
                moved = 0
                delay = min(delay * 2, 5.0)
                if self._stopping:
                    return
            if moved == 0:
                if self._stopping:
                    return
                await asyncio.sleep(delay)

    async def _leased(self) -> bool:
        """Hold (or take) the writers' lease; False while another writer holds it."""
        return bool(await self._lease(keys=[Keys.outbox_lock], args=[self.writer, self.lease_ms]))

    async def flush_once(self) -> int:
        if not await self.redis.llen(Keys.outbox) or not await self._leased():
            return 0
        rows = await self.redis.lrange(Keys.outbox, 0, self.batch - 1)
        if not rows:
            return 0
        dead: list[str] = []
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                for raw in rows:
                    try:
                        async with conn.transaction():      # a savepoint per row
                            await self._write(conn, raw)
                    except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, ValueError,
                            KeyError, TypeError) as exc:
                        # A row PostgreSQL will never take must not block the ones behind it.
                        log.error("outbox: row refused (%s); kept in %s", exc, Keys.outbox_dead)
                        dead.append(raw)
        if dead:
            await self.redis.rpush(Keys.outbox_dead, *dead)
        # Only what we wrote leaves the outbox; new rows appended meanwhile stay.
        if not await self._trim(keys=[Keys.outbox_lock, Keys.outbox], args=[self.writer, len(rows)]):
            log.warning("outbox: lease lost while writing %d row(s); the next writer writes them again", len(rows))
            return 0
        self.written += len(rows)
        return len(rows)

    async def _write(self, conn: asyncpg.Connection, raw: str) -> None:
        try:
            row: dict[str, Any] = json.loads(raw)
            kind = row.pop("kind")
        except (ValueError, KeyError):
            log.error("outbox: dropping unreadable row %r", raw[:200])
            return
        if kind == "call":
            record = CallRecord.from_json(row)
            await conn.execute(
                INSERT_CALL, record.uniqueid, record.linkedid, record.line, record.caller_id,
                _ts(record.arrived_at), _ts(record.queued_at), _ts(record.answered_at), _ts(record.ended_at),
                record.wait_s, record.talk_s, record.queue, record.agent, record.outcome.value,
                record.abandoned_in.value if record.abandoned_in else None, record.hangup_cause,
                record.ring_attempts, record.priority, record.skills,
                json.dumps(record.ivr_path) if record.ivr_path is not None else None,
                record.survey, _ts(record.talk_ended_at), record.agents,
                json.dumps(record.transfers, ensure_ascii=False) if record.transfers is not None else None)
        elif kind == "agent_state":
            await conn.execute(INSERT_STATE, row["event_id"], row["agent_id"], row["state"], row.get("reason"),
                               row.get("call_uniqueid"), _ts(row["at"]))
        elif kind == "agent":
            await conn.execute(UPSERT_AGENT, row["id"], row["name"], row["team"], json.dumps(row["skills"]))
        elif kind == "audit":
            await conn.execute(INSERT_AUDIT, row["event_id"], _ts(row["at"]), row.get("actor"), row["action"],
                               row.get("target"), json.dumps(row.get("detail") or {}), row.get("address"))
        else:
            log.error("outbox: unknown row kind %r dropped", kind)
