"""The calls this ACD node follows, in memory, and the guards against Asterisk's lost, duplicated
and late events. No I/O: the handlers ask the book, then act.

- ``calls``: every followed call by its uniqueid (and by its call-back leg's uniqueid);
- ``waiting``: the followed calls queued for an agent, as the router knows them;
- ended calls, remembered for a while, so that a late duplicate of one of their events neither
  starts them again nor touches the agent's next call;
- the agent legs Dial rang for each caller, so that a late DialEnd or RingNoAnswer of an earlier
  ring is told from the ring going on now;
- what this node *witnessed* of the callers other nodes follow: if that node dies, whoever adopts
  the call completes its record from this, not from guesses.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Collection, Mapping, Optional

from hotline.live import LiveCall

from .router import WaitingCall

__all__ = ["CallBook", "ENDED_KEPT_S", "WITNESS_KEPT_S", "Witnessed"]

ENDED_KEPT_S = 120.0            # ended calls remembered, so a late duplicate event cannot revive them
WITNESS_KEPT_S = 120.0          # ended calls seen for another node, kept this long


@dataclass
class Witnessed:
    """What this node saw of a call another node follows (every node gets every AMI event)."""
    ring_attempts: int = 0
    answered_at: Optional[float] = None
    talk_ended_at: Optional[float] = None
    caller_hung_up: bool = False
    ended_at: Optional[float] = None
    cause: Optional[int] = None


class CallBook:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.calls: dict[str, LiveCall] = {}
        self.waiting: dict[str, WaitingCall] = {}
        self.witnessed: dict[str, Witnessed] = {}
        self.followed = 0                               # calls this node followed from their start
        self._witness_expiry: list[tuple[float, str]] = []
        # uniqueid (or call-back leg) of a call that ended lately -> (kept until, the call's uniqueid)
        self._ended: dict[str, tuple[float, str]] = {}
        self._dials: dict[str, dict[str, bool]] = {}    # caller -> {agent leg uniqueid: its Dial ended}

    # ---- followed calls ------------------------------------------------------------------
    def get(self, uniqueid: str) -> Optional[LiveCall]:
        """The followed call this uniqueid belongs to (the caller's channel or its call-back leg)."""
        return self.calls.get(uniqueid)

    def follow(self, call: LiveCall, *, new: bool = False) -> None:
        self.calls[call.uniqueid] = call
        if new:
            self.followed += 1

    def follow_leg(self, call: LiveCall, leg: str) -> None:
        """The call's events now also come from this channel (its call-back leg)."""
        self.calls[leg] = call

    def followed_calls(self) -> dict[str, LiveCall]:
        """The followed calls by their own uniqueid (not again by their legs)."""
        return {uid: call for uid, call in self.calls.items() if uid == call.uniqueid}

    def is_followed(self, call: LiveCall) -> bool:
        return self.calls.get(call.uniqueid) is call

    def drop(self, call: LiveCall) -> None:
        """No longer followed here (ended, or followed by another node)."""
        if self.calls.get(call.uniqueid) is call:
            del self.calls[call.uniqueid]
        if call.leg and self.calls.get(call.leg) is call:
            del self.calls[call.leg]
        self.waiting.pop(call.uniqueid, None)

    def let_go(self, call: LiveCall) -> None:
        """Another node follows this call after all: from here on only witnessed, in case that node
        dies before the call ends."""
        if self.calls.get(call.uniqueid) is call:
            del self.calls[call.uniqueid]
            self.witnessed[call.uniqueid] = Witnessed(call.ring_attempts, call.answered_at, call.talk_ended_at,
                                                      call.caller_hung_up)
        self.waiting.pop(call.uniqueid, None)

    def is_waiting(self, call: LiveCall, waiting: Optional[WaitingCall] = None) -> bool:
        """Queued (as this very entry, when given)."""
        entry = self.waiting.get(call.uniqueid)
        return entry is not None and (waiting is None or entry is waiting)

    # ---- ended calls ---------------------------------------------------------------------
    def ended(self, call: LiveCall) -> None:
        """The call ended: its late events must find it ended."""
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

    def has_ended(self, uniqueid: str) -> bool:
        return uniqueid in self._ended

    def call_of(self, uniqueid: str) -> str:
        """The uniqueid of the call this channel belongs to (followed or lately ended), or ""."""
        call = self.calls.get(uniqueid)
        if call is not None:
            return call.uniqueid
        return self._ended.get(uniqueid, (0.0, ""))[1]

    # ---- the agent legs Dial rings -------------------------------------------------------
    def dial_begun(self, uniqueid: str, leg: str) -> bool:
        """Dial rings this agent leg for the caller; False for a duplicate of a counted ring."""
        dials = self._dials.setdefault(uniqueid, {})
        if leg in dials:
            return False
        for other in dials:         # one Dial at a time: any earlier one is over (its DialEnd lost)
            dials[other] = True
        dials[leg] = False
        return True

    def dial_ended(self, uniqueid: str, leg: str) -> bool:
        """This leg's ringing ended; False for a duplicate of an end already handled."""
        dials = self._dials.setdefault(uniqueid, {})
        if dials.get(leg):
            return False
        dials[leg] = True
        return True

    def ringing(self, uniqueid: str) -> bool:
        """An agent leg is being rung for this caller right now."""
        return not all(self._dials.get(uniqueid, {}).values())

    # ---- callers other nodes follow ------------------------------------------------------
    def witness(self, msg: Mapping[str, str], *, watching: bool, inbound_contexts: Collection[str]) -> Optional[Witnessed]:
        """What this node saw of the caller's channel named in ``msg`` (another node follows it). A
        new caller's ``Newchannel`` starts witnessing it, when ``watching`` (other nodes are live)."""
        uid = msg.get("Uniqueid", "")
        seen = self.witnessed.get(uid)
        if seen is not None or not watching:
            return seen
        if not uid or msg.get("Linkedid", uid) != uid:
            return None                     # an agent's leg or a local channel: not the caller
        if msg.get("Event") != "Newchannel" or msg.get("Context") not in inbound_contexts:
            return None
        seen = self.witnessed[uid] = Witnessed()
        return seen

    def witnessed_end(self, uniqueid: str, seen: Witnessed, cause: Optional[int]) -> None:
        if seen.ended_at is not None:
            return
        now = self.clock()
        seen.ended_at, seen.cause = now, cause
        self._witness_expiry.append((now + WITNESS_KEPT_S, uniqueid))
        expiry = self._witness_expiry
        while expiry and expiry[0][0] < now:
            self.witnessed.pop(expiry.pop(0)[1], None)
