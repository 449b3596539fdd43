"""What the CTI reads from PostgreSQL: recent call records, a caller's history, today's KPIs.

The KPIs themselves are :func:`hotline.stats.call_summary` (one definition of each KPI);
this module only decides *when* "today" starts and how long a result may be reused.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Optional

import asyncpg

from hotline.stats import call_summary

__all__ = ["CallFilter", "TodayKpis", "call_page", "caller_history", "local_midnight", "recent_calls",
           "record_view"]

log = logging.getLogger(__name__)

RECENT_CALLS = """
SELECT id, uniqueid, linkedid, line, caller_id, arrived_at, queued_at, answered_at, ended_at,
       wait_s, talk_s, queue, agent, outcome, abandoned_in, hangup_cause, ring_attempts, priority, skills
FROM calls
WHERE ($1::timestamptz IS NULL OR arrived_at >= $1)
  AND ($2::text IS NULL OR agent = $2)
ORDER BY arrived_at DESC, id DESC
LIMIT $3
"""

# A page of call records, newest first, after the cursor (arrived_at, id) of the previous page.
CALL_PAGE = """
SELECT id, uniqueid, linkedid, line, caller_id, arrived_at, queued_at, answered_at, talk_ended_at, ended_at,
       wait_s, talk_s, queue, agent, outcome, abandoned_in, hangup_cause, ring_attempts, priority, skills, survey
FROM calls
WHERE ($1::timestamptz IS NULL OR arrived_at >= $1)
  AND ($2::timestamptz IS NULL OR arrived_at < $2)
  AND ($3::text IS NULL OR queue = $3)
  AND ($4::text IS NULL OR agent = $4)
  AND ($5::text IS NULL OR outcome = $5)
  AND ($6::text IS NULL OR line = $6)
  AND ($7::text IS NULL OR caller_id = $7)
  AND ($8::timestamptz IS NULL OR (arrived_at, id) < ($8, $9))
ORDER BY arrived_at DESC, id DESC
LIMIT $10
"""

# The caller's earlier calls (the current one is not in PostgreSQL until it has ended).
CALLER_HISTORY = """
SELECT arrived_at, line, queue, agent, outcome, abandoned_in, talk_s, count(*) OVER () AS calls
FROM calls
WHERE caller_id = $1 AND arrived_at >= $2
ORDER BY arrived_at DESC
LIMIT $3
"""

HISTORY_DAYS = 30


def _iso(value: Optional[datetime]) -> Optional[str]:
    """Timestamps leave in the server's local time zone (+08:00 for a hotline in China)."""
    return value.astimezone().isoformat() if value is not None else None


def record_view(row: asyncpg.Record) -> dict[str, Any]:
    data = dict(row)
    for key, value in data.items():
        if isinstance(value, datetime):
            data[key] = _iso(value)
    return data


def local_midnight(now: Optional[float] = None) -> datetime:
    """Start of the current day in the server's local time zone (aware)."""
    local = datetime.fromtimestamp(time.time() if now is None else now).astimezone()
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


async def recent_calls(pool: asyncpg.Pool, *, limit: int, since: Optional[datetime] = None,
                       agent: Optional[str] = None) -> list[dict[str, Any]]:
    rows = await pool.fetch(RECENT_CALLS, since, agent, limit)
    return [record_view(row) for row in rows]


@dataclass(frozen=True)
class CallFilter:
    since: Optional[datetime] = None
    until: Optional[datetime] = None
    queue: Optional[str] = None
    agent: Optional[str] = None
    outcome: Optional[str] = None
    line: Optional[str] = None
    caller: Optional[str] = None


async def call_page(pool: asyncpg.Pool, where: CallFilter, *, limit: int,
                    after: Optional[tuple[datetime, int]] = None) -> list[asyncpg.Record]:
    """Call records matching ``where``, newest first, after the (arrived_at, id) ``after``."""
    return await pool.fetch(CALL_PAGE, where.since, where.until, where.queue, where.agent, where.outcome,
                            where.line, where.caller, after[0] if after else None, after[1] if after else None,
                            limit)


async def caller_history(pool: asyncpg.Pool, caller: str, *, days: int = HISTORY_DAYS,
                         recent: int = 5, now: Optional[float] = None) -> dict[str, Any]:
    """How often this number called in the last ``days`` days, and its last few calls."""
    since = datetime.fromtimestamp(time.time() if now is None else now).astimezone() - timedelta(days=days)
    rows = await pool.fetch(CALLER_HISTORY, caller, since, recent)
    return {
        "days": days,
        "calls": rows[0]["calls"] if rows else 0,
        "recent": [{k: v for k, v in record_view(row).items() if k != "calls"} for row in rows],
    }


class TodayKpis:
    """Today's :func:`call_summary`, shared by the wallboard API and /metrics.

    One query at a time whatever the number of wallboards polling; a result is reused for
    ``ttl_s`` seconds. PostgreSQL slow or down: the last result younger than ``stale_s``
    is served, else None (the live picture from Redis must not wait for the records).
    """

    def __init__(self, pool: asyncpg.Pool, *, ttl_s: float = 2.0, timeout_s: float = 2.0,
                 stale_s: float = 60.0, clock=time.time) -> None:
        self.pool = pool
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.stale_s = stale_s
        self.clock = clock
        self._value: Optional[dict[str, Any]] = None
        self._at = 0.0
        self._day: Optional[datetime] = None
        self._lock = asyncio.Lock()

    async def get(self) -> Optional[dict[str, Any]]:
        now = self.clock()
        day = local_midnight(now)
        if self._fresh(now, day, self.ttl_s):
            return self._value
        async with self._lock:
            now = self.clock()
            if self._fresh(now, day, self.ttl_s):     # another caller refreshed it meanwhile
                return self._value
            try:
                async with asyncio.timeout(self.timeout_s):
                    summary = await call_summary(self.pool, since=day)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncio.TimeoutError) as exc:
                log.warning("today's KPIs unavailable: %s", str(exc) or type(exc).__name__)
                return self._value if self._fresh(now, day, self.stale_s) else None
            self._value = {"since": day.isoformat(), **summary}
            self._at, self._day = self.clock(), day
            return self._value

    def _fresh(self, now: float, day: datetime, ttl: float) -> bool:
        return self._value is not None and self._day == day and now - self._at < ttl
