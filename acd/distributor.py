"""The ACD's event loop: follows calls over AMI, routes waiting calls, connects agents.

Inputs are Asterisk's own AMI events (``Newchannel``, ``UserEvent`` from our dialplan,
``DialBegin``/``DialEnd``, ``BridgeEnter``, ``Hangup``); outputs are AMI ``Redirect``
actions and, when a call ends, exactly one call record in the outbox.

Its other parts are mixed in: recovery (``acd/recovery.py``), the queue experience with virtual
hold and returning callers (``acd/experience.py``), and what it does about the other ACD nodes
(``acd/peers.py``).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Optional

from redis.asyncio import Redis
from redis.exceptions import RedisError

from hotline.ami import AMIActionError, AMIError
from hotline.keys import Keys
from hotline.live import SURVEY_SCORES
from hotline.model import AbandonedIn, AgentState, CallOutcome, CallRecord, SkillError, parse_skills, valid_name

from .agents import AgentDirectory, AgentError, outbox_row
from .calls import ENDED_KEPT_S, LiveCall, clean_text
from .cluster import Cluster, node_channel
from .peers import WITNESS_KEPT_S, PeerHandling, Witnessed
from .experience import QueueExperience
from .queues import QueueBook
from .recovery import Recovery
from .router import AgentChanged, Decision, Router, WaitingCall

__all__ = ["Distributor"]

log = logging.getLogger(__name__)

HANDLE_TIMES_KEPT = 20          # the wait estimate averages the handle time of a queue's last 20 calls

# The first node to write a new call's hash follows it (two nodes' views of the membership may
# differ for a moment); a node adopting a dead node's call takes it over only from that node.
# KEYS: call hash, live calls set; ARGV: this node, the node it must still be ("" for a new call),
# uniqueid, then field/value pairs
CLAIM = """
local owner = redis.call('HGET', KEYS[1], 'owner') or ''
if owner ~= '' and owner ~= ARGV[1] and owner ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('HSET', KEYS[1], 'owner', ARGV[1])
redis.call('SADD', KEYS[2], ARGV[3])
return 1
"""


class Distributor(Recovery, QueueExperience, PeerHandling):
    def __init__(self, ami, redis: Redis, agents: AgentDirectory, *, inbound_contexts=("from-trunk",),
                 enterprise_numbers=("123451",), wrapup_s: float = 5.0, default_queue: str = "general",
                 connect_context: str = "hotline-connect", queues: Optional[QueueBook] = None,
                 cluster: Optional[Cluster] = None, clock=time.time) -> None:
        self.ami = ami
        self.redis = redis
        self.agents = agents
        # Alone, this node follows every call; with peers, the calls that hash to it (acd/cluster.py).
        self.cluster = cluster
        self.node = cluster.node if cluster is not None else agents.node
        agents.node = self.node
        self.router = Router(redis, queues, clock=clock, node=self.node)
        self._claim = redis.register_script(CLAIM)
        self.inbound_contexts = set(inbound_contexts)
        # Where a caller's channel can be while the ACD follows it (recovery adopts these).
        self.caller_contexts = self.inbound_contexts | {"hotline-inbound", "hotline-wait", connect_context}
        self.enterprise_numbers = set(enterprise_numbers)
        self.wrapup_s = wrapup_s
        self.default_queue = default_queue
        self.connect_context = connect_context
        self.clock = clock
        self.calls: dict[str, LiveCall] = {}
        self.waiting: dict[str, WaitingCall] = {}
        self._route_scheduled = False
        self._to_offer: list[str] = []                  # agents just freed, offered in order
        self._wrapup_until: dict[str, float] = {}       # agent -> when its wrap-up ends
        self._offer_scheduled = False
        self._tasks: set[asyncio.Task] = set()
        self.decisions: list[dict[str, Any]] = []      # recent routing explanations
        self._unsent: list[str] = []                    # finished records Redis could not take yet
        self._resend: Optional[asyncio.Task] = None
        self.witnessed: dict[str, Witnessed] = {}      # callers another node follows (by uniqueid)
        self._witness_expiry: list[tuple[float, str]] = []
        self.followed = 0                               # calls this node followed from their start
        self.handed_in = 0                              # calls another node's decision handed to us
        self.handed_out = 0                             # our decisions for calls another node follows
        # Calls that ended lately (uniqueid, or call-back leg -> the call's uniqueid): a late duplicate
        # of one of their events must not start them again nor touch the agent's next call.
        self._ended: dict[str, tuple[float, str]] = {}
        self._dials: dict[str, dict[str, bool]] = {}     # caller -> {agent leg uniqueid: its Dial ended}

    # ---- wiring -------------------------------------------------------------------------
    def attach(self) -> None:
        for name, handler in (("Newchannel", self.on_newchannel), ("UserEvent", self.on_userevent),
                              ("DialBegin", self.on_dialbegin), ("DialEnd", self.on_dialend),
                              ("BridgeEnter", self.on_bridgeenter), ("BridgeLeave", self.on_bridgeleave),
                              ("HangupRequest", self.on_hangup_request),
                              ("Hangup", self.on_hangup)):
            self.ami.on_event(name, handler)
        self.ami.on_connected(self._reconnected)

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
        await self.router.aclose()

    # ---- AMI events ---------------------------------------------------------------------
    def on_newchannel(self, msg) -> None:
        if msg.get("Context") not in self.inbound_contexts:
            return
        uid = msg.get("Uniqueid", "")
        if not uid or uid in self.calls or uid in self._ended:
            return                      # (a late duplicate of an ended call's Newchannel)
        linkedid = msg.get("Linkedid") or uid
        if not self.owns(linkedid):
            self._witness(msg)          # another node follows this call; we only watch
            return
        exten = msg.get("Exten", "")
        call = LiveCall(uid, msg.get("Channel", ""), linkedid,
                        "enterprise" if exten in self.enterprise_numbers else "main",
                        clean_text(msg.get("CallerIDNum")), self.clock(), owner=self.node)
        self.calls[uid] = call
        self.followed += 1
        self._spawn(self._save_call(call, new=True))

    def on_userevent(self, msg) -> None:
        name = msg.get("UserEvent")
        if name == "HotlineAgent":
            self._agent_feature_code(msg)
            return
        if name == "HotlineCallbackAnswered":
            self._callback_answered(msg)
            return
        call = self.calls.get(msg.get("Uniqueid", ""))
        if call is None:
            return
        if name == "HotlineWaiting":
            if call.answered_at is not None:
                return          # answered calls never queue again (hotline-survey follows): a late duplicate
            if call.state == "ringing":
                # Back in the queue with its DialEnd and HotlineRingNoAnswer lost, or a late duplicate
                # of the event that queued it: Asterisk knows where the channel is.
                self._spawn(self._waiting_again(call, msg))
                return
            self._enqueue(call, msg)
        elif name == "HotlineQueueChoice":
            self._queue_choice(call, msg.get("Choice", ""), msg.get("Number", ""))
        elif name == "HotlineRingNoAnswer":
            if not all(self._dials.get(call.uniqueid, {}).values()):
                return          # the agent it names is being rung right now: a late duplicate
            self._agent_missed(call, msg.get("Agent", ""), msg.get("DialStatus", ""))

    async def _waiting_again(self, call: LiveCall, msg) -> None:
        context = await self._getvar(call.channel, "CONTEXT")
        if self.calls.get(call.uniqueid) is not call or call.state != "ringing" or context != "hotline-wait":
            return
        self._agent_missed(call, call.agent or "", "NOANSWER")
        self._enqueue(call, msg)

    _REASON_DIGITS = {"1": "break", "2": "meal", "3": "training", "4": "meeting"}

    def _agent_feature_code(self, msg) -> None:
        """*41 log in, *42 log out, *43 ready, *44N not ready, dialled on the agent's own phone."""
        agent_id, action = msg.get("Agent", ""), msg.get("Action", "")
        # Only the agent's own phone, in the agents' context, speaks for the agent.
        if msg.get("Context") != "agents" or not msg.get("Channel", "").startswith(f"PJSIP/{agent_id}-"):
            log.warning("feature code from %s ignored (agent %r)", msg.get("Channel"), agent_id)
            return
        if not self.owns(msg.get("Linkedid") or msg.get("Uniqueid", "")):
            return                      # one node acts on it
        agent = self.agents.agents.get(agent_id)
        if agent is None:
            log.warning("feature code %s from unknown agent %r", action, agent_id)
            return
        if action == "login" and agent.state == AgentState.LOGGED_OUT or action == "ready":
            self._spawn(self.free_agent(agent_id))
        elif action == "logout":
            self._spawn(self._transition(agent_id, AgentState.LOGGED_OUT))
        elif action == "not_ready" and msg.get("Reason") in self._REASON_DIGITS:
            self._spawn(self._transition(agent_id, AgentState.NOT_READY, reason=self._REASON_DIGITS[msg["Reason"]]))
        else:
            log.warning("agent %s: feature code %s not understood", agent_id, action)

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
            priority = int(msg.get("CallPriority") or 0)
        except ValueError:
            priority = 0
        now = self.clock()
        first_entry = call.queued_at is None
        if call.queued_at is None:
            call.queued_at = now
        call.queue, call.priority, call.state = queue, priority, "waiting"
        call.skills = "+".join(f"{k}:{v}" for k, v in skills.items())
        # A call coming back (agent did not answer) keeps its original place: head of its priority.
        waiting = WaitingCall(call.uniqueid, call.channel, queue, skills, priority, call.queued_at)
        # Queued elsewhere before (a returning caller's own bucket, found again by recovery): it
        # leaves that bucket, or two agents could be offered it.
        leaving = call.bucket if call.bucket != waiting.bucket else ""
        call.bucket = waiting.bucket
        self.waiting[call.uniqueid] = waiting
        if first_entry and call.caller and self.router.queues.returning.enabled:
            self._spawn(self._returning(call, waiting))
            return
        self._spawn(self._save_waiting(call, waiting, leaving))

    def on_dialbegin(self, msg) -> None:
        call = self.calls.get(msg.get("Uniqueid", ""))
        if call is not None:
            dials = self._dials.setdefault(call.uniqueid, {})
            leg = msg.get("DestUniqueid", "")
            if leg in dials:
                return                  # a duplicate: this ring is counted
            for other in dials:         # one Dial at a time: any earlier one is over (its DialEnd lost)
                dials[other] = True
            dials[leg] = False
        call = call or self._witness(msg)
        if call is not None:
            call.ring_attempts += 1

    def on_dialend(self, msg) -> None:
        call = self.calls.get(msg.get("Uniqueid", ""))
        if call is None:
            return
        dials = self._dials.setdefault(call.uniqueid, {})
        leg = msg.get("DestUniqueid", "")
        if dials.get(leg):
            return                      # a duplicate: this Dial's end was handled
        dials[leg] = True
        status = msg.get("DialStatus", "")
        # Only the end of ringing the agent reserved now (not a late copy of an earlier agent's).
        if status != "ANSWER" and call.agent and status != "CANCEL" \
                and msg.get("DestChannel", "").startswith(f"PJSIP/{call.agent}-"):
            self._agent_missed(call, call.agent, status)

    def _agent_missed(self, call: LiveCall, agent_id: str, status: str) -> None:
        agent = self.agents.agents.get(agent_id)
        if agent is None or agent.state != AgentState.RESERVED or agent.call != call.uniqueid:
            return
        if call.agent != agent_id:
            return      # already handled: DialEnd and HotlineRingNoAnswer both report the same miss
        call.agent, call.state = None, "waiting"
        self._spawn(self._transition(agent_id, AgentState.NOT_READY, reason="no_answer"))

    def on_bridgeenter(self, msg) -> None:
        call = self.calls.get(msg.get("Uniqueid", ""))
        if call is None:
            seen = self._witness(msg)
            if seen is not None and seen.answered_at is None:
                seen.answered_at = self.clock()
            return
        if call.answered_at is not None:
            return
        call.answered_at = self.clock()
        call.state = "talking"
        if call.agent:
            self._spawn(self._transition(call.agent, AgentState.ON_CALL, call=call.uniqueid))
        self._spawn(self._save_call(call))

    def on_bridgeleave(self, msg) -> None:
        # Talk time ends with the conversation, not with the survey that may follow it.
        call = self.calls.get(msg.get("Uniqueid", "")) or self._witness(msg)
        if call is not None and call.answered_at is not None and call.talk_ended_at is None:
            call.talk_ended_at = self.clock()

    def on_hangup_request(self, msg) -> None:
        call = self.calls.get(msg.get("Uniqueid", "")) or self._witness(msg)
        if call is not None:
            call.caller_hung_up = True

    def on_hangup(self, msg) -> None:
        uid = msg.get("Uniqueid", "")
        call = self.calls.pop(uid, None)
        if call is None:
            seen = self._witness(msg)
            if seen is not None and seen.ended_at is None:
                now = self.clock()
                cause = msg.get("Cause", "")
                seen.ended_at, seen.cause = now, int(cause) if cause.isdigit() else None
                self._witness_expiry.append((now + WITNESS_KEPT_S, uid))
                self._forget_witnessed(now)
            self._agent_leg_ended(msg)
            return
        if call.callback and uid != call.uniqueid and call.leg == "pending":
            # A call back found ringing by recovery (its Originate was the dead process's) ended
            # unanswered: failed, as if its Originate had said so.
            self._spawn(self._call_back_failed(call, call.agent or "", "not answered"))
            return
        if call.callback and uid == call.uniqueid:
            # Virtual hold: the caller hung up after asking for a call back; the place is kept (the
            # call ends with its call-back leg, or when the call back fails).
            self.calls[uid] = call
            if not call.leg or call.leg == "pending":
                call.channel = ""
                waiting = self.waiting.get(uid)
                if waiting is not None:
                    waiting.channel = ""
            self._spawn(self._save_call(call))
            return
        if call.uniqueid != uid:
            self.calls.pop(call.uniqueid, None)      # the call-back leg ended: so did the call
        elif call.leg:
            self.calls.pop(call.leg, None)
        self.waiting.pop(call.uniqueid, None)
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
        # Only the leg of the agent's current call (Linkedid: the caller, or its call-back leg); a
        # late duplicate of an earlier leg's Hangup must not wrap up the call the agent is on.
        linked = msg.get("Linkedid", "")
        if linked and agent.call and linked != agent.call:
            call = self.calls.get(linked)
            if (call.uniqueid if call is not None else self._ended.get(linked, (0.0, ""))[1]) != agent.call:
                return
        # The node following the agent's call starts its wrap-up.
        if agent.state == AgentState.ON_CALL and self.follows(agent):
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
            self.offer_agent(agent_id)

    def wrapup_for(self, agent_id: str) -> float:
        agent = self.agents.agents.get(agent_id)
        team = agent.team if agent is not None else ""
        return self.router.queues.wrapup_s.get(team, self.wrapup_s)

    async def extend_wrapup(self, agent_id: str, seconds: float) -> float:
        """The agent needs longer to finish the ticket: push the end of wrap-up back (also when
        another node times this wrap-up: the end is in Redis and that node is told)."""
        agent = self.agents.get(agent_id)
        local = agent_id in self._wrapup_until
        if agent.state != AgentState.WRAPUP or not (local or self.alive(agent.node)):
            raise AgentError(f"agent {agent_id} is {agent.state.value}, not in wrap-up")
        if not await self.redis.hexists(Keys.agent(agent_id), "wrapup_until"):
            raise AgentError(f"agent {agent_id}: wrap-up end not known yet; try again")
        until = float(await self.redis.hincrbyfloat(Keys.agent(agent_id), "wrapup_until", seconds))
        if local:
            self._wrapup_until[agent_id] = max(self._wrapup_until[agent_id], until)
        else:
            await self.redis.publish(node_channel(agent.node), json.dumps(
                {"type": "wrapup", "agent": agent_id, "until": until}))
        return until

    async def _start_wrapup(self, agent_id: str) -> None:
        await self._transition(agent_id, AgentState.WRAPUP)
        since = self.agents.get(agent_id).state_since
        self._wrapup_until[agent_id] = since + self.wrapup_for(agent_id)
        try:
            await self.redis.hset(Keys.agent(agent_id), "wrapup_until", repr(self._wrapup_until[agent_id]))
        except (RedisError, OSError):
            pass                            # only extensions asked of other nodes need it
        try:
            while True:
                left = self._wrapup_until[agent_id] - self.clock()
                if left > 0:
                    await asyncio.sleep(left)
                agent = self.agents.agents.get(agent_id)
                # Only if nothing else happened to this agent meanwhile (logout, not ready, ...).
                if agent is None or agent.state != AgentState.WRAPUP or agent.state_since != since:
                    return
                if self._wrapup_until[agent_id] <= self.clock():
                    break
        finally:
            if self._wrapup_until.get(agent_id) is not None and self.agents.agents.get(agent_id) is not None \
                    and self.agents.agents[agent_id].state_since == since:
                self._wrapup_until.pop(agent_id, None)
        await self.free_agent(agent_id)

    async def free_agent(self, agent_id: str, _again: bool = True) -> None:
        """The agent becomes ready and is offered the best waiting call in one script."""
        now = self.clock()
        try:
            step = self.agents.ready_step(agent_id, now)
        except AgentError as exc:
            log.warning("%s", exc)
            return
        try:
            # (A returning caller waiting for this agent is taken first, in the same script.)
            decision = await self.router.offer(agent_id, self.agents.get(agent_id).skills, now,
                                               becoming_ready=step)
        except AgentChanged as exc:
            # Another node (or request) changed the agent since our copy: check again with Redis's.
            log.info("%s; ready checked again", exc)
            if _again and await self.agents.reload(agent_id) is not None:
                await self.free_agent(agent_id, _again=False)
            return
        except (RedisError, OSError):
            await self._transition(agent_id, AgentState.READY)      # kept in memory, saved later
            return
        self.agents.became_ready(agent_id, now)
        if decision is not None:
            await self._assigned(decision)

    def _remember_ended(self, call: LiveCall) -> None:
        now = self.clock()
        self._dials.pop(call.uniqueid, None)
        for uid in (call.uniqueid, call.leg):
            if uid and uid != "pending":
                self._ended[uid] = (now + ENDED_KEPT_S, call.uniqueid)
        while self._ended:
            oldest = next(iter(self._ended))
            if self._ended[oldest][0] >= now:
                break
            del self._ended[oldest]

    async def _finish(self, call: LiveCall, ended_at: float, cause: Optional[int]) -> None:
        self._remember_ended(call)
        if call.answered_at is not None:
            outcome, where = CallOutcome.ANSWERED, None
        else:
            outcome = CallOutcome.ABANDONED
            where = {"waiting": AbandonedIn.QUEUE, "ringing": AbandonedIn.RINGING}.get(call.state, AbandonedIn.IVR)
            if call.state == "ivr" and not call.caller_hung_up or call.state == "message":
                outcome, where = CallOutcome.IVR_COMPLETED, None      # served by the IVR (a message left)
        ivr_path, survey = None, None
        try:
            raw = await self.redis.get(Keys.ivr_path(call.uniqueid))
            ivr_path = json.loads(raw) if raw else None
            # The survey runs after the agent hung up; the IVR stores its rating with the call.
            rating = (ivr_path or {}).get("survey") or {}
            survey = rating.get("score") if rating.get("score") in SURVEY_SCORES.values() else None
        except (ValueError, OSError, RedisError, AttributeError) as exc:
            log.warning("call %s: IVR path unreadable: %s", call.uniqueid, exc)
        if call.callback:
            # The call back, as ops will ask about it: how many calls it took, answered or not.
            ivr_path = dict(ivr_path) if isinstance(ivr_path, dict) else {}
            ivr_path["callback"] = {"attempts": call.callback_tries + (1 if call.answered_at else 0),
                                    "answered": call.answered_at is not None}
        record = CallRecord(
            uniqueid=call.uniqueid, linkedid=call.linkedid, line=call.line, caller_id=call.caller or None,
            arrived_at=call.arrived_at, queued_at=call.queued_at, answered_at=call.answered_at,
            talk_ended_at=call.talk_ended_at, ended_at=ended_at, queue=call.queue,
            agent=call.agent if call.answered_at else None,
            outcome=outcome, abandoned_in=where, hangup_cause=cause, ring_attempts=call.ring_attempts,
            priority=call.priority, skills=call.skills or None, ivr_path=ivr_path, survey=survey)
        row = outbox_row("call", **record.to_json())
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.rpush(Keys.outbox, row)
                if outcome == CallOutcome.ANSWERED and call.queue:
                    # Handle time (talk + wrap-up) of the queue's last calls: what the wait estimate uses.
                    talk = (call.talk_ended_at or ended_at) - call.answered_at
                    pipe.lpush(Keys.handle_times(call.queue), round(talk + self.wrapup_for(call.agent or ""), 1))
                    pipe.ltrim(Keys.handle_times(call.queue), 0, HANDLE_TIMES_KEPT - 1)
                if call.caller and call.agent and outcome == CallOutcome.ANSWERED and self.router.queues.returning.enabled:
                    pipe.set(Keys.last_agent(call.caller), call.agent,
                             ex=int(self.router.queues.returning.days * 86400))
                pipe.delete(Keys.call(call.uniqueid))
                pipe.srem(Keys.calls, call.uniqueid)
                pipe.zrem(Keys.waiting, call.uniqueid)
                if call.bucket:
                    await self.router.withdraw(pipe, call.uniqueid, call.bucket)
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

    async def _save_call(self, call: LiveCall, new: bool = False, taking_from: str = "") -> bool:
        """Save the call's live state; a new call (or one adopted from a dead node) is claimed
        in the same script: False when another node follows it (we then let it go)."""
        if not new and not taking_from:
            await self.redis.hset(Keys.call(call.uniqueid), mapping=call.to_redis())
            return True
        flat = [item for pair in call.to_redis().items() for item in pair]
        claimed = await self._claim(keys=[Keys.call(call.uniqueid), Keys.calls],
                                    args=[self.node, taking_from, call.uniqueid, *flat])
        if claimed:
            call.owner = self.node
            return True
        log.info("call %s: followed by another node", call.uniqueid)
        if self.calls.get(call.uniqueid) is call:
            del self.calls[call.uniqueid]
            # From here on only witnessed, in case that node dies before the call ends.
            self.witnessed[call.uniqueid] = Witnessed(call.ring_attempts, call.answered_at, call.talk_ended_at,
                                                      call.caller_hung_up)
        self.waiting.pop(call.uniqueid, None)
        return False

    async def _save_waiting(self, call: LiveCall, waiting: WaitingCall, leaving: str = "") -> None:
        delay = 0.2
        # The caller waits in Asterisk whatever happens; keep trying while they are still waiting.
        while self.waiting.get(call.uniqueid) is waiting:
            try:
                async with self.redis.pipeline(transaction=True) as pipe:
                    if leaving:
                        await self.router.withdraw(pipe, call.uniqueid, leaving)
                    pipe.hset(Keys.call(call.uniqueid), mapping=call.to_redis())
                    pipe.publish(Keys.events, json.dumps({"type": "call_waiting", "uniqueid": call.uniqueid,
                                                          "queue": call.queue, "caller": call.caller}))
                    await pipe.execute()
                # One script: the best ready agent by the queue's strategy, or a place in the queue.
                decision = await self.router.arrive(waiting)
                break
            except (RedisError, OSError) as exc:
                log.warning("call %s: cannot queue in Redis (%s); retrying", call.uniqueid, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        else:
            return
        if decision is not None:
            await self._assigned(decision)
            return
        # Skill expansion: when the requirement widens, ready agents look again.
        loop = asyncio.get_running_loop()
        waited = self.clock() - waiting.queued_at
        rules = self.router.queues.get(waiting.queue)
        if rules.limited and not (call.overflowed_from and rules.overflow) and not call.callback:
            too_long = False
            if rules.max_length is not None:
                try:
                    too_long = await self.queue_length(waiting.queue) > rules.max_length
                except (RedisError, OSError):
                    pass
            if too_long or (rules.max_wait_s is not None and waited >= rules.max_wait_s):
                await self._limit_reached(call.uniqueid, waiting)
            elif rules.max_wait_s is not None:
                loop.call_later(rules.max_wait_s - waited, self._limit_due, call.uniqueid, waiting)
        for after in self.router.waits_that_matter(waiting):
            if after > waited:
                loop.call_later(after - waited + 0.01, self._expansion_due, call.uniqueid)

    def _expansion_due(self, uniqueid: str) -> None:
        if uniqueid in self.waiting:
            self.schedule_routing()

    # ---- routing ------------------------------------------------------------------------
    def offer_agent(self, agent_id: str) -> None:
        """An agent became free: offer it the best waiting call (agents offered in the order freed)."""
        self._to_offer.append(agent_id)
        if not self._offer_scheduled:
            self._offer_scheduled = True
            self._spawn(self._offer_pending())

    async def _offer_pending(self) -> None:
        try:
            while self._to_offer:
                agent_id = self._to_offer.pop(0)
                await self._offer(agent_id)
        finally:
            self._offer_scheduled = False

    async def _offer(self, agent_id: str) -> None:
        agent = self.agents.agents.get(agent_id)
        if agent is None or agent.state != AgentState.READY:
            return
        try:
            decision = await self.router.offer(agent_id, agent.skills)
        except (RedisError, OSError) as exc:
            log.warning("agent %s: routing failed (%s); again when Redis answers", agent_id, exc)
            self._redis_failed()
            return
        if decision is not None:
            await self._assigned(decision)

    def schedule_routing(self) -> None:
        """Offer every ready agent (longest idle first) once per loop turn, however many ask."""
        if not self._route_scheduled:
            self._route_scheduled = True
            self._spawn(self._route())

    async def _route(self) -> None:
        await asyncio.sleep(0)
        self._route_scheduled = False
        ready = self.agents.ready_agents()
        try:
            if not ready or not await self.redis.zcard(Keys.waiting):
                return
        except (RedisError, OSError):
            return
        for agent in ready:
            await self._offer(agent.id)

    async def _assigned(self, decision: Decision, decided_here: bool = True) -> None:
        """The script reserved this agent for this call: remember it, explain it, ring the agent
        (or, when another node follows the call, leave the ringing to it: the script told it)."""
        agent = self.agents.agents.get(decision.agent)
        if agent is None:
            # Added by another process since we loaded: read it rather than lose the call.
            agent = await self.agents.reload(decision.agent) or self.agents.get(decision.agent)
        follower = decision.owner or self.node
        agent.state, agent.state_since, agent.call, agent.reason, agent.node = (
            AgentState.RESERVED, decision.at, decision.call, "", follower)
        if follower != self.node:
            self.handed_out += 1
            log.info("route call %s -> agent %s: %s; node %s rings it", decision.call, agent.id, decision.rule,
                     follower)
            explanation = decision.explain()
            self.decisions = (self.decisions + [explanation])[-200:]
            try:
                await self.agents.record_claimed(agent, explanation)
            except (RedisError, OSError) as exc:
                log.warning("agent %s: reservation history not saved (%s)", agent.id, exc)
            return
        waiting = self.waiting.pop(decision.call, None)
        live = self.calls.get(decision.call)
        if live is not None:
            live.state, live.agent = "ringing", agent.id
        channel = waiting.channel if waiting else (live.channel if live else
                                                   await self.redis.hget(Keys.call(decision.call), "channel"))
        explanation = decision.explain()
        if waiting is not None:
            explanation.update(queue=waiting.queue, priority=waiting.priority, skills=waiting.skills,
                               waited_s=round(decision.at - waiting.queued_at, 3))
        self.decisions = (self.decisions + [explanation])[-200:]
        log.info("route call %s -> agent %s: %s; candidates %s", decision.call, agent.id, decision.rule,
                 decision.candidates)
        self._spawn(self._connect(decision.call, channel or "", agent.id))
        if not decided_here:
            return                  # the deciding node keeps the history and the explanation
        try:
            await self.agents.record_claimed(agent, explanation)
        except (RedisError, OSError) as exc:
            log.warning("agent %s: reservation history not saved (%s)", agent.id, exc)

    async def _connect(self, uniqueid: str, channel: str, agent_id: str) -> None:
        live = self.calls.get(uniqueid)
        if live is not None and live.callback and not live.leg:
            await self._call_back(live, agent_id)
            return
        try:
            await self.ami.send_action({"Action": "Redirect", "Channel": channel,
                                        "Context": self.connect_context, "Exten": agent_id, "Priority": "1"})
        except (AMIActionError, AMIError, OSError) as exc:
            # The caller hung up meanwhile (or Asterisk is gone): free the agent again.
            log.warning("redirect of %s to %s failed: %s", channel, agent_id, exc)
            agent = self.agents.agents.get(agent_id)
            if agent is not None and agent.state == AgentState.RESERVED and agent.call == uniqueid:
                await self._transition(agent_id, AgentState.READY)
