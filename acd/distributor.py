"""The ACD's event loop: follows calls over AMI, routes waiting calls, connects agents.

Inputs are Asterisk's own AMI events (``Newchannel``, ``UserEvent`` from our dialplan,
``DialBegin``/``DialEnd``, ``BridgeEnter``, ``Hangup``); outputs are AMI ``Redirect``
actions and, when a call ends, exactly one call record in the outbox.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from redis.asyncio import Redis
from redis.exceptions import RedisError

from hotline.ami import AMIActionError, AMIError
from hotline.keys import Keys
from hotline.model import AbandonedIn, AgentState, CallOutcome, CallRecord, SkillError, parse_skills, valid_name

from .agents import AgentDirectory, AgentError, outbox_row
from .router import Router, WaitingCall, routing_score

__all__ = ["Distributor", "LiveCall"]

log = logging.getLogger(__name__)


def _clean(value: Optional[str], limit: int = 64) -> str:
    """Caller-controlled text (caller ID) kept printable and short before we store it."""
    if not value or value == "<unknown>":
        return ""
    return "".join(ch for ch in value if ch.isprintable())[:limit]


@dataclass
class LiveCall:
    uniqueid: str
    channel: str
    linkedid: str
    line: str
    caller: str
    arrived_at: float
    queued_at: Optional[float] = None
    queue: Optional[str] = None
    skills: str = ""
    priority: int = 0
    state: str = "ivr"                 # ivr, waiting, ringing, talking
    agent: Optional[str] = None
    answered_at: Optional[float] = None
    ring_attempts: int = 0
    caller_hung_up: bool = False

    def to_redis(self) -> dict[str, str]:
        return {k: "" if v is None else str(v) for k, v in asdict(self).items()}


class Distributor:
    def __init__(self, ami, redis: Redis, agents: AgentDirectory, *, inbound_contexts=("from-trunk",),
                 enterprise_numbers=("123451",), wrapup_s: float = 5.0, default_queue: str = "general",
                 connect_context: str = "hotline-connect", clock=time.time) -> None:
        self.ami = ami
        self.redis = redis
        self.agents = agents
        self.router = Router(redis)
        self.inbound_contexts = set(inbound_contexts)
        self.enterprise_numbers = set(enterprise_numbers)
        self.wrapup_s = wrapup_s
        self.default_queue = default_queue
        self.connect_context = connect_context
        self.clock = clock
        self.calls: dict[str, LiveCall] = {}
        self.waiting: dict[str, WaitingCall] = {}
        self._route_scheduled = False
        self._tasks: set[asyncio.Task] = set()
        self.decisions: list[dict[str, Any]] = []      # recent routing explanations
        self._unsent: list[str] = []                    # finished records Redis could not take yet
        self._resend: Optional[asyncio.Task] = None

    # ---- wiring -------------------------------------------------------------------------
    def attach(self) -> None:
        for name, handler in (("Newchannel", self.on_newchannel), ("UserEvent", self.on_userevent),
                              ("DialBegin", self.on_dialbegin), ("DialEnd", self.on_dialend),
                              ("BridgeEnter", self.on_bridgeenter), ("HangupRequest", self.on_hangup_request),
                              ("Hangup", self.on_hangup)):
            self.ami.on_event(name, handler)

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("ACD task failed", exc_info=task.exception())

    async def wait_idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self, timeout: float = 10.0) -> None:
        await self.wait_idle()
        if self._resend is not None and not self._resend.done():
            try:
                await asyncio.wait_for(self._resend, timeout)
            except asyncio.TimeoutError:
                log.error("Redis still down at shutdown: %d call record(s) not saved: %s",
                          len(self._unsent), self._unsent)

    # ---- AMI events ---------------------------------------------------------------------
    def on_newchannel(self, msg) -> None:
        if msg.get("Context") not in self.inbound_contexts:
            return
        uid = msg.get("Uniqueid", "")
        if not uid or uid in self.calls:
            return
        exten = msg.get("Exten", "")
        call = LiveCall(uid, msg.get("Channel", ""), msg.get("Linkedid", uid),
                        "enterprise" if exten in self.enterprise_numbers else "main",
                        _clean(msg.get("CallerIDNum")), self.clock())
        self.calls[uid] = call
        self._spawn(self._save_call(call, new=True))

    def on_userevent(self, msg) -> None:
        name = msg.get("UserEvent")
        call = self.calls.get(msg.get("Uniqueid", ""))
        if call is None:
            return
        if name == "HotlineWaiting":
            self._enqueue(call, msg)
        elif name == "HotlineRingNoAnswer":
            self._agent_missed(call, msg.get("Agent", ""), msg.get("DialStatus", ""))

    def _enqueue(self, call: LiveCall, msg) -> None:
        queue = msg.get("Queue") or self.default_queue
        if not valid_name(queue):
            log.warning("call %s: invalid queue %r, using %s", call.uniqueid, queue, self.default_queue)
            queue = self.default_queue
        try:
            skills = parse_skills(msg.get("Skills", ""))
        except SkillError as exc:
            log.warning("call %s: %s; no skill required", call.uniqueid, exc)
            skills = {}
        try:
            priority = int(msg.get("Priority") or 0)
        except ValueError:
            priority = 0
        now = self.clock()
        if call.queued_at is None:
            call.queued_at = now
        call.queue, call.priority, call.state = queue, priority, "waiting"
        call.skills = "+".join(f"{k}:{v}" for k, v in skills.items())
        # A call coming back (agent did not answer) keeps its original place: head of its priority.
        waiting = WaitingCall(call.uniqueid, call.channel, queue, skills, priority, call.queued_at)
        self.waiting[call.uniqueid] = waiting
        self._spawn(self._save_waiting(call, waiting))

    def on_dialbegin(self, msg) -> None:
        call = self.calls.get(msg.get("Uniqueid", ""))
        if call is not None:
            call.ring_attempts += 1

    def on_dialend(self, msg) -> None:
        call = self.calls.get(msg.get("Uniqueid", ""))
        if call is None:
            return
        status = msg.get("DialStatus", "")
        if status != "ANSWER" and call.agent and status != "CANCEL":
            self._agent_missed(call, call.agent, status)

    def _agent_missed(self, call: LiveCall, agent_id: str, status: str) -> None:
        agent = self.agents.agents.get(agent_id)
        if agent is None or agent.state != AgentState.RESERVED or agent.call != call.uniqueid:
            return
        call.agent, call.state = None, "waiting"
        self._spawn(self._transition(agent_id, AgentState.NOT_READY, reason="no_answer"))

    def on_bridgeenter(self, msg) -> None:
        call = self.calls.get(msg.get("Uniqueid", ""))
        if call is None or call.answered_at is not None:
            return
        call.answered_at = self.clock()
        call.state = "talking"
        if call.agent:
            self._spawn(self._transition(call.agent, AgentState.ON_CALL, call=call.uniqueid))
        self._spawn(self._save_call(call))

    def on_hangup_request(self, msg) -> None:
        call = self.calls.get(msg.get("Uniqueid", ""))
        if call is not None:
            call.caller_hung_up = True

    def on_hangup(self, msg) -> None:
        uid = msg.get("Uniqueid", "")
        call = self.calls.pop(uid, None)
        if call is None:
            self._agent_leg_ended(msg)
            return
        self.waiting.pop(uid, None)
        cause = msg.get("Cause", "")
        self._spawn(self._finish(call, self.clock(), int(cause) if cause.isdigit() else None))

    def _agent_leg_ended(self, msg) -> None:
        # The agent's leg ending is what starts wrap-up (the caller may stay for a survey).
        channel = msg.get("Channel", "")
        if not channel.startswith("PJSIP/"):
            return
        agent_id = channel[6:].rsplit("-", 1)[0]
        agent = self.agents.agents.get(agent_id)
        if agent is None:
            return
        if agent.state == AgentState.ON_CALL:
            self._spawn(self._start_wrapup(agent_id))

    # ---- state changes ------------------------------------------------------------------
    async def _transition(self, agent_id: str, state: AgentState, **kw) -> None:
        try:
            await self.agents.transition(agent_id, state, **kw)
        except AgentError as exc:
            log.warning("%s", exc)
        except (RedisError, OSError) as exc:
            log.warning("agent %s -> %s kept in memory until Redis is back: %s", agent_id, state.value, exc)
            self._redis_failed()
        if state == AgentState.READY:
            self.schedule_routing()

    async def _start_wrapup(self, agent_id: str) -> None:
        await self._transition(agent_id, AgentState.WRAPUP)
        since = self.agents.get(agent_id).state_since
        await asyncio.sleep(self.wrapup_s)
        agent = self.agents.agents.get(agent_id)
        # Only if nothing else happened to this agent meanwhile (extension, logout, ...).
        if agent is not None and agent.state == AgentState.WRAPUP and agent.state_since == since:
            await self._transition(agent_id, AgentState.READY)

    async def _finish(self, call: LiveCall, ended_at: float, cause: Optional[int]) -> None:
        if call.answered_at is not None:
            outcome, where = CallOutcome.ANSWERED, None
        else:
            outcome = CallOutcome.ABANDONED
            where = {"waiting": AbandonedIn.QUEUE, "ringing": AbandonedIn.RINGING}.get(call.state, AbandonedIn.IVR)
            if call.state == "ivr" and not call.caller_hung_up:
                outcome, where = CallOutcome.IVR_COMPLETED, None
        ivr_path = None
        try:
            raw = await self.redis.get(Keys.ivr_path(call.uniqueid))
            ivr_path = json.loads(raw) if raw else None
        except (ValueError, OSError, RedisError) as exc:
            log.warning("call %s: IVR path unreadable: %s", call.uniqueid, exc)
        record = CallRecord(
            uniqueid=call.uniqueid, linkedid=call.linkedid, line=call.line, caller_id=call.caller or None,
            arrived_at=call.arrived_at, queued_at=call.queued_at, answered_at=call.answered_at,
            ended_at=ended_at, queue=call.queue, agent=call.agent if call.answered_at else None,
            outcome=outcome, abandoned_in=where, hangup_cause=cause, ring_attempts=call.ring_attempts,
            priority=call.priority, skills=call.skills or None, ivr_path=ivr_path)
        row = outbox_row("call", **record.to_json())
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.rpush(Keys.outbox, row)
                pipe.delete(Keys.call(call.uniqueid))
                pipe.srem(Keys.calls, call.uniqueid)
                pipe.zrem(Keys.waiting, call.uniqueid)
                pipe.publish(Keys.events, json.dumps({"type": "call_ended", "uniqueid": call.uniqueid,
                                                      "outcome": outcome.value, "agent": record.agent}))
                await pipe.execute()
        except (RedisError, OSError) as exc:
            # Redis is down: the record waits in memory and is appended once Redis is back.
            log.warning("call %s: record kept in memory until Redis is back (%s)", call.uniqueid, exc)
            self._unsent.append(row)
            self._redis_failed()
        if outcome != CallOutcome.ANSWERED:
            # The agent whose phone was ringing for this caller is free again.
            agent = self.agents.agents.get(call.agent or "")
            if agent is not None and agent.state == AgentState.RESERVED and agent.call == call.uniqueid:
                await self._transition(agent.id, AgentState.READY)
        self.schedule_routing()

    def _redis_failed(self) -> None:
        if self._resend is None or self._resend.done():
            self._resend = asyncio.create_task(self._resend_records())

    async def _resend_records(self, interval: float = 0.5) -> None:
        """After a Redis outage: hand over the records and agent states kept in memory."""
        while self._unsent or self.agents.dirty or self.agents.unsaved_rows:
            await asyncio.sleep(interval)
            try:
                if self._unsent:
                    await self.redis.rpush(Keys.outbox, *self._unsent)
                    log.info("%d call record(s) handed to the outbox after a Redis outage", len(self._unsent))
                    self._unsent.clear()
                await self.agents.save_dirty()
            except (RedisError, OSError):
                continue
        self.schedule_routing()

    async def _save_call(self, call: LiveCall, new: bool = False) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(Keys.call(call.uniqueid), mapping=call.to_redis())
            if new:
                pipe.sadd(Keys.calls, call.uniqueid)
            await pipe.execute()

    async def _save_waiting(self, call: LiveCall, waiting: WaitingCall) -> None:
        delay = 0.2
        # The caller waits in Asterisk whatever happens; keep trying while they are still waiting.
        while self.waiting.get(call.uniqueid) is waiting:
            try:
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.hset(Keys.call(call.uniqueid), mapping=call.to_redis())
                    pipe.zadd(Keys.waiting, {call.uniqueid: waiting.score})
                    pipe.publish(Keys.events, json.dumps({"type": "call_waiting", "uniqueid": call.uniqueid,
                                                          "queue": call.queue, "caller": call.caller}))
                    await pipe.execute()
                break
            except (RedisError, OSError) as exc:
                log.warning("call %s: cannot queue in Redis (%s); retrying", call.uniqueid, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        self.schedule_routing()

    # ---- routing ------------------------------------------------------------------------
    def schedule_routing(self) -> None:
        """Route once per loop turn however many events asked for it."""
        if not self._route_scheduled:
            self._route_scheduled = True
            self._spawn(self._route())

    async def _route(self) -> None:
        await asyncio.sleep(0)
        self._route_scheduled = False
        for decision in self.router.choose(self.waiting.values(), self.agents.ready_agents()):
            call, agent = decision.call, decision.agent
            now = self.clock()
            if not await self.router.claim(call, agent, now):
                continue
            self.waiting.pop(call.uniqueid, None)
            await self.agents.record_claimed(agent)
            live = self.calls.get(call.uniqueid)
            if live is not None:
                live.state, live.agent = "ringing", agent.id
            explanation = {"at": now, "call": call.uniqueid, "agent": agent.id, "queue": call.queue,
                           "priority": call.priority, "skills": call.skills, "candidates": decision.candidates,
                           "rule": "priority, then longest wait; longest idle agent with the skills"}
            self.decisions = (self.decisions + [explanation])[-200:]
            log.info("route call %s -> agent %s (candidates %s)", call.uniqueid, agent.id, decision.candidates)
            self._spawn(self._connect(call, agent.id))

    async def _connect(self, call: WaitingCall, agent_id: str) -> None:
        try:
            await self.ami.send_action({"Action": "Redirect", "Channel": call.channel,
                                        "Context": self.connect_context, "Exten": agent_id, "Priority": "1"})
        except (AMIActionError, AMIError, OSError) as exc:
            # The caller hung up meanwhile (or Asterisk is gone): free the agent again.
            log.warning("redirect of %s to %s failed: %s", call.channel, agent_id, exc)
            agent = self.agents.agents.get(agent_id)
            if agent is not None and agent.state == AgentState.RESERVED and agent.call == call.uniqueid:
                await self._transition(agent_id, AgentState.READY)
