"""The ticket hand-off's outbox (table ``ticket_outbox``): a submitted ticket and the call's
metadata written in one transaction, under an idempotency key made at submit (or sent by the
desktop, so that a form sent twice is one ticket); what the desktop and the admins read of it;
a dead letter sent again.

The delivery worker (cti/tickets/delivery.py) takes the rows from here; nothing is lost in
between: a row leaves the due set only when the ticketing system has answered for it.
"""
from __future__ import annotations

import enum
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional

import asyncpg

from .callfacts import CallFacts
from .deadlines import Deadline

__all__ = ["Handoff", "HandoffConflict", "OutboxState", "handoff_view", "list_outbox", "new_key", "resend",
           "submit", "ticket_payload", "tickets_of_call"]

COLUMNS = ("id, idempotency_key, call_uniqueid, kind, payload, created_at, created_by, attempts, next_attempt_at, "
           "last_error, delivered_at, ticket_id, dead_at")

INSERT = f"""
INSERT INTO ticket_outbox (idempotency_key, call_uniqueid, kind, payload, created_by)
VALUES ($1, $2, $3, $4::jsonb, $5)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING {COLUMNS}
"""


class OutboxState(enum.StrEnum):
    QUEUED = "queued"           # waiting for (another) delivery attempt
    DELIVERED = "delivered"     # the ticketing system answered with its ticket id
    DEAD = "dead"               # parked after the configured attempts or a refusal: an admin may re-send it


class HandoffConflict(Exception):
    """The idempotency key was already used for another call."""


@dataclass(frozen=True)
class Handoff:
    row: dict[str, Any]
    created: bool               # False: the same key was submitted before (the same ticket)


def new_key() -> str:
    return str(uuid.uuid4())


def ticket_payload(*, key: str, category: dict[str, str], summary: str, address: Optional[str], deadline: Deadline,
                   facts: CallFacts, filed_by: str, filed_at: datetime) -> dict[str, Any]:
    """What the ticketing system receives for a ticket: the form and the call's metadata."""
    return {
        "kind": "ticket",
        "idempotency_key": key,
        "ticket": {"category": category["code"], "category_zh": category["zh"], "category_en": category["en"],
                   "summary": summary, "address": address, "urgency": deadline.urgency.value,
                   "deadline": deadline.to_json()},
        "call": facts.to_json(),
        "caller": facts.caller,
        "agent": facts.agent,
        "filed_by": filed_by,
        "filed_at": filed_at.astimezone().isoformat(),
    }


def state_of(row: Any) -> OutboxState:
    if row["delivered_at"] is not None:
        return OutboxState.DELIVERED
    if row["dead_at"] is not None:
        return OutboxState.DEAD
    return OutboxState.QUEUED


def handoff_view(row: Any) -> dict[str, Any]:
    payload = row["payload"]
    data = json.loads(payload) if isinstance(payload, str) else dict(payload)
    ticket = data.get("ticket") or {}
    deadline = ticket.get("deadline") or {}
    return {
        "id": row["id"], "idempotency_key": row["idempotency_key"], "call_id": row["call_uniqueid"],
        "kind": row["kind"], "state": state_of(row).value, "ticket_id": row["ticket_id"],
        "category": ticket.get("category"), "urgency": ticket.get("urgency"),
        "deadline": deadline.get("due"), "deadline_provisional": bool(deadline.get("provisional")),
        "created_at": row["created_at"],
        "created_by": row["created_by"], "attempts": row["attempts"], "next_attempt_at": row["next_attempt_at"],
        "last_error": row["last_error"], "delivered_at": row["delivered_at"], "dead_at": row["dead_at"],
    }


async def submit(pool: asyncpg.Pool, *, key: str, call_uniqueid: str, kind: str, payload: dict[str, Any],
                 created_by: Optional[str]) -> Handoff:
    """Write the hand-off (once per key) in one transaction; the same key again answers the row
    written the first time. A key already used for another call is refused."""
    body = json.dumps(payload, ensure_ascii=False)
    async with pool.acquire() as conn:
        async with conn.transaction():
            row = await conn.fetchrow(INSERT, key, call_uniqueid, kind, body, created_by)
            if row is not None:
                return Handoff(dict(row), created=True)
            row = await conn.fetchrow(f"SELECT {COLUMNS} FROM ticket_outbox WHERE idempotency_key = $1", key)
    if row is None:           # (deleted in between: not something this project does)
        raise HandoffConflict(f"idempotency key {key} vanished")
    if row["call_uniqueid"] != call_uniqueid:
        raise HandoffConflict(f"idempotency key {key} was used for another call")
    return Handoff(dict(row), created=False)


async def tickets_of_call(pool: asyncpg.Pool, call_uniqueid: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(f"SELECT {COLUMNS} FROM ticket_outbox WHERE call_uniqueid = $1 AND kind = 'ticket' "
                            "ORDER BY created_at, id", call_uniqueid)
    return [dict(row) for row in rows]


async def list_outbox(pool: asyncpg.Pool, state: Optional[OutboxState], *, after: Optional[int] = None,
                      limit: int = 50) -> list[dict[str, Any]]:
    """Hand-offs newest first (by id), of one state or all."""
    where = {None: "TRUE", OutboxState.DEAD: "dead_at IS NOT NULL", OutboxState.DELIVERED: "delivered_at IS NOT NULL",
             OutboxState.QUEUED: "delivered_at IS NULL AND dead_at IS NULL"}[state]
    rows = await pool.fetch(f"SELECT {COLUMNS} FROM ticket_outbox WHERE {where} AND ($1::bigint IS NULL OR id < $1) "
                            "ORDER BY id DESC LIMIT $2", after, limit)
    return [dict(row) for row in rows]


async def resend(pool: asyncpg.Pool, outbox_id: int) -> Optional[dict[str, Any]]:
    """A dead letter due again, with a fresh count of attempts (the same idempotency key: the
    ticketing system still makes one ticket of it). None: no such dead letter."""
    row = await pool.fetchrow(f"UPDATE ticket_outbox SET dead_at = NULL, attempts = 0, next_attempt_at = now() "
                              f"WHERE id = $1 AND dead_at IS NOT NULL RETURNING {COLUMNS}", outbox_id)
    return dict(row) if row else None
