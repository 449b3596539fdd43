"""What a hand-off says of the call: caller, line, times, IVR path, agent, transfers, the
recording's name. Read from the live call hash while the call lasts (``hotline:call:<uid>``),
else from its PostgreSQL record, and the IVR path from Redis (else the record's).
:func:`facts_from` puts them together without I/O."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping, Optional

import asyncpg
from redis.asyncio import Redis

from hotline.keys import Keys
from hotline.live import LiveCall

__all__ = ["CallFacts", "facts_from", "read_call_facts", "recording_name"]

MAX_IVR_BYTES = 64 * 1024
RECORD_FIELDS = ("uniqueid, line, caller_id, arrived_at, queued_at, answered_at, ended_at, queue, agent, outcome, "
                 "ring_attempts, ivr_path")


def recording_name(uniqueid: str) -> str:
    """The file the dialplan's MixMonitor writes for an answered call (asterisk-config/extensions.conf)."""
    return f"hotline/{uniqueid}.wav"


@dataclass
class CallFacts:
    uniqueid: str
    caller: str = ""
    line: str = "main"
    agent: Optional[str] = None
    queue: Optional[str] = None
    arrived_at: Optional[float] = None
    queued_at: Optional[float] = None
    answered_at: Optional[float] = None
    ended_at: Optional[float] = None
    outcome: Optional[str] = None
    ring_attempts: int = 0
    transfers: list[dict[str, Any]] = field(default_factory=list)
    ivr_path: Optional[dict[str, Any]] = None
    live: bool = False
    handled_by: set[str] = field(default_factory=set)     # agents of the live hash and of the record

    @property
    def recording(self) -> Optional[str]:
        return recording_name(self.uniqueid) if self.answered_at is not None else None

    def to_json(self) -> dict[str, Any]:
        def iso(value: Optional[float]) -> Optional[str]:
            return datetime.fromtimestamp(value).astimezone().isoformat() if value is not None else None
        return {"call_id": self.uniqueid, "caller": self.caller, "line": self.line, "agent": self.agent,
                "queue": self.queue, "arrived_at": iso(self.arrived_at), "queued_at": iso(self.queued_at),
                "answered_at": iso(self.answered_at), "ended_at": iso(self.ended_at), "outcome": self.outcome,
                "ring_attempts": self.ring_attempts, "transfers": self.transfers, "ivr_path": self.ivr_path,
                "recording": self.recording}


def _epoch(value: Any) -> Optional[float]:
    return value.timestamp() if isinstance(value, datetime) else None


def _ivr(raw: Any) -> Optional[dict[str, Any]]:
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str) or not raw or len(raw) > MAX_IVR_BYTES:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def facts_from(uniqueid: str, live: Optional[Mapping[str, str]], record: Optional[Mapping[str, Any]],
               ivr_raw: Optional[str]) -> Optional[CallFacts]:
    """The call's facts from what was found (None: the call is known nowhere)."""
    if not live and not record:
        return None
    facts = CallFacts(uniqueid)
    if record:
        facts.caller = record.get("caller_id") or ""
        facts.line = record.get("line") or "main"
        facts.agent = record.get("agent")
        facts.queue = record.get("queue")
        facts.arrived_at, facts.queued_at = _epoch(record.get("arrived_at")), _epoch(record.get("queued_at"))
        facts.answered_at, facts.ended_at = _epoch(record.get("answered_at")), _epoch(record.get("ended_at"))
        facts.outcome = record.get("outcome")
        facts.ring_attempts = int(record.get("ring_attempts") or 0)
        if facts.agent:
            facts.handled_by.add(facts.agent)
    if live:
        call = LiveCall.from_redis(live, uniqueid=uniqueid, lenient=True)
        facts.live = True
        facts.caller = call.caller or facts.caller
        facts.line = call.line or facts.line
        facts.agent = call.agent or facts.agent
        if call.agent:
            facts.handled_by.add(call.agent)
        facts.queue = call.queue or facts.queue
        facts.arrived_at = call.arrived_at or facts.arrived_at
        facts.queued_at = call.queued_at if call.queued_at is not None else facts.queued_at
        facts.answered_at = call.answered_at if call.answered_at is not None else facts.answered_at
        facts.ring_attempts = max(call.ring_attempts, facts.ring_attempts)
        if call.overflowed_from:
            facts.transfers.append({"type": "overflow", "from": call.overflowed_from, "to": call.queue})
    facts.ivr_path = _ivr(ivr_raw) or _ivr(record.get("ivr_path") if record else None)
    if facts.ivr_path and isinstance(facts.ivr_path.get("transfer"), str):
        facts.transfers.insert(0, {"type": "ivr", "to": facts.ivr_path["transfer"]})
    return facts


async def read_call_facts(redis: Redis, pool: asyncpg.Pool, uniqueid: str) -> Optional[CallFacts]:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(Keys.call(uniqueid))
        pipe.get(Keys.ivr_path(uniqueid))
        live, ivr_raw = await pipe.execute()
    record = await pool.fetchrow(f"SELECT {RECORD_FIELDS} FROM calls WHERE uniqueid = $1", uniqueid)
    return facts_from(uniqueid, live or None, dict(record) if record else None, ivr_raw)
