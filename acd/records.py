"""A call's end: its outcome and its one record (``calls`` in PostgreSQL, through the Redis outbox).

:func:`call_outcome` and :func:`call_record` are rules on plain data (tested without Redis);
:meth:`Records.finish` is the one step that applies them: the record into the outbox (kept in
memory while Redis is down), the call out of the live state, the agent rung for it free again.
"""
from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, Optional

from redis.asyncio import Redis
from redis.exceptions import RedisError

from hotline.keys import Keys
from hotline.live import SURVEY_SCORES, CallState, LiveCall
from hotline.model import AbandonedIn, CallOutcome, CallRecord

from .agents import outbox_row
from .callbook import CallBook
from .router import Router
from .transfers import talked_seconds
from .writeback import WriteBack

if TYPE_CHECKING:
    from .agent_service import AgentService
    from .routing import Routing

__all__ = ["HANDLE_TIMES_KEPT", "Records", "call_outcome", "call_record", "read_ivr_path"]

log = logging.getLogger(__name__)

HANDLE_TIMES_KEPT = 20          # the wait estimate averages the handle time of a queue's last 20 calls

_ABANDONED_IN = {CallState.WAITING: AbandonedIn.QUEUE, CallState.RINGING: AbandonedIn.RINGING}


def call_outcome(call: LiveCall) -> tuple[CallOutcome, Optional[AbandonedIn]]:
    """Answered by an agent; served by the IVR (it ended the call itself, or a message was left);
    else abandoned, where the caller was when they hung up."""
    if call.answered_at is not None:
        return CallOutcome.ANSWERED, None
    if call.state == CallState.IVR and not call.caller_hung_up or call.state == CallState.MESSAGE:
        return CallOutcome.IVR_COMPLETED, None
    return CallOutcome.ABANDONED, _ABANDONED_IN.get(call.state, AbandonedIn.IVR)


def read_ivr_path(raw: Optional[str]) -> Any:
    """The IVR path as the IVR stored it (JSON), None when absent or unreadable."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        log.warning("IVR path unreadable: %.80r", raw)
        return None


def _survey(ivr_path: Any) -> Optional[str]:
    # The survey runs after the agent hung up; the IVR stores its rating in the IVR path.
    rating = ivr_path.get("survey") if isinstance(ivr_path, dict) else None
    score = rating.get("score") if isinstance(rating, dict) else None
    return score if score in SURVEY_SCORES.values() else None


def call_record(call: LiveCall, ended_at: float, cause: Optional[int], ivr_path: Any,
                transfers: Optional[list[dict[str, Any]]] = None) -> CallRecord:
    """The record of a call that ended at ``ended_at`` (``cause``: Asterisk's hang-up cause). A
    transferred call keeps this one record: the agent who answered it, every agent who talked (in
    order), its transfers, and as talk time only the time bridged with agents."""
    outcome, where = call_outcome(call)
    talked = [a for a in call.agents.split("+") if a] if call.answered_at is not None else []
    if call.answered_at is not None and not talked and call.agent:
        talked = [call.agent]
    if call.callback:
        # The call back, as ops will ask about it: how many calls it took, answered or not.
        ivr_path = dict(ivr_path) if isinstance(ivr_path, dict) else {}
        ivr_path["callback"] = {"attempts": call.callback_tries + (1 if call.answered_at else 0),
                                "answered": call.answered_at is not None}
    return CallRecord(
        uniqueid=call.uniqueid, linkedid=call.linkedid, line=call.line, caller_id=call.caller or None,
        arrived_at=call.arrived_at, queued_at=call.queued_at, answered_at=call.answered_at,
        talk_ended_at=call.talk_ended_at, ended_at=ended_at, queue=call.queue,
        agent=(talked[0] if talked else call.agent) if call.answered_at else None,
        outcome=outcome, abandoned_in=where, hangup_cause=cause, ring_attempts=call.ring_attempts,
        priority=call.priority, skills=call.skills or None, ivr_path=ivr_path, survey=_survey(ivr_path),
        agents=talked or None, transfers=transfers or None,
        talked_s=talked_seconds(call.talked_s, call.bridged_at, ended_at) if transfers and talked else None)


def handle_seconds(record: CallRecord, wrapup_s: float) -> Optional[float]:
    """Talk plus wrap-up of an answered call: what the queue's wait estimate averages."""
    if record.outcome != CallOutcome.ANSWERED or record.answered_at is None:
        return None
    talk = (record.talk_ended_at or record.ended_at) - record.answered_at
    return round(talk + wrapup_s, 1)


class Records:
    def __init__(self, redis: Redis, router: Router, book: CallBook, writeback: WriteBack,
                 agents: "AgentService", routing: "Routing") -> None:
        self.redis = redis
        self.router = router
        self.book = book
        self.writeback = writeback
        self.agents = agents
        self.routing = routing

    async def finish(self, call: LiveCall, ended_at: float, cause: Optional[int]) -> CallRecord:
        """The call ended: its record, and the agent rung for it (if it was not answered) free again."""
        self.book.ended(call)
        record = call_record(call, ended_at, cause, await self._ivr_path(call), await self._transfers(call))
        await self._write(call, record)
        if call.agent and (record.outcome != CallOutcome.ANSWERED or call.transferring):
            # (a transferred caller may hang up while the next agent is rung for it)
            await self.agents.release(call.agent, call.uniqueid)
        self.routing.schedule()
        return record

    async def _ivr_path(self, call: LiveCall) -> Any:
        try:
            return read_ivr_path(await self.redis.get(Keys.ivr_path(call.uniqueid)))
        except (OSError, RedisError) as exc:
            log.warning("call %s: IVR path unreadable: %s", call.uniqueid, exc)
            return None

    async def _transfers(self, call: LiveCall) -> Optional[list[dict[str, Any]]]:
        """The call's transfers as the transfer scripts noted them in its hash (None: none)."""
        try:
            raw = await self.redis.hget(Keys.call(call.uniqueid), "transfers")
        except (OSError, RedisError) as exc:
            log.warning("call %s: transfers unreadable: %s", call.uniqueid, exc)
            return None
        try:
            entries = json.loads(raw) if raw else None
        except ValueError:
            log.warning("call %s: transfers unreadable: %.80r", call.uniqueid, raw)
            return None
        return entries if isinstance(entries, list) and entries else None

    async def _write(self, call: LiveCall, record: CallRecord) -> None:
        row = outbox_row("call", **record.to_json())
        returning = self.router.queues.returning
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.rpush(Keys.outbox, row)
                handle = handle_seconds(record, self.agents.wrapup_for(record.agent or ""))
                if handle is not None and call.queue:
                    pipe.lpush(Keys.handle_times(call.queue), handle)
                    pipe.ltrim(Keys.handle_times(call.queue), 0, HANDLE_TIMES_KEPT - 1)
                if record.caller_id and record.agent and returning.enabled:
                    pipe.set(Keys.last_agent(record.caller_id), record.agent, ex=int(returning.days * 86400))
                pipe.delete(Keys.call(call.uniqueid))
                pipe.srem(Keys.calls, call.uniqueid)
                pipe.zrem(Keys.waiting, call.uniqueid)
                if call.bucket:
                    await self.router.withdraw(pipe, call.uniqueid, call.bucket)
                pipe.publish(Keys.events, json.dumps({"type": "call_ended", "uniqueid": call.uniqueid,
                                                      "outcome": record.outcome.value, "agent": record.agent}))
                await pipe.execute()
        except (RedisError, OSError) as exc:
            # Redis is down: the record waits in memory and is appended once Redis is back.
            log.warning("call %s: record kept in memory until Redis is back (%s)", call.uniqueid, exc)
            self.writeback.keep_record(row)
