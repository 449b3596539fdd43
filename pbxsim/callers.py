"""Simulated callers on the carrier trunk and agents' SIP phones, and the ground-truth log.

A caller reacts to what it hears (the AGI commands its channel runs), keys DTMF, waits
with a patience, talks, and hangs up. When its call is over it writes one JSON line of
what really happened, which tests and the demo compare with our PostgreSQL records.
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, TextIO

from .channel import Channel
from .scenario import CallerPlan

if TYPE_CHECKING:
    from .pbx import PBX, IncomingCall

__all__ = ["SimCaller", "SimPhone", "TruthLog"]

log = logging.getLogger(__name__)

# What a caller keys at the IVR's language menu (ivr/menus/main.yaml).
LANGUAGE_KEYS = {"zh": "1", "yue": "2", "en": "3"}
# What callers key at the satisfaction survey, by call number: 1 satisfied, 2 basically, 3 not.
SURVEY_KEYS = "1111111123"


class TruthLog:
    """One JSON line per call the simulator placed (the ground truth)."""

    def __init__(self, path: Optional[Path]) -> None:
        self.records: list[dict] = []
        self._file: Optional[TextIO] = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "w", encoding="utf-8")

    def write(self, record: dict) -> None:
        self.records.append(record)
        if self._file is not None:
            self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@dataclass(eq=False)
class SimCaller:
    pbx: "PBX"
    plan: CallerPlan
    truth: TruthLog
    call_id: int
    loop_time: Optional[Callable[[], float]] = None
    channel: Optional[Channel] = None
    arrived_at: float = 0.0
    queued_at: Optional[float] = None
    answered_at: Optional[float] = None
    talk_ended_at: Optional[float] = None
    survey_key: Optional[str] = None
    ended_at: Optional[float] = None
    agent: Optional[str] = None
    queue: Optional[str] = None
    ringing: bool = False
    hung_up_by_caller: bool = False
    prompts_seen: int = 0
    announced_positions: list = field(default_factory=list)   # places in the queue the caller was told
    agents: list = field(default_factory=list)   # every agent bridged with the caller, in order (transfers)
    bridged_s: float = 0.0                       # seconds bridged with agents, conversations that ended
    bridged_since: Optional[float] = None
    first_uniqueid: Optional[str] = None         # the call's first channel (a call back is another one)
    waiting_for_callback: bool = False
    was_called_back: bool = False
    callbacks_let_go: int = 0
    _next_say: Optional[str] = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    _timers: list[asyncio.TimerHandle] = field(default_factory=list)

    def dial(self, exten: str) -> Channel:
        self.arrived_at = self.pbx.now()
        self.channel = self.pbx.inbound_call(
            exten, self.plan.number, "", language="en", listener=self)
        return self.channel

    # ---- reactions ----------------------------------------------------------------------
    def _later(self, delay: float, callback, *args) -> None:
        self._timers.append(asyncio.get_running_loop().call_later(max(0.0, delay), callback, *args))

    def hang_up(self) -> None:
        if self.channel is not None and self.channel.alive:
            self.hung_up_by_caller = True
            self.pbx.remote_hangup(self.channel)

    def _key(self, digits: str) -> None:
        for i, digit in enumerate(digits):
            self._later(0.15 * i, self.pbx.send_dtmf, self.channel, digit)

    def on_channel_event(self, channel: Channel, event: str, headers) -> None:
        if event == "AGIExecStart":
            command = dict(headers).get("Command", "")
            upper = command.upper()
            if upper.startswith("STREAM FILE HOTLINE/QUEUE-POSITION"):
                self._next_say = "position"
            elif upper.startswith("SAY NUMBER") and self._next_say == "position":
                self._next_say = None
                self.announced_positions.append(int(command.split()[2]))
            elif upper.startswith("RECORD FILE"):
                # Leaving a message: say it, then key # to end it.
                self._later(self.plan.reaction_s + 0.2, self._key, "#")
                return
            if upper.startswith(("GET DATA", "WAIT FOR DIGIT", "GET OPTION")):
                if "hotline/queue-offer" in command:
                    # Past the queue's limit: a call back (1), a message (2), or keep waiting.
                    key = {"callback": "1", "message": "2"}.get(self.plan.queue_choice or "")
                    if key:
                        if key == "1":
                            self.waiting_for_callback = True
                            self.pbx.trunk_callees[self.plan.number] = self
                        self._later(self.plan.reaction_s, self._key, key)
                    return
                if "hotline/survey" in command:
                    # The satisfaction survey after the agent hung up: most callers are satisfied.
                    self.survey_key = SURVEY_KEYS[self.call_id % len(SURVEY_KEYS)]
                    self._later(self.plan.reaction_s, self._key, self.survey_key)
                    return
                if "hotline/language-menu" in command:
                    # The IVR asks which language: the caller answers with theirs, not a menu input.
                    self._later(self.plan.reaction_s, self._key, LANGUAGE_KEYS.get(self.plan.language, "1"))
                    return
                prompt = self.prompts_seen
                self.prompts_seen += 1
                if self.plan.hangup_in_ivr_at_prompt == prompt:
                    self._later(self.plan.reaction_s, self.hang_up)
                    return
                inputs = self.plan.menu_inputs
                digits = inputs[prompt] if prompt < len(inputs) else None
                if digits:
                    self._later(self.plan.reaction_s, self._key, digits)
        elif event == "UserEvent":
            fields = dict(headers)
            if fields.get("UserEvent") == "HotlineWaiting" and self.queued_at is None:
                self.queued_at = self.pbx.now()
                self.queue = fields.get("Queue") or None
                self._later(self.plan.patience_s, self._patience_over)
        elif event == "DialBegin":
            self.ringing = True
        elif event == "DialEnd":
            self.ringing = False
        elif event == "BridgeEnter" and self.answered_at is not None:
            # Bridged again (transferred): another agent; the caller hangs up as planned from the first.
            self.bridged_since = self.pbx.now()
            if channel.peer is not None:
                self.agents.append(channel.peer.endpoint)
        elif event == "BridgeEnter" and self.answered_at is None:
            self.answered_at = self.bridged_since = self.pbx.now()
            peer = channel.peer
            self.agent = peer.endpoint if peer is not None else None
            if self.agent:
                self.agents.append(self.agent)
            if self.plan.agent_hangs_up and peer is not None:
                self._later(self.plan.talk_s, self.pbx.remote_hangup, peer)
            else:
                self._later(self.plan.talk_s, self.hang_up)
        elif event == "BridgeLeave":
            now = self.pbx.now()
            if self.bridged_since is not None:
                self.bridged_s += now - self.bridged_since
                self.bridged_since = None
            if self.talk_ended_at is None:
                self.talk_ended_at = now
        elif event == "Hangup":
            if self.waiting_for_callback and not self.was_called_back:
                return          # hung up to wait for the call back (or let one ring out): still waiting
            self._finished()

    def called_back(self, call) -> None:
        """The hotline calls back (Originate over the trunk): answer it, talk as planned (or, as
        planned, let it ring out and wait for the next one, or give up)."""
        if self.callbacks_let_go < self.plan.callbacks_unanswered:
            self.callbacks_let_go += 1
            if self.callbacks_let_go < self.plan.callbacks_unanswered or self.plan.answers_callback:
                self.pbx.trunk_callees[self.plan.number] = self       # ready for the next one
            else:
                self.first_uniqueid = self.first_uniqueid or (self.channel.uniqueid if self.channel else None)
                self.waiting_for_callback = False
                self._finished()
            return
        self.waiting_for_callback = False
        self.was_called_back = True
        self.first_uniqueid = self.first_uniqueid or (self.channel.uniqueid if self.channel else None)
        self.channel = call.channel
        delay = self.plan.callback_answer_s
        self._later(self.plan.reaction_s if delay is None else delay, call.answer)

    def _patience_over(self) -> None:
        if self.answered_at is None and not self.waiting_for_callback and not self.was_called_back:
            self.hang_up()

    def _finished(self) -> None:
        if self.ended_at is not None:
            return
        self.ended_at = self.pbx.now()
        for timer in self._timers:
            timer.cancel()
        if self.answered_at is not None:
            outcome, where = "answered", None
        elif self.hung_up_by_caller or self.queued_at is not None:
            outcome = "abandoned"
            where = "ringing" if self.ringing else ("queue" if self.queued_at is not None else "ivr")
        else:
            outcome, where = "ivr_completed", None
        wait = None
        if self.queued_at is not None:
            wait = (self.answered_at if self.answered_at is not None else self.ended_at) - self.queued_at
        self.truth.write({
            "id": self.call_id,
            "uniqueid": self.first_uniqueid or (self.channel.uniqueid if self.channel else None),
            "caller": self.plan.number,
            "line": self.plan.line,
            "language": self.plan.language,
            "arrived_at": round(self.arrived_at, 3),
            "queued_at": round(self.queued_at, 3) if self.queued_at is not None else None,
            "answered_at": round(self.answered_at, 3) if self.answered_at is not None else None,
            "ended_at": round(self.ended_at, 3),
            "outcome": outcome,
            "abandoned_in": where,
            "queue": self.queue,
            "agent": self.agent,
            "wait_s": round(wait, 3) if wait is not None else None,
            "talk_s": round((self.talk_ended_at or self.ended_at) - self.answered_at, 3)
            if self.answered_at is not None else None,
            # Time bridged with agents (a transferred call: every conversation, not the rings between).
            "bridged_s": round(self.bridged_s + (self.ended_at - self.bridged_since if self.bridged_since else 0), 3)
            if self.answered_at is not None else None,
            "agents": list(self.agents),
            "survey": {"1": "satisfied", "2": "basically_satisfied", "3": "dissatisfied"}.get(self.survey_key or ""),
            "hung_up_by": "caller" if self.hung_up_by_caller else ("agent" if self.answered_at else "system"),
        })
        self.done.set()


@dataclass(eq=False)
class SimPhone:
    """An agent's SIP phone: rings, answers after a delay (or not), rejects a second call."""

    pbx: "PBX"
    endpoint: str
    rng: random.Random
    answer_delay_s: tuple[float, float] = (0.3, 1.5)
    no_answer_share: float = 0.0
    current: Optional["IncomingCall"] = None
    rings: int = 0
    busy_rejections: int = 0        # a second call while one was on it: the ACD gave it two calls

    def ring(self, call: "IncomingCall") -> None:
        if self.current is not None and not self.current.ended.is_set():
            self.busy_rejections += 1
            call.reject(busy=True)
            return
        self.rings += 1
        self.current = call
        if self.rng.random() < self.no_answer_share:
            return  # rings until the dialplan gives up
        loop = asyncio.get_running_loop()
        loop.call_later(self.rng.uniform(*self.answer_delay_s), call.answer)
