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
from dataclasses import asdict, dataclass
from typing import Any, Optional, Union

from redis.asyncio import Redis
from redis.exceptions import RedisError

from hotline.ami import AMIActionError, AMIError
from hotline.keys import Keys
from hotline.model import AbandonedIn, AgentState, CallOutcome, CallRecord, SkillError, parse_skills, valid_name

from .agents import AgentDirectory, AgentError, outbox_row
from .cluster import Cluster, node_channel
from .peers import WITNESS_KEPT_S, PeerHandling, Witnessed
from .queues import QueueBook
from .router import RETURNING_QUEUE, AgentChanged, Decision, Router, WaitingCall, preference_skill

__all__ = ["Distributor", "LiveCall"]

log = logging.getLogger(__name__)

SURVEY_SCORES = ("satisfied", "basically_satisfied", "dissatisfied")
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
    bucket: str = ""                   # the waiting-call bucket it was queued in (acd/router.py)
    talk_ended_at: Optional[float] = None   # the bridge with the agent ended (a survey may follow)
    offer: str = ""                    # what the caller is offered past the queue's limit ("callback+message")
    overflowed_from: str = ""          # the queue it overflowed from (queues.yaml overflow)
    callback: str = ""                 # number to call back: the caller hung up, keeping the place
    leg: str = ""                      # uniqueid of the call-back leg placed to the caller
    callback_tries: int = 0            # call backs placed that the caller did not answer
    owner: str = ""                    # the ACD node following the call (acd/cluster.py)
    leg_id: str = ""                   # uniqueid given to the call back being placed (Originate ChannelId),
                                       # saved first: after a crash, recovery finds that leg in Asterisk

    def to_redis(self) -> dict[str, str]:
        return {k: "" if v is None else str(v) for k, v in asdict(self).items()}

    @classmethod
    def from_redis(cls, data: dict[str, str]) -> "LiveCall":
        opt = lambda name: float(data[name]) if data.get(name) else None
        return cls(data["uniqueid"], data.get("channel", ""), data.get("linkedid", ""), data.get("line") or "main",
                   data.get("caller", ""), float(data["arrived_at"]), opt("queued_at"), data.get("queue") or None,
                   data.get("skills", ""), int(data.get("priority") or 0), data.get("state") or "ivr",
                   data.get("agent") or None, opt("answered_at"), int(data.get("ring_attempts") or 0),
                   data.get("caller_hung_up") == "True", data.get("bucket", ""), opt("talk_ended_at"),
                   data.get("offer", ""), data.get("overflowed_from", ""), data.get("callback", ""),
                   data.get("leg", ""), int(data.get("callback_tries") or 0), data.get("owner", ""),
                   data.get("leg_id", ""))


ENDED_KEPT_S = 120.0            # ended calls remembered, so a late duplicate event cannot revive them
UP = "6"                        # AMI ChannelState of an answered channel


def _duration(text: str) -> float:
    """AMI Duration ``HH:MM:SS`` in seconds (0 if unreadable)."""
    try:
        hours, minutes, seconds = (int(part) for part in text.split(":"))
    except ValueError:
        return 0.0
    return hours * 3600 + minutes * 60 + seconds


class Distributor(PeerHandling):
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
                        _clean(msg.get("CallerIDNum")), self.clock(), owner=self.node)
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

    def _hangups_lost(self, known: dict[str, LiveCall], live) -> list[LiveCall]:
        """Calls followed since before Asterisk listed its channels, whose channels it no longer
        has: their Hangup event was lost. They leave the live picture; the caller ends them."""
        lost = []
        for uid, call in known.items():
            if self.calls.get(uid) is not call or uid in live or (call.leg and call.leg in live):
                continue
            if call.callback and call.leg in ("", "pending"):
                continue        # virtual hold: the caller hung up on purpose, the call waits for its call back
            log.warning("call %s: Asterisk no longer has its channel (Hangup event lost): ended", uid)
            self.calls.pop(uid, None)
            if call.leg:
                self.calls.pop(call.leg, None)
            self.waiting.pop(uid, None)
            lost.append(call)
        return lost

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
            survey = rating.get("score") if rating.get("score") in SURVEY_SCORES else None
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

    # ---- recovery -----------------------------------------------------------------------
    def _reconnected(self) -> None:
        self._spawn(self.recover())

    async def recover(self) -> None:
        """Rebuild the live picture from Redis and Asterisk: after a restart (even kill -9) and
        after every AMI reconnect. Waiting calls are re-adopted in their order (their buckets
        are in Redis), calls that ended meanwhile get their record, callers who arrived meanwhile
        are adopted, and agents whose call is gone are freed."""
        known = {uid: call for uid, call in self.calls.items() if uid == call.uniqueid}
        try:
            _, events = await self.ami.send_list_action({"Action": "CoreShowChannels"})
            uids = await self.redis.smembers(Keys.calls)
            async with self.redis.pipeline(transaction=False) as pipe:
                for uid in uids:
                    pipe.hgetall(Keys.call(uid))
                hashes = await pipe.execute()
        except (AMIError, RedisError, OSError, asyncio.TimeoutError) as exc:
            log.warning("recovery postponed: %s", exc)
            return
        channels = {e.get("Uniqueid", ""): e for e in events if e.get("Event") == "CoreShowChannel"}
        now = self.clock()
        adopted = ended = 0
        gone: set[str] = set()
        followed_elsewhere: set[str] = set()
        answered_by: dict[str, str] = {}        # agent -> answered call that ended unfollowed
        for call in self._hangups_lost(known, channels):
            ended += 1
            gone.add(call.uniqueid)
            if call.answered_at is not None:
                answered_by[call.agent or ""] = call.uniqueid
            self._spawn(self._finish(call, now, None))
        for uid, data in zip(uids, hashes):
            if uid in self.calls or uid in gone:
                continue
            owner = data.get("owner", "")
            if not self.ours(owner):
                followed_elsewhere.add(uid)     # a live node follows it
                continue
            try:
                call = LiveCall.from_redis(data)
            except (KeyError, ValueError) as exc:
                log.warning("call %s: unreadable live state (%s); dropped", uid, exc)
                await self.redis.srem(Keys.calls, uid)
                continue
            if owner not in ("", self.node):
                # A dead node's call: ours if we take it first (the survivors race for it).
                try:
                    if not await self._save_call(call, taking_from=owner):
                        followed_elsewhere.add(uid)
                        continue
                except (RedisError, OSError):
                    continue
                log.info("call %s: adopted from node %s", uid, owner)
            call.owner = self.node
            seen = self.witnessed.pop(uid, None)
            if seen is not None:
                # What we saw while its node followed it (and after that node died).
                call.ring_attempts = max(call.ring_attempts, seen.ring_attempts)
                call.answered_at = call.answered_at or seen.answered_at
                call.talk_ended_at = call.talk_ended_at or seen.talk_ended_at
                call.caller_hung_up = call.caller_hung_up or seen.caller_hung_up
                if call.answered_at is not None and call.state in ("waiting", "ringing"):
                    call.state = "talking"
            channel = channels.get(uid)
            if channel is None and call.callback and call.answered_at is None:
                # Virtual hold: the caller hung up to be called back. Still owed a call back (its
                # place kept), or its call-back leg is in progress.
                leg = channels.get(call.leg) if call.leg not in ("", "pending") else None
                # A call back being placed when the ACD died: Asterisk has its leg by the id we gave it.
                placed = channels.get(call.leg_id) if call.leg == "pending" and call.leg_id else None
                if leg is not None or call.leg in ("", "pending"):
                    adopted += 1
                    self.calls[uid] = call
                    if placed is not None and placed.get("ChannelState") != UP:
                        log.info("call %s: its call back still rings the caller: followed, not placed again", uid)
                        call.channel = placed.get("Channel", "")
                        self.calls[call.leg_id] = call      # answered: HotlineCallbackAnswered; else its Hangup
                    elif leg is not None or placed is not None:
                        if leg is None:                     # answered meanwhile: that is the leg
                            call.leg, leg = call.leg_id, placed
                        call.channel = leg.get("Channel", "")
                        self.calls[call.leg] = call
                        await self._adopt(call, leg, now)
                    else:
                        log.info("call %s: still owed a call back: back in its place", uid)
                        call.leg, call.channel, call.agent = "", "", None
                        self._enqueue(call, {"Queue": call.queue or "", "Skills": call.skills,
                                             "CallPriority": str(call.priority)})
                    continue
            if channel is None:
                # It ended while nobody followed it: its record now, from what we knew or saw.
                ended += 1
                gone.add(uid)
                if call.answered_at is not None:
                    answered_by[call.agent or ""] = uid
                self._spawn(self._finish(call, seen.ended_at if seen and seen.ended_at else now,
                                         seen.cause if seen else None))
                continue
            adopted += 1
            self.calls[uid] = call
            await self._adopt(call, channel, now)
        for uid, channel in channels.items():
            if uid in self.calls or uid in followed_elsewhere or channel.get("Context") not in self.caller_contexts:
                continue
            if not self.owns(channel.get("Linkedid") or uid):
                continue
            # A caller who arrived while the ACD was away.
            seconds = _duration(channel.get("Duration", ""))
            call = LiveCall(uid, channel.get("Channel", ""), channel.get("Linkedid", uid), "main",
                            _clean(channel.get("CallerIDNum")), now - seconds, owner=self.node)
            line = await self._getvar(call.channel, "HOTLINE_LINE")
            call.line = "enterprise" if line == "enterprise" else "main"
            self.calls[uid] = call
            try:
                if not await self._save_call(call, new=True):
                    continue
            except (RedisError, OSError):
                pass
            adopted += 1
            await self._adopt(call, channel, now)
        # Agents whose call is gone are free again; an agent "on call" with no live call wraps up
        # (only agents this node follows, or whose node is gone).
        for agent in list(self.agents.agents.values()):
            live = self.calls.get(agent.call) if agent.call else None
            if live is not None and live.agent == agent.id:
                agent.node = self.node              # its call is ours now (adopted)
            if not self.follows(agent) or agent.call in followed_elsewhere:
                continue
            if agent.call and answered_by.get(agent.id) == agent.call and \
                    agent.state in (AgentState.RESERVED, AgentState.ON_CALL):
                # Its call was answered and ended while nobody followed it: on call, then wrap-up.
                log.warning("agent %s: call %s was answered and ended unfollowed: wrap-up", agent.id, agent.call)
                self._spawn(self._answered_unfollowed(agent.id, agent.call))
                continue
            if agent.state == AgentState.RESERVED and agent.call not in gone and (live is None or live.agent != agent.id):
                log.warning("agent %s was reserved for %s, which is gone: ready again", agent.id, agent.call)
                self._spawn(self.free_agent(agent.id))
            elif agent.state == AgentState.ON_CALL and live is None:
                log.warning("agent %s was on call %s, which has ended: wrap-up", agent.id, agent.call)
                self._spawn(self._start_wrapup(agent.id))
            elif agent.state == AgentState.WRAPUP and agent.id not in self._wrapup_until:
                self._spawn(self._start_wrapup(agent.id))
        log.info("recovered: %d live call(s) adopted, %d ended meanwhile", adopted, ended)
        self.schedule_routing()

    async def _answered_unfollowed(self, agent_id: str, uid: str) -> None:
        agent = self.agents.agents.get(agent_id)
        if agent is not None and agent.state == AgentState.RESERVED:
            await self._transition(agent_id, AgentState.ON_CALL, call=uid)
        await self._start_wrapup(agent_id)

    async def reconcile_agents(self) -> int:
        """Agent states that no live channel explains are repaired (and logged): reserved or on
        call for a call Asterisk no longer has. Run periodically; returns how many were repaired."""
        known = {uid: call for uid, call in self.calls.items() if uid == call.uniqueid}
        try:
            _, events = await self.ami.send_list_action({"Action": "CoreShowChannels"})
        except (AMIError, OSError, asyncio.TimeoutError) as exc:
            log.warning("agent reconcile postponed: %s", exc)
            return 0
        live = {e.get("Uniqueid", "") for e in events if e.get("Event") == "CoreShowChannel"}
        for call in self._hangups_lost(known, live):     # its record first; its agent is repaired below
            await self._finish(call, self.clock(), None)
        repaired = 0
        for agent in list(self.agents.agents.values()):
            if agent.state not in (AgentState.RESERVED, AgentState.ON_CALL) or agent.call in live:
                continue
            if not self.follows(agent):
                continue            # another live node follows it
            if agent.call in self.calls:
                continue            # its Hangup is being handled right now
            repaired += 1
            log.warning("agent %s: %s for call %s, which Asterisk no longer has: repaired", agent.id,
                        agent.state.value, agent.call or "(none)")
            if agent.state == AgentState.RESERVED:
                await self.free_agent(agent.id)
            else:
                self._spawn(self._start_wrapup(agent.id))
        return repaired

    async def _adopt(self, call: LiveCall, channel, now: float) -> None:
        context = channel.get("Context", "")
        if channel.get("BridgeId"):
            if call.answered_at is None:
                call.answered_at = now               # answered while we were away
                call.state = "talking"
                agent = self.agents.agents.get(call.agent or "")
                if agent is not None and agent.state == AgentState.RESERVED and agent.call == call.uniqueid:
                    self._spawn(self._transition(agent.id, AgentState.ON_CALL, call=call.uniqueid))
                self._spawn(self._save_call(call))
            return
        if context == "hotline-wait":
            if call.state == "waiting" and call.queue:
                # Queued again with its first queue time: the same place (the script is idempotent,
                # and also covers a crash between saving the call and queuing it).
                self._enqueue(call, {"Queue": call.queue, "Skills": call.skills, "CallPriority": str(call.priority)})
            else:
                if call.state == "ringing":      # rang out while we were away: back to its place
                    call.agent = None
                values = {name: await self._getvar(call.channel, f"HOTLINE_{name.upper()}")
                          for name in ("queue", "skills", "priority")}
                self._enqueue(call, {"Queue": values["queue"], "Skills": values["skills"],
                                     "CallPriority": values["priority"]})

    async def _getvar(self, channel: str, name: str) -> str:
        try:
            reply = await self.ami.send_action({"Action": "Getvar", "Channel": channel, "Variable": name})
        except (AMIActionError, AMIError, OSError, asyncio.TimeoutError):
            return ""
        return reply.get("Value") or ""

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

    # ---- queue experience: limits, overflow, call back, message ---------------------------
    async def queue_length(self, queue: str) -> int:
        """Calls waiting in this queue (every bucket of it), across ACD processes."""
        buckets = [b for b in await self.redis.smembers(Keys.buckets) if b.split(":", 1)[0] == queue]
        if not buckets:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for bucket in buckets:
                pipe.zcard(Keys.bucket(bucket))
            return sum(await pipe.execute())

    def _limit_due(self, uniqueid: str, waiting: WaitingCall) -> None:
        if self.waiting.get(uniqueid) is waiting:
            self._spawn(self._limit_reached(uniqueid, waiting))

    async def _limit_reached(self, uniqueid: str, waiting: WaitingCall) -> None:
        """The wait or the queue length passed the queue's limit: overflow, or offer a call back/message."""
        call = self.calls.get(uniqueid)
        if call is None or self.waiting.get(uniqueid) is not waiting:
            return
        rules = self.router.queues.get(waiting.queue)
        if rules.overflow and not call.overflowed_from:
            await self._withdraw_waiting(call)
            call.overflowed_from = waiting.queue
            skills = rules.overflow_skills if rules.overflow_skills is not None else call.skills
            log.info("call %s: limit of queue %s passed, overflows to %s (%s)", uniqueid, waiting.queue,
                     rules.overflow, skills or "no skill")
            # The same place in time: _enqueue keeps the first queue time.
            self._enqueue(call, {"Queue": rules.overflow, "Skills": skills, "CallPriority": str(call.priority)})
        elif rules.offer and not call.offer:
            call.offer = "+".join(rules.offer)
            log.info("call %s: limit of queue %s passed, offering %s", uniqueid, waiting.queue, call.offer)
            try:
                await self.redis.hset(Keys.call(uniqueid), "offer", call.offer)
            except (RedisError, OSError) as exc:
                log.warning("call %s: offer not saved (%s)", uniqueid, exc)

    async def _withdraw_waiting(self, call: LiveCall) -> None:
        self.waiting.pop(call.uniqueid, None)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(Keys.waiting, call.uniqueid)
            if call.bucket:
                await self.router.withdraw(pipe, call.uniqueid, call.bucket)
            await pipe.execute()

    def _queue_choice(self, call: LiveCall, choice: str, number: str) -> None:
        """The caller took the offer at the announcement (dialplan hotline-wait, UserEvent HotlineQueueChoice)."""
        if call.state != "waiting" or call.uniqueid not in self.waiting:
            return
        if choice == "message":
            call.state = "message"
            self._spawn(self._withdraw_waiting(call))
        elif choice == "callback":
            digits = "".join(ch for ch in number if ch.isdigit())
            if len(digits) < 5:
                log.warning("call %s: call back asked without a usable number", call.uniqueid)
                return
            call.callback = digits
            log.info("call %s: call back to %s, keeping the place", call.uniqueid, digits)
            self._spawn(self._save_call(call))

    async def _call_back(self, call: LiveCall, agent_id: str) -> None:
        """An agent is reserved for a caller on virtual hold: call them over the trunk; once they answer,
        the dialplan (hotline-callback) raises HotlineCallbackAnswered and rings the reserved agent."""
        call.leg = "pending"
        ring_s = self.router.queues.get(call.queue or self.default_queue).callback_ring_s
        # The leg's uniqueid is ours to choose (ChannelId), and saved before the Originate: if this
        # process dies while the caller's phone rings, recovery finds the leg instead of placing a
        # second call back.
        call.leg_id = f"{call.uniqueid}-cb{call.callback_tries + 1}"
        try:
            await self._save_call(call)
        except (RedisError, OSError) as exc:
            log.warning("call %s: call back not saved before placing it (%s)", call.uniqueid, exc)
        try:
            # The call-back leg carries the queue variables: if the agent does not answer it waits
            # in hotline-wait like any caller (and keeps the first queue time).
            await self.ami.send_action([
                ("Action", "Originate"), ("Channel", f"PJSIP/{call.callback}@trunk"), ("ChannelId", call.leg_id),
                ("Context", "hotline-callback"), ("Exten", agent_id), ("Priority", "1"),
                ("Timeout", str(int(ring_s * 1000))), ("CallerID", "12345 <12345>"),
                ("Variable", f"HOTLINE_CALLBACK_OF={call.uniqueid}"), ("Variable", f"HOTLINE_QUEUE={call.queue}"),
                ("Variable", f"HOTLINE_SKILLS={call.skills}"), ("Variable", f"HOTLINE_PRIORITY={call.priority}")],
                timeout=ring_s + 10)
        except (AMIActionError, AMIError, OSError, asyncio.TimeoutError) as exc:
            await self._call_back_failed(call, agent_id, exc)

    async def _call_back_failed(self, call: LiveCall, agent_id: str, exc: Union[Exception, str]) -> None:
        """Not answered (or not placed): the reserved agent is free again; the caller keeps the place
        and is called again after ``callback_retry_s``, up to ``callback_attempts`` calls in all."""
        call.callback_tries += 1
        call.leg, call.agent, call.state = "", None, "waiting"
        rules = self.router.queues.get(call.queue or self.default_queue)
        agent = self.agents.agents.get(agent_id)
        if agent is not None and agent.state == AgentState.RESERVED and agent.call == call.uniqueid:
            await self._transition(agent_id, AgentState.READY)
        if call.callback_tries >= rules.callback_attempts:
            log.warning("call %s: call back %d of %d failed (%s); the call ends", call.uniqueid,
                        call.callback_tries, rules.callback_attempts, exc)
            self.calls.pop(call.uniqueid, None)
            await self._finish(call, self.clock(), None)
            return
        log.info("call %s: call back %d of %d failed (%s); again in %gs, same place", call.uniqueid,
                 call.callback_tries, rules.callback_attempts, exc, rules.callback_retry_s)
        try:
            await self._save_call(call)
        except (RedisError, OSError):
            pass
        asyncio.get_running_loop().call_later(rules.callback_retry_s, self._call_back_again, call.uniqueid)

    def _call_back_again(self, uniqueid: str) -> None:
        call = self.calls.get(uniqueid)
        if call is None or not call.callback or call.leg or uniqueid in self.waiting:
            return
        # Back in its place: the first queue time is kept.
        self._enqueue(call, {"Queue": call.queue or "", "Skills": call.skills, "CallPriority": str(call.priority)})

    def _callback_answered(self, msg) -> None:
        call = self.calls.get(msg.get("Of", ""))
        if call is None or not call.callback or call.leg not in ("", "pending"):
            return
        call.leg, call.channel = msg.get("Uniqueid", ""), msg.get("Channel", "")
        self.calls[call.leg] = call
        self._spawn(self._save_call(call))

    # ---- returning callers ----------------------------------------------------------------
    async def _returning(self, call: LiveCall, waiting: WaitingCall) -> None:
        """A caller answered within ``returning.days`` waits up to ``returning.wait_s`` for the agent who
        answered them last (if that agent is logged in, not on a break, and has the skills), then is
        queued as usual with its first queue time."""
        rules = self.router.queues.returning
        try:
            agent_id = await self.redis.get(Keys.last_agent(call.caller))
        except (RedisError, OSError):
            agent_id = None
        agent = self.agents.agents.get(agent_id or "")
        usable = agent is not None and agent.state not in (AgentState.LOGGED_OUT, AgentState.NOT_READY) \
            and agent.can_serve(waiting.skills)
        if not usable or self.waiting.get(call.uniqueid) is not waiting:
            if self.waiting.get(call.uniqueid) is waiting:
                await self._save_waiting(call, waiting)
            return
        # Its own bucket, which every node's offer for that agent looks at first (acd/router.py).
        own = WaitingCall(call.uniqueid, call.channel, RETURNING_QUEUE, {preference_skill(agent.id): 1},
                          waiting.priority, waiting.queued_at)
        self.waiting[call.uniqueid] = own
        call.bucket = own.bucket
        log.info("call %s: returning caller, waits up to %gs for agent %s", call.uniqueid, rules.wait_s, agent.id)
        asyncio.get_running_loop().call_later(rules.wait_s, self._preference_over, call.uniqueid, own, waiting)
        await self._save_waiting(call, own)
        if self.waiting.get(call.uniqueid) is own and agent.state == AgentState.READY:
            self.offer_agent(agent.id)

    def _preference_over(self, uniqueid: str, own: WaitingCall, usual: WaitingCall) -> None:
        call = self.calls.get(uniqueid)
        if call is None or self.waiting.get(uniqueid) is not own:
            return

        async def requeue() -> None:
            await self._withdraw_waiting(call)
            if call.state != "waiting" or uniqueid in self.waiting:
                return
            usual.channel = call.channel
            self.waiting[uniqueid] = usual
            call.bucket = usual.bucket
            await self._save_waiting(call, usual)
        self._spawn(requeue())
