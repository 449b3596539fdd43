"""The ACD's call-event handling when AMI events are lost or duplicated (property-based).

A small model of Asterisk 22 running our dialplan (from-trunk -> hotline-inbound -> hotline-wait,
Redirect -> hotline-connect -> Dial(PJSIP/<agent>,,g) -> hotline-survey) emits, for a few callers,
the AMI events real Asterisk emits (header names and order as in pbxsim/ and the recordings in
pbxsim/recorded/transcripts/01-ami-queue-call-lifecycle.txt), and reacts to the ACD's Redirects
as Asterisk does (a Redirect of a channel that is gone or hanging up is refused). Hypothesis
chooses the callers (hang up in the IVR, patience in the queue, and at each agent rung: answered
and the agent or the caller hangs up, no answer, or the caller hangs up while it rings), how their
events interleave, AMI reconnects in the middle (recovery against CoreShowChannels with live
channels), agents pressing *43 after a no-answer, and which events are LOST and which are
DUPLICATED (back to back, or again a few events later).

While the calls run: an agent Asterisk rings (or is about to ring) or has bridged is reserved or
on call for that very caller in the ACD; no call is redirected to an agent while it is still with
another one (or once answered), and no agent is rung for two callers at once.

Once Asterisk has no channel left, the periodic repairs run (``recover`` and ``reconcile_agents``),
wrap-ups end, and then:

- no agent is left reserved, on call or in wrap-up, in memory or in Redis, and both agree: a state
  that cannot be explained by a live channel is repaired;
- the ACD follows no call, and Redis keeps no live call, no waiting call and no bucket entry;
- every call the ACD followed has exactly one call record in the outbox (never two, even with
  duplicated Hangups); a record saying "answered" names an agent who answered that caller, and
  a duplicated DialBegin does not count as a second ring;
- each agent's history in the outbox reserves it only from ready and puts it on call only for
  the call it was reserved for.

Every example starts from an empty Redis, and the ACD settles (``wait_idle``) after each event,
so examples replay the same way (derandomized) up to the order of the ACD's own concurrent tasks
within one event. ``pytest --hypothesis-show-statistics`` shows what the examples exercised.
"""
from __future__ import annotations

import asyncio
import json
from collections import Counter, deque
from dataclasses import dataclass
from typing import Callable, Optional

from hypothesis import HealthCheck, Phase, event as label, given, note, settings
from hypothesis import strategies as st

from acd.agents import AgentDirectory
from acd.service import ACDCore, build_core
from acd.queues import QueueBook
from hotline.ami import AMIActionError, Message
from hotline.keys import Keys
from hotline.model import AgentState

AGENT_IDS = ("1001", "1002", "1003")
QUEUES = QueueBook.from_dict({"default": {"strategy": "longest_idle"},
                              "queues": {"general": {"strategy": "longest_idle"}}})
OUTCOMES = ("answer_agent_hangs", "answer_caller_hangs", "noanswer", "hangup_ringing")
CHANNEL_VARS = {"HOTLINE_QUEUE": "general", "HOTLINE_SKILLS": "mandarin:1", "HOTLINE_PRIORITY": "0",
                "HOTLINE_LINE": "main"}
BUSY = (AgentState.RESERVED, AgentState.ON_CALL, AgentState.WRAPUP)


@dataclass
class CallPlan:
    ivr_hangup: bool            # the caller hangs up in the IVR, never queued
    patience: int               # turns the caller waits in the queue before hanging up
    outcomes: list[str]         # what happens at each agent the ACD rings (then: answered)


def event(name: str, headers, privilege: str = "call,all") -> Message:
    return Message([("Event", name), ("Privilege", privilege), *headers])


# ---- the PBX: what Asterisk does and emits ------------------------------------------------------

class SimCall:
    """One caller's channel; ``tick`` emits its next AMI event (None: nothing happens this turn)."""

    def __init__(self, pbx: "Pbx", index: int, plan: CallPlan) -> None:
        self.pbx = pbx
        self.uid = f"1700000000.{index + 1}"
        self.channel = f"PJSIP/trunk-{index + 1:08x}"
        self.number = f"1380000{index:04d}"
        self.plan = plan
        self.outcomes = list(plan.outcomes)
        self.patience = plan.patience
        self.phase = "new"          # new ivr waiting leaving dialing ringing talking after gone
        self.context, self.exten = "from-trunk", "12345"
        self.pending: deque[Callable[[], Message]] = deque()
        self.alive = False
        self.hanging = False         # HangupRequest emitted: a Redirect can no longer move it
        self.agent: Optional[str] = None
        self.leg: Optional[tuple[str, str]] = None      # live agent leg (uniqueid, channel)
        self.dialed = False          # DialBegin emitted for the current agent
        self.dialing = False         # Dial() ringing the agent: DialBegin emitted, DialEnd not yet
        self.bridged = False
        self.answered_by: list[str] = []
        self.dials = 0               # DialBegins emitted
        self.ending = ""             # how the conversation ends

    # -- snapshots --
    def snapshot(self) -> list[tuple[str, str]]:
        return [("Channel", self.channel), ("ChannelState", "6"), ("ChannelStateDesc", "Up"),
                ("CallerIDNum", self.number), ("CallerIDName", "<unknown>"),
                ("ConnectedLineNum", self.agent or "<unknown>"), ("ConnectedLineName", "<unknown>"),
                ("Language", "zh"), ("AccountCode", ""), ("Context", self.context), ("Exten", self.exten),
                ("Priority", "1"), ("Uniqueid", self.uid), ("Linkedid", self.uid)]

    def leg_snapshot(self, agent: str, leg: tuple[str, str], prefix: str = "") -> list[tuple[str, str]]:
        return [(prefix + "Channel", leg[1]), (prefix + "ChannelState", "6"), (prefix + "ChannelStateDesc", "Up"),
                (prefix + "CallerIDNum", agent), (prefix + "CallerIDName", f"Agent {agent}"),
                (prefix + "ConnectedLineNum", self.number), (prefix + "ConnectedLineName", "<unknown>"),
                (prefix + "Language", "en"), (prefix + "AccountCode", ""), (prefix + "Context", "agents"),
                (prefix + "Exten", agent), (prefix + "Priority", "1"), (prefix + "Uniqueid", leg[0]),
                (prefix + "Linkedid", self.uid)]

    @staticmethod
    def bridge(members: int) -> list[tuple[str, str]]:
        return [("BridgeUniqueid", "b-1"), ("BridgeType", "basic"), ("BridgeTechnology", "simple_bridge"),
                ("BridgeCreator", "<unknown>"), ("BridgeName", "<unknown>"), ("BridgeNumChannels", str(members)),
                ("BridgeVideoSourceMode", "none")]

    # -- the events, each with what it means for the channel --
    def _newchannel(self) -> Message:
        self.alive, self.phase = True, "ivr"
        msg = event("Newchannel", [*self.snapshot()])
        self.context, self.exten = "hotline-inbound", "s"
        return msg

    def _waiting(self) -> Message:
        self.context, self.exten, self.phase = "hotline-wait", "s", "waiting"
        return event("UserEvent", [*self.snapshot(), ("UserEvent", "HotlineWaiting"), ("Queue", "general"),
                                   ("Skills", "mandarin:1"), ("CallPriority", "0"), ("CallLanguage", "zh")],
                     "user,all")

    def _hangup_request(self) -> Message:
        self.hanging, self.phase = True, "leaving"
        return event("HangupRequest", self.snapshot())

    def _hangup(self) -> Message:
        self.alive, self.phase = False, "gone"
        return event("Hangup", [*self.snapshot(), ("Cause", "16"), ("Cause-txt", "Normal Clearing")])

    def _dial_begin(self, agent: str) -> Callable[[], Message]:
        def emit() -> Message:
            self.pbx.leg_seq += 1
            self.leg = (f"1700000100.{self.pbx.leg_seq}", f"PJSIP/{agent}-{self.pbx.leg_seq:08x}")
            self.dialed, self.dialing, self.phase = True, True, "ringing"
            self.dials += 1
            return event("DialBegin", [*self.snapshot(), *self.leg_snapshot(agent, self.leg, "Dest"),
                                       ("DialString", f"PJSIP/{agent}")])
        return emit

    def _dial_end(self, agent: str, leg: tuple[str, str], status: str) -> Callable[[], Message]:
        def emit() -> Message:
            self.dialing = False
            if status == "ANSWER":
                self.answered_by.append(agent)
            return event("DialEnd", [*self.snapshot(), *self.leg_snapshot(agent, leg, "Dest"),
                                     ("DialStatus", status)])
        return emit

    def _bridge_enter(self, agent: str, leg: tuple[str, str], caller: bool) -> Callable[[], Message]:
        def emit() -> Message:
            if caller:
                self.bridged, self.phase = True, "talking"
                return event("BridgeEnter", [*self.bridge(2), *self.snapshot()])
            return event("BridgeEnter", [*self.bridge(1), *self.leg_snapshot(agent, leg)])
        return emit

    def _bridge_leave(self, agent: str, leg: tuple[str, str], caller: bool) -> Callable[[], Message]:
        def emit() -> Message:
            if caller:
                self.bridged = False
                return event("BridgeLeave", [*self.bridge(1), *self.snapshot()])
            return event("BridgeLeave", [*self.bridge(0), *self.leg_snapshot(agent, leg)])
        return emit

    def _leg_hangup_request(self, agent: str, leg: tuple[str, str]) -> Callable[[], Message]:
        return lambda: event("HangupRequest", self.leg_snapshot(agent, leg))

    def _leg_hangup(self, agent: str, leg: tuple[str, str], cause: int) -> Callable[[], Message]:
        def emit() -> Message:
            if self.leg == leg:
                self.leg = None
            return event("Hangup", [*self.leg_snapshot(agent, leg), ("Cause", str(cause)),
                                    ("Cause-txt", {16: "Normal Clearing", 19: "User alerting, no answer",
                                                   26: "Answered elsewhere"}[cause])])
        return emit

    def _ring_no_answer(self, agent: str) -> Callable[[], Message]:
        return lambda: event("UserEvent", [*self.snapshot(), ("UserEvent", "HotlineRingNoAnswer"),
                                           ("Agent", agent), ("DialStatus", "NOANSWER")], "user,all")

    def _to_survey(self) -> Message:
        self.context, self.exten, self.phase = "hotline-survey", "s", "after"
        return self._hangup()

    # -- what happens next --
    def _plan_next(self) -> None:
        push = self.pending.extend
        if self.phase == "new":
            push([self._newchannel])
        elif self.phase == "ivr":
            if self.plan.ivr_hangup:
                push([self._hangup_request, self._hangup])
            else:
                push([self._waiting])
        elif self.phase == "waiting":
            self.patience -= 1
            if self.patience <= 0:
                push([self._hangup_request, self._hangup])
        elif self.phase == "ringing":
            agent, leg = self.agent, self.leg
            outcome = self.outcomes.pop(0) if self.outcomes else "answer_agent_hangs"
            if outcome == "noanswer":
                push([self._dial_end(agent, leg, "NOANSWER"), self._leg_hangup(agent, leg, 19),
                      self._ring_no_answer(agent), self._waiting])
            elif outcome == "hangup_ringing":
                push([self._hangup_request, self._dial_end(agent, leg, "CANCEL"), self._leg_hangup(agent, leg, 26),
                      self._hangup])
            else:
                self.ending = outcome
                push([self._dial_end(agent, leg, "ANSWER"), self._bridge_enter(agent, leg, False),
                      self._bridge_enter(agent, leg, True)])
        elif self.phase == "talking":
            agent, leg = self.agent, self.leg
            if self.ending == "answer_caller_hangs":
                push([self._hangup_request, self._bridge_leave(agent, leg, True), self._bridge_leave(agent, leg, False),
                      self._leg_hangup(agent, leg, 16), self._hangup])
            else:       # the agent hangs up; the caller stays for the survey (Dial option g), then ends
                push([self._leg_hangup_request(agent, leg), self._bridge_leave(agent, leg, False),
                      self._bridge_leave(agent, leg, True), self._leg_hangup(agent, leg, 16), self._to_survey])

    def with_agent(self) -> bool:
        """Redirected to an agent and not done with them: Dial() about to ring, ringing, or bridged."""
        return self.agent is not None and (not self.dialed or self.dialing or self.bridged)

    def tick(self) -> Optional[Message]:
        if not self.pending:
            self._plan_next()
        return self.pending.popleft()() if self.pending else None

    def redirect(self, agent: str) -> None:
        """AMI Redirect to hotline-connect,<agent>: leave whatever the dialplan was doing, ring the agent."""
        teardown: list[Callable[[], Message]] = []
        if self.leg is not None and self.agent is not None:
            old, leg = self.agent, self.leg
            if self.bridged:
                teardown = [self._bridge_leave(old, leg, True), self._bridge_leave(old, leg, False),
                            self._leg_hangup(old, leg, 16)]
            elif self.dialing:
                teardown = [self._dial_end(old, leg, "CANCEL"), self._leg_hangup(old, leg, 26)]
            else:           # the agent did not answer; its leg is being hung up
                teardown = [self._leg_hangup(old, leg, 19)]
        self.pending.clear()
        self.agent, self.dialed, self.dialing, self.phase = agent, False, False, "dialing"
        self.context, self.exten = "hotline-connect", agent
        self.pending.extend([*teardown, self._dial_begin(agent)])


class Pbx:
    def __init__(self, plans: list[CallPlan]) -> None:
        self.calls = [SimCall(self, i, plan) for i, plan in enumerate(plans)]
        self.leg_seq = 0
        self.redirects: list[tuple[str, str]] = []       # (caller uid, agent) the ACD connected
        self.violations: list[str] = []

    def by_channel(self, name: str) -> Optional[SimCall]:
        return next((c for c in self.calls if c.channel == name and c.alive), None)

    def engaged(self, agent: str, other_than: str) -> Optional[str]:
        """The caller this agent is being rung for or talks to (Redirect sent, Dial not over)."""
        for c in self.calls:
            if c.uid != other_than and c.alive and c.agent == agent and c.with_agent():
                return c.uid
        return None

    def redirect(self, channel: str, context: str, agent: str) -> Message:
        call = self.by_channel(channel)
        if call is None or call.hanging:
            raise AMIActionError(f"Channel does not exist: {channel}")
        assert context == "hotline-connect" and agent in AGENT_IDS, (context, agent)
        if call.with_agent():
            self.violations.append(f"call {call.uid} given to agent {agent} while still with agent {call.agent}")
        elif call.answered_by:
            self.violations.append(f"call {call.uid} given to agent {agent} after agent "
                                   f"{call.answered_by[-1]} answered it")
        busy_with = self.engaged(agent, call.uid)
        if busy_with is not None:
            self.violations.append(f"agent {agent} rung for call {call.uid} while engaged with call {busy_with}")
        self.redirects.append((call.uid, agent))
        call.redirect(agent)
        return Message([("Response", "Success"), ("Message", "Redirect successful")])

    def live_channels(self) -> list[list[tuple[str, str]]]:
        out = []
        for c in self.calls:
            if c.alive:
                out.append([*c.snapshot(), ("Application", "Dial" if c.leg else "MusicOnHold"),
                            ("ApplicationData", ""), ("Duration", "00:00:01"),
                            ("BridgeId", "b-1" if c.bridged else "")])
            if c.leg is not None and c.agent is not None:
                out.append([*c.leg_snapshot(c.agent, c.leg), ("Application", "AppDial"),
                            ("ApplicationData", "(Outgoing Line)"), ("Duration", "00:00:01"),
                            ("BridgeId", "b-1" if c.bridged else "")])
        return out


class FakeAMI:
    """What the ACD uses of hotline.ami.AMIClient, answered by the model PBX."""

    def __init__(self, pbx: Pbx) -> None:
        self.pbx = pbx
        self.handlers: dict[str, list] = {}
        self.connected: list = []
        self.actions: list[dict] = []

    def on_event(self, name: str, handler) -> None:
        self.handlers.setdefault(name, []).append(handler)

    def on_connected(self, callback) -> None:
        self.connected.append(callback)

    def deliver(self, msg: Message) -> None:
        for handler in self.handlers.get(msg["Event"], ()):
            handler(msg)

    async def send_action(self, headers, timeout=None) -> Message:
        fields = dict(headers.items() if isinstance(headers, dict) else headers)
        self.actions.append(fields)
        await asyncio.sleep(0)
        action = fields.get("Action")
        if action == "Redirect":
            return self.pbx.redirect(fields.get("Channel", ""), fields.get("Context", ""), fields.get("Exten", ""))
        if action == "Getvar":
            call = self.pbx.by_channel(fields.get("Channel", ""))
            if call is None:
                raise AMIActionError(f"Channel does not exist: {fields.get('Channel')}")
            name = fields.get("Variable", "")
            value = {"CONTEXT": call.context, "EXTEN": call.exten, "UNIQUEID": call.uid}.get(name) \
                or CHANNEL_VARS.get(name, "")
            return Message([("Response", "Success"), ("Variable", name), ("Value", value)])
        raise AMIActionError(f"action {action} not expected here")

    async def send_list_action(self, headers, timeout=None):
        await asyncio.sleep(0)
        channels = self.pbx.live_channels()
        events = [Message([("Event", "CoreShowChannel"), *c]) for c in channels]
        events.append(Message([("Event", "CoreShowChannelsComplete"), ("EventList", "Complete"),
                               ("ListItems", str(len(channels)))]))
        return Message([("Response", "Success"), ("EventList", "start"), ("Message", "Channels will follow")]), events


# ---- feeding events, some lost, some twice ------------------------------------------------------

class Feed:
    def __init__(self, ami: FakeAMI, distributor: ACDCore, faults) -> None:
        self.ami, self.distributor = ami, distributor
        self.faults = iter(faults)
        self.late: list[list] = []           # [deliveries to wait, message]: duplicates delivered later
        self.seen: set[str] = set()          # calls the ACD followed at some point
        self.log: list[str] = []

    @staticmethod
    def describe(msg: Message) -> str:
        name = msg["Event"]
        if name == "UserEvent":
            name = msg["UserEvent"]
        elif name == "DialEnd":
            name += " " + msg["DialStatus"]
        return f"{name} {msg['Channel'] if 'Channel' in msg else ''} {msg.get('Uniqueid', '')}"

    async def _deliver(self, msg: Message, settle: bool = True) -> None:
        self.ami.deliver(msg)
        if settle:
            await self.settle()

    async def settle(self) -> None:
        await self.distributor.wait_idle()
        self.seen |= set(self.distributor.book.calls)
        # An agent Asterisk is ringing (or about to) or has bridged is reserved or on call for that
        # caller in the ACD: lost events may leave the ACD behind, never ahead of Asterisk.
        for c in self.ami.pbx.calls:
            if c.alive and c.with_agent():
                agent = self.distributor.directory.agents[c.agent]
                if agent.state not in (AgentState.RESERVED, AgentState.ON_CALL) or agent.call != c.uid:
                    problem = (f"agent {agent.id} is {agent.state.value} (call {agent.call or '-'}) while "
                               f"Asterisk {'bridges' if c.bridged else 'rings'} it for call {c.uid}")
                    if problem not in self.ami.pbx.violations:
                        self.ami.pbx.violations.append(problem)

    async def emit(self, msg: Message) -> None:
        kind, delay = next(self.faults, ("ok", 0))
        self.log.append(f"{kind}{'+' + str(delay) if kind == 'dup' else ''}: {self.describe(msg)}")
        if kind != "drop":
            if kind == "dup" and delay == 0:
                await self._deliver(msg, settle=False)      # twice back to back, before the ACD reacts
            await self._deliver(msg)
            if kind == "dup" and delay > 0:
                self.late.append([delay, msg])
        due = []
        for entry in self.late:
            entry[0] -= 1
            if entry[0] <= 0:
                due.append(entry)
        for entry in due:
            self.late.remove(entry)
            self.log.append(f"late dup: {self.describe(entry[1])}")
            await self._deliver(entry[1])

    async def flush(self) -> None:
        while self.late:
            _, msg = self.late.pop(0)
            self.log.append(f"late dup: {self.describe(msg)}")
            await self._deliver(msg)


# ---- the property -------------------------------------------------------------------------------

plans = st.builds(CallPlan, ivr_hangup=st.sampled_from([False, False, False, True]),
                  patience=st.integers(1, 6), outcomes=st.lists(st.sampled_from(OUTCOMES), max_size=3))
# A turn of one caller (by position among those still there), an AMI reconnect, or an agent's *43.
steps = st.lists(st.sampled_from([0, 1, 2, 3] * 3 + [("reconnect",)] + [("ready", i) for i in range(len(AGENT_IDS))]),
                 max_size=60)
# What becomes of each event Asterisk emits, in order: delivered, lost, or delivered twice: with
# delay 0 back to back, before the ACD reacts; with delay d, again once the ACD has reacted to the
# first copy and d - 1 further events have been delivered.
faults = st.lists(st.tuples(st.sampled_from(["ok"] * 4 + ["drop", "dup", "dup"]), st.sampled_from([0, 1, 2, 3, 5, 7])),
                  max_size=80)


async def outbox(redis) -> list[dict]:
    return [json.loads(r) for r in await redis.lrange(Keys.outbox, 0, -1)]


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture],
          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink])
@given(calls=st.lists(plans, min_size=1, max_size=4), agent_count=st.integers(1, len(AGENT_IDS)),
       schedule=steps, faults=faults)
async def test_lost_and_duplicated_call_events_leave_nothing_unexplained(redis, calls, agent_count, schedule, faults):
    await redis.flushdb()
    pbx = Pbx(calls)
    ami = FakeAMI(pbx)
    directory = AgentDirectory(redis)
    agent_ids = AGENT_IDS[:agent_count]
    for agent_id in agent_ids:
        await directory.upsert(agent_id, f"Agent {agent_id}", "general", {"mandarin": 5})
        await directory.transition(agent_id, AgentState.READY)
    distributor = build_core(ami, redis, directory, wrapup_s=0.01, queues=QUEUES)
    distributor.attach(ami)
    feed = Feed(ami, distributor, faults)
    try:
        for callback in ami.connected:          # the ACD connects: its start-up recovery
            callback()
        await feed.settle()
        for step in schedule:
            if isinstance(step, int):
                live = [c for c in pbx.calls if c.phase != "gone"]
                if live:
                    msg = live[step % len(live)].tick()
                    if msg is not None:
                        await feed.emit(msg)
            elif step[0] == "reconnect":        # AMI reconnected: recovery against CoreShowChannels
                feed.log.append("AMI reconnect")
                for callback in ami.connected:
                    callback()
                await feed.settle()
            else:                               # *43 from an agent's phone, after a no-answer
                agent_id = AGENT_IDS[step[1]]
                agent = directory.agents.get(agent_id)
                if agent is not None and agent.state == AgentState.NOT_READY \
                        and pbx.engaged(agent_id, other_than="") is None:
                    feed.log.append(f"agent {agent_id} ready (*43)")
                    ami.deliver(event("UserEvent", [("Channel", f"PJSIP/{agent_id}-000000ff"), ("Context", "agents"),
                                                    ("Uniqueid", "1700000200.1"), ("Linkedid", "1700000200.1"),
                                                    ("UserEvent", "HotlineAgent"), ("Agent", agent_id),
                                                    ("Action", "ready")], "user,all"))
                    await feed.settle()
        # Every caller goes on to its end (the faults go on until they run out).
        for _ in range(200):
            live = [c for c in pbx.calls if c.phase != "gone"]
            if not live:
                break
            for c in live:
                msg = c.tick()
                if msg is not None:
                    await feed.emit(msg)
        else:
            raise AssertionError("the model PBX did not drain")
        await feed.flush()
        assert not pbx.live_channels()

        # Asterisk has no channel left: the periodic repairs run, wrap-ups end.
        await distributor.recovery.recover()
        await feed.settle()
        await distributor.recovery.reconcile_agents()
        await feed.settle()
        # What the example exercised (pytest --hypothesis-show-statistics).
        label(f"events fed: {min(len(feed.log) // 10 * 10, 40)}+")
        label(f"redirects: {min(len(pbx.redirects), 3)}+")
        label(f"answered calls: {min(sum(1 for c in pbx.calls if c.answered_by), 2)}+")
        label(f"lost events: {min(sum(1 for line in feed.log if line.startswith('drop')), 3)}+")
        label(f"duplicated events: {min(sum(1 for line in feed.log if line.startswith('dup')), 3)}+")

        # -- never one call to two agents, never one agent for two calls, the ACD never ahead of Asterisk --
        assert not pbx.violations, "\n".join(pbx.violations)

        # -- nothing reserved, on call or in wrap-up without a live channel --
        for agent_id in agent_ids:
            agent = directory.agents[agent_id]
            stored = await redis.hgetall(Keys.agent(agent_id))
            assert agent.state not in BUSY, f"agent {agent_id} left {agent.state.value} (call {agent.call})"
            assert stored["state"] == agent.state.value, \
                f"agent {agent_id} is {agent.state.value} in memory, {stored['state']} in Redis (call {stored['call']})"
        assert not distributor.book.calls, f"the ACD still follows calls {sorted(distributor.book.calls)}"
        assert not distributor.book.waiting, f"the ACD still queues calls {sorted(distributor.book.waiting)}"
        assert await redis.scard(Keys.calls) == 0, await redis.smembers(Keys.calls)
        assert await redis.zcard(Keys.waiting) == 0, await redis.zrange(Keys.waiting, 0, -1)
        assert [k async for k in redis.scan_iter(Keys.call("*"))] == []
        for bucket in await redis.smembers(Keys.buckets):
            assert await redis.zcard(Keys.bucket(bucket)) == 0, bucket

        # -- one record per call the ACD saw, none twice; "answered" only by who answered --
        rows = await outbox(redis)
        records = Counter(r["uniqueid"] for r in rows if r["kind"] == "call")
        truth = {c.uid: c for c in pbx.calls}
        for uid, count in records.items():
            assert count == 1, f"call {uid}: {count} records"
        for uid in feed.seen:
            assert records[uid] == 1, f"call {uid} followed by the ACD but no record"
        assert set(records) <= feed.seen
        for row in rows:
            if row["kind"] != "call":
                continue
            caller = truth[row["uniqueid"]]
            if row["outcome"] == "answered":
                assert row["agent"] in caller.answered_by, \
                    f"call {caller.uid} recorded as answered by {row['agent']}, answered by {caller.answered_by}"
            # Lost DialBegins may undercount; a duplicated one must not count twice.
            assert row["ring_attempts"] <= caller.dials, \
                f"call {caller.uid}: {row['ring_attempts']} ring attempts recorded, rung {caller.dials} time(s)"

        # -- each agent's history: reserved only from ready, on call only for the call it was reserved for --
        last: dict[str, dict] = {}
        for row in rows:
            if row["kind"] != "agent_state":
                continue
            before = last.get(row["agent_id"])
            if row["state"] == "reserved":
                assert before is not None and before["state"] == "ready", \
                    f"agent {row['agent_id']} reserved for {row['call_uniqueid']} from {before}"
            if row["state"] == "on_call":
                assert before is not None and before["state"] == "reserved" \
                    and before["call_uniqueid"] == row["call_uniqueid"], (before, row)
            last[row["agent_id"]] = row
        # Repaired once, there is nothing left to repair.
        assert await distributor.recovery.reconcile_agents() == 0
    finally:
        note("\n".join(feed.log))
        note(f"redirects: {pbx.redirects}")
        await distributor.close()


async def until(predicate, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def test_a_late_ready_write_does_not_undo_a_newer_reservation(redis):
    """The deterministic form of a rare failure of the property above (the agent READY in the ACD's
    memory, RESERVED in Redis). Redis applies the agent's READY (caller 1 hung up while it rang),
    then the routing script reserves it for caller 2; the reply to the READY write is handled
    last (two connections: any order). Memory must keep the newer reservation, or the agent is
    rung while "ready", its ON_CALL is refused and it is never offered a call again."""
    await redis.flushdb()
    pbx = Pbx([CallPlan(False, 9, []), CallPlan(False, 9, [])])
    ami = FakeAMI(pbx)
    directory = AgentDirectory(redis)
    await directory.upsert("1001", "Agent 1001", "general", {"mandarin": 5})
    await directory.transition("1001", AgentState.READY)
    distributor = build_core(ami, redis, directory, wrapup_s=0.01, queues=QUEUES)
    distributor.attach(ami)
    first, second = pbx.calls
    script = directory._transition
    released = asyncio.Event()

    async def reply_read_late(*args, **kwargs):
        result = await script(*args, **kwargs)
        await released.wait()
        return result

    async def ready_in_redis() -> bool:
        return await redis.hget(Keys.agent("1001"), "state") == "ready"

    async def second_caller_connected() -> bool:
        return len(pbx.redirects) == 2

    try:
        for msg in (first.tick(), first.tick(), second.tick()):    # 1 queued, rings 1001; 2 in the IVR
            ami.deliver(msg)
            await distributor.wait_idle()
        assert pbx.redirects == [(first.uid, "1001")]
        directory._transition = reply_read_late
        first.pending.clear()
        ami.deliver(first._hangup_request())
        ami.deliver(first._hangup())          # 1001 -> READY, written in Redis ...
        await until(ready_in_redis)           # ... its reply not handled yet
        ami.deliver(second.tick())            # caller 2 queues: the script reserves 1001 at once
        await until(second_caller_connected)
        released.set()                        # now the READY write's reply is handled
        await distributor.wait_idle()
        assert pbx.redirects == [(first.uid, "1001"), (second.uid, "1001")]
        stored = await redis.hgetall(Keys.agent("1001"))
        agent = directory.agents["1001"]
        assert (stored["state"], stored["call"]) == ("reserved", second.uid)
        assert (agent.state, agent.call) == (AgentState.RESERVED, second.uid), \
            f"memory says {agent.state.value} while Redis has 1001 reserved for caller 2"
    finally:
        released.set()
        directory._transition = script
        await distributor.close()
