"""The delivery worker (in the CTI process): hands the outbox's rows to the ticketing system.

Each round claims the due rows with ``FOR UPDATE SKIP LOCKED`` (so several CTI processes never
send the same row at once) and, in the same statement, counts the attempt and moves the row's
next attempt past a claim lease: the transaction ends before the HTTP request, and a worker that
dies mid-request leaves the row to come due again when the lease runs out. Each row is POSTed as
JSON, signed (cti/tickets/signing.py) with its idempotency key, with a short timeout; the answer
is judged by cti/tickets/retry.py: delivered (the ticket id is stored, and the agent's desktop is
told on ``Keys.events``), dead at once (a 4xx but 408/425/429), or tried again after an
exponential backoff with full jitter until the configured attempts, then parked as a dead letter.
PostgreSQL down: the worker waits and tries again; rows stay in the table, nothing is lost. Sent
twice (the answer came but was not stored), a row is still one ticket: the receiver dedups by key.
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Optional

import aiohttp
import asyncpg
from redis.asyncio import Redis
from redis.exceptions import RedisError

from hotline.keys import Keys

from .retry import Outcome, Verdict, backoff_s, judge_answer, judge_failure
from .signing import signed_headers

__all__ = ["DeliveryConfig", "DeliveryWorker"]

log = logging.getLogger(__name__)

CLAIM = """
UPDATE ticket_outbox SET attempts = attempts + 1, next_attempt_at = now() + make_interval(secs => $2)
WHERE id IN (SELECT id FROM ticket_outbox
             WHERE delivered_at IS NULL AND dead_at IS NULL AND next_attempt_at <= now()
             ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED)
RETURNING id, idempotency_key, call_uniqueid, kind, payload, attempts
"""
DELIVERED = """
UPDATE ticket_outbox SET delivered_at = now(), ticket_id = $2, last_error = NULL
WHERE id = $1 AND delivered_at IS NULL AND dead_at IS NULL RETURNING id
"""
RETRY = """
UPDATE ticket_outbox SET last_error = $2, next_attempt_at = now() + make_interval(secs => $3)
WHERE id = $1 AND delivered_at IS NULL AND dead_at IS NULL
"""
DEAD = "UPDATE ticket_outbox SET last_error = $2, dead_at = now() WHERE id = $1 AND delivered_at IS NULL"
# Every call's metadata at call end (setting tickets_handoff_all_calls): the records written since
# the last look (with an overlap: records commit out of order), once each by their key.
CALLS_SINCE = """
INSERT INTO ticket_outbox (idempotency_key, call_uniqueid, kind, payload)
SELECT 'call:' || c.uniqueid, c.uniqueid, 'call',
       jsonb_build_object('kind', 'call', 'idempotency_key', 'call:' || c.uniqueid, 'caller', c.caller_id,
                          'agent', c.agent, 'call', to_jsonb(c) - 'id')
FROM calls c WHERE c.recorded_at >= $1
ON CONFLICT (idempotency_key) DO NOTHING
"""
CALLS_OVERLAP_S = 120.0
CALLS_EVERY_S = 2.0                     # how often the records are looked at for new calls
MAX_ANSWER = 64 * 1024


@dataclass(frozen=True)
class DeliveryConfig:
    endpoint: str                       # the ticketing system's POST URL
    secret: str                         # the HMAC key shared with it
    attempts: int = 8
    backoff_base_s: float = 2.0
    backoff_max_s: float = 600.0
    timeout_s: float = 5.0              # one request, connection included
    batch: int = 20
    idle_s: float = 1.0                 # between looks at an empty outbox (a submit wakes the worker at once)
    claim_s: float = 30.0               # a claimed row comes due again after this (its worker died)
    handoff_all_calls: bool = False


class DeliveryWorker:
    def __init__(self, pool: asyncpg.Pool, redis: Optional[Redis], config: DeliveryConfig, *,
                 rand: Callable[[], float] = random.random, clock: Callable[[], float] = time.time) -> None:
        if config.timeout_s >= config.claim_s:
            raise ValueError("the claim lease must outlast a request (claim_s > timeout_s)")
        self.pool = pool
        self.redis = redis
        self.config = config
        self.rand = rand
        self.clock = clock
        self.delivered = 0
        self.dead = 0
        self.retried = 0
        self._wake = asyncio.Event()
        self._task: Optional[asyncio.Task[None]] = None
        self._http: Optional[aiohttp.ClientSession] = None
        self._calls_since: Optional[float] = None
        self._calls_looked = 0.0

    # ---- life cycle ---------------------------------------------------------------------
    def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.timeout_s))
        self._calls_since = self.clock() - CALLS_OVERLAP_S
        self._task = asyncio.create_task(self._run(), name="tickets-delivery")

    async def stop(self) -> None:
        """Stop at once: a request in flight is abandoned, its row comes due again after the lease."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._http is not None:
            await self._http.close()
            self._http = None

    def wake(self) -> None:
        """A row was just written: look now rather than after idle_s."""
        self._wake.set()

    async def _run(self) -> None:
        delay = self.config.idle_s
        while True:
            try:
                if self.config.handoff_all_calls and time.monotonic() - self._calls_looked >= CALLS_EVERY_S:
                    await self.queue_finished_calls()
                    self._calls_looked = time.monotonic()
                handled = await self.run_once()
                delay = self.config.idle_s
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncio.TimeoutError) as exc:
                log.warning("tickets: outbox unavailable (%s); retrying in %.1f s", str(exc) or type(exc).__name__,
                            delay)
                handled = 0
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            if handled == 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), delay)
                except asyncio.TimeoutError:
                    pass

    # ---- one round ----------------------------------------------------------------------
    async def claim(self) -> list[asyncpg.Record]:
        return list(await self.pool.fetch(CLAIM, self.config.batch, self.config.claim_s))

    async def run_once(self) -> int:
        """Claim the due rows, send each, store each answer; the number of rows handled."""
        rows = await self.claim()
        if rows:
            outcomes = await asyncio.gather(*(self.send(row) for row in rows))
            for row, outcome in zip(rows, outcomes):
                await self.record(row, outcome)
        return len(rows)

    async def send(self, row: Any) -> Outcome:
        """POST one row (no PostgreSQL here): what the ticketing system made of it."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.timeout_s))
        payload = row["payload"]
        body = (payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)).encode("utf-8")
        headers = signed_headers(self.config.secret, int(self.clock()), body, row["idempotency_key"])
        try:
            async with self._http.post(self.config.endpoint, data=body, headers=headers) as reply:
                answer = await reply.content.read(MAX_ANSWER)
                return judge_answer(reply.status, answer, row["kind"])
        except asyncio.TimeoutError:
            return judge_failure(f"no answer within {self.config.timeout_s:g} s")
        except (aiohttp.ClientError, OSError) as exc:
            return judge_failure(f"{type(exc).__name__}: {exc}")

    async def record(self, row: Any, outcome: Outcome) -> None:
        """Store what came of one attempt."""
        if outcome.verdict == Verdict.DELIVERED:
            if await self.pool.fetchval(DELIVERED, row["id"], outcome.ticket_id) is not None:
                self.delivered += 1
                log.info("tickets: hand-off %s (call %s) delivered: ticket %s", row["id"], row["call_uniqueid"],
                         outcome.ticket_id)
                await self._tell_desktop(row, outcome.ticket_id)
            return
        if outcome.verdict == Verdict.RETRY and row["attempts"] < self.config.attempts:
            wait = backoff_s(row["attempts"], self.config.backoff_base_s, self.config.backoff_max_s, self.rand)
            await self.pool.execute(RETRY, row["id"], outcome.reason, wait)
            self.retried += 1
            log.info("tickets: hand-off %s attempt %d failed (%s); again in %.1f s", row["id"], row["attempts"],
                     outcome.reason, wait)
            return
        reason = outcome.reason if outcome.verdict == Verdict.DEAD else \
            f"{outcome.reason} (after {row['attempts']} attempts)"
        await self.pool.execute(DEAD, row["id"], reason)
        self.dead += 1
        log.warning("tickets: hand-off %s (call %s) parked as a dead letter: %s", row["id"], row["call_uniqueid"],
                    reason)

    async def _tell_desktop(self, row: Any, ticket_id: Optional[str]) -> None:
        if self.redis is None or row["kind"] != "ticket":
            return
        payload = row["payload"]
        data = json.loads(payload) if isinstance(payload, str) else payload
        agent = data.get("agent") if isinstance(data, dict) else None
        event = {"type": "ticket", "agent": agent, "call": row["call_uniqueid"], "ticket_id": ticket_id,
                 "status": "delivered"}
        try:
            await self.redis.publish(Keys.events, json.dumps(event, ensure_ascii=False))
        except (RedisError, OSError) as exc:       # the desktop reads it again from the API
            log.warning("tickets: desktop not told of ticket %s: %s", ticket_id, exc)

    async def queue_finished_calls(self) -> int:
        """The metadata of every call recorded since the last look, into the outbox (once each)."""
        assert self._calls_since is not None
        since = self._calls_since
        now = self.clock()
        status = await self.pool.execute(CALLS_SINCE, datetime.fromtimestamp(since, tz=timezone.utc))
        self._calls_since = now - CALLS_OVERLAP_S
        added = int(status.split()[-1]) if status.startswith("INSERT") else 0
        if added:
            self._wake.set()
        return added
