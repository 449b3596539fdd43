"""Recovery's decisions, as rules on plain data: given what this node followed, what Redis holds and
what Asterisk has (``CoreShowChannels``), which calls end now, which are adopted and how, and which
agents are repaired. No I/O: acd/recovery.py reads the inputs and applies the plan.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Optional

from hotline.live import CallState, LiveCall
from hotline.model import AgentState

from .agents import Agent
from .callbook import Witnessed

__all__ = ["Adoption", "AgentRepair", "CallStep", "Channel", "Recovered", "Step", "adoption", "lost_hangups",
           "newcomers", "plan_agents", "plan_call", "plan_reconcile", "with_witnessed"]

Channel = Mapping[str, str]        # one CoreShowChannel event
UP = "6"                           # AMI ChannelState of an answered channel


def lost_hangups(known: Mapping[str, LiveCall], current: Mapping[str, LiveCall],
                 live: Iterable[str]) -> list[LiveCall]:
    """Calls followed since before Asterisk listed its channels (``known``, still followed:
    ``current``) whose channels it no longer has: their Hangup event was lost."""
    live = set(live)
    lost = []
    for uid, call in known.items():
        if current.get(uid) is not call or uid in live or (call.leg and call.leg in live):
            continue
        if call.callback and call.leg in ("", "pending"):
            continue        # virtual hold: the caller hung up on purpose, the call waits for its call back
        lost.append(call)
    return lost


def with_witnessed(call: LiveCall, seen: Optional[Witnessed]) -> LiveCall:
    """The call completed from what this node saw while another node followed it."""
    if seen is not None:
        call.ring_attempts = max(call.ring_attempts, seen.ring_attempts)
        call.answered_at = call.answered_at or seen.answered_at
        call.talk_ended_at = call.talk_ended_at or seen.talk_ended_at
        call.caller_hung_up = call.caller_hung_up or seen.caller_hung_up
        if call.answered_at is not None and call.state in (CallState.WAITING, CallState.RINGING):
            call.state = CallState.TALKING
    return call


class Step(enum.Enum):
    END = "end"                     # it ended while nobody followed it: its record now
    ADOPT = "adopt"                 # Asterisk has its channel: follow it again
    OWED = "owed"                   # virtual hold, still owed a call back: back in its place
    RINGING_BACK = "ringing_back"   # its call back rings the caller (placed by a process now gone)
    LEG = "leg"                     # its call back was answered: adopt that leg


@dataclass
class CallStep:
    step: Step
    call: LiveCall
    channel: Optional[Channel] = None      # ADOPT, RINGING_BACK, LEG: the channel to follow
    ended_at: Optional[float] = None       # END
    cause: Optional[int] = None            # END


def plan_call(call: LiveCall, channels: Mapping[str, Channel], seen: Optional[Witnessed], now: float) -> CallStep:
    """What becomes of a call Redis knows and this node is to follow (ours, or a dead node's)."""
    call = with_witnessed(call, seen)
    channel = channels.get(call.uniqueid)
    if channel is None and call.callback and call.answered_at is None:
        leg = channels.get(call.leg) if call.leg not in ("", "pending") else None
        # A call back being placed when the ACD died: Asterisk has its leg by the id we gave it.
        placed = channels.get(call.leg_id) if call.leg == "pending" and call.leg_id else None
        if leg is not None or call.leg in ("", "pending"):
            if placed is not None and placed.get("ChannelState") != UP:
                return CallStep(Step.RINGING_BACK, call, placed)
            if leg is not None:
                return CallStep(Step.LEG, call, leg)
            if placed is not None:              # answered meanwhile: that is the leg
                call.leg = call.leg_id
                return CallStep(Step.LEG, call, placed)
            return CallStep(Step.OWED, call)
    if channel is None:
        ended = seen.ended_at if seen is not None and seen.ended_at else now
        return CallStep(Step.END, call, ended_at=ended, cause=seen.cause if seen is not None else None)
    return CallStep(Step.ADOPT, call, channel)


class Adoption(enum.Enum):
    ANSWERED = "answered"           # bridged: answered while nobody followed it; its agent is on call
    REQUEUE = "requeue"             # waiting: queued again with what it was queued with (its place)
    REQUEUE_ASKING = "asking"       # in the queue's dialplan but not known waiting: its queue variables read back
    NONE = "none"                   # still in the IVR or ringing: its events will say more


def adoption(call: LiveCall, channel: Channel) -> Adoption:
    if channel.get("BridgeId"):
        return Adoption.ANSWERED
    if channel.get("Context", "") == "hotline-wait":
        if call.state == CallState.WAITING and call.queue:
            return Adoption.REQUEUE
        return Adoption.REQUEUE_ASKING
    return Adoption.NONE


def newcomers(channels: Mapping[str, Channel], followed: Mapping[str, LiveCall], elsewhere: set[str], *,
              caller_contexts: set[str], owns: Callable[[str], bool]) -> list[Channel]:
    """Callers who arrived while no ACD followed them (this node's by their Linkedid)."""
    found = []
    for uid, channel in channels.items():
        if uid in followed or uid in elsewhere or channel.get("Context") not in caller_contexts:
            continue
        if owns(channel.get("Linkedid") or uid):
            found.append(channel)
    return found


@dataclass
class Recovered:
    """What applying the calls' steps came to (the agents' repairs depend on it)."""
    gone: set[str] = field(default_factory=set)                 # calls ended by this recovery
    answered_by: dict[str, str] = field(default_factory=dict)   # agent -> answered call that ended unfollowed
    elsewhere: set[str] = field(default_factory=set)            # followed by a live node

    def ended(self, call: LiveCall) -> None:
        self.gone.add(call.uniqueid)
        if call.answered_at is not None:
            self.answered_by[call.agent or ""] = call.uniqueid


class AgentRepair(enum.Enum):
    ON_CALL_THEN_WRAPUP = "answered_unfollowed"     # its call was answered and ended unfollowed
    FREE = "free"                   # reserved for a call that is gone: ready again
    WRAPUP = "wrapup"               # on a call that ended (or in a wrap-up nobody times): wrap-up


def plan_agents(agents: Iterable[Agent], calls: Mapping[str, LiveCall], recovered: Recovered, *,
                follows: Callable[[Agent], bool], timing: Callable[[str], bool]) -> tuple[list[str], list[tuple[str, AgentRepair]]]:
    """Agents whose call this node now follows (their node becomes this one), and the repairs of
    the agents this node drives: those whose call is gone are freed, those on a call that ended go
    to wrap-up, a wrap-up nobody times is timed again."""
    claimed, repairs = [], []
    for agent in agents:
        live = calls.get(agent.call) if agent.call else None
        ours = live is not None and live.agent == agent.id
        if ours:
            claimed.append(agent.id)           # its call is ours now (adopted)
        if not (ours or follows(agent)) or agent.call in recovered.elsewhere:
            continue
        if agent.call and recovered.answered_by.get(agent.id) == agent.call and \
                agent.state in (AgentState.RESERVED, AgentState.ON_CALL):
            repairs.append((agent.id, AgentRepair.ON_CALL_THEN_WRAPUP))
        elif agent.state == AgentState.RESERVED and agent.call not in recovered.gone and not ours:
            repairs.append((agent.id, AgentRepair.FREE))
        elif agent.state == AgentState.ON_CALL and live is None:
            repairs.append((agent.id, AgentRepair.WRAPUP))
        elif agent.state == AgentState.WRAPUP and not timing(agent.id):
            repairs.append((agent.id, AgentRepair.WRAPUP))
    return claimed, repairs


def plan_reconcile(agents: Iterable[Agent], live: set[str], followed: Mapping[str, LiveCall], *,
                   follows: Callable[[Agent], bool]) -> list[tuple[str, AgentRepair]]:
    """Agents reserved or on call for a call Asterisk no longer has (and nobody is ending)."""
    repairs = []
    for agent in agents:
        if agent.state not in (AgentState.RESERVED, AgentState.ON_CALL) or agent.call in live:
            continue
        if not follows(agent) or agent.call in followed:
            continue            # another live node follows it, or its Hangup is being handled right now
        repairs.append((agent.id, AgentRepair.FREE if agent.state == AgentState.RESERVED else AgentRepair.WRAPUP))
    return repairs
