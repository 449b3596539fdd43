"""The live state the services share through Redis, defined once: the states of a call, the call
hash (``hotline:call:<uniqueid>``) read and written by field name, and the survey's scores.

The ACD writes the call hash; the IVR (the announcement) and the CTI (screen pop, wallboard)
read it. Every reader goes through :meth:`LiveCall.from_redis`, so a field is spelled and
converted in one place.
"""
from __future__ import annotations

import enum
import typing
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Mapping, Optional

__all__ = ["CallState", "LIVE_PHASES", "LiveCall", "SURVEY_SCORES", "clean_text"]


class CallState(enum.StrEnum):
    """Where a followed call is (the call hash's ``state``)."""

    IVR = "ivr"                 # in the voice menus
    WAITING = "waiting"         # queued for an agent (or on virtual hold, owed a call back)
    RINGING = "ringing"         # an agent's phone rings for it
    TALKING = "talking"         # bridged with an agent (the survey may follow)
    MESSAGE = "message"         # leaving a message, offered past the queue's limit
    UNKNOWN = "unknown"         # what a reader makes of a state it does not know (never written)

    @property
    def phase(self) -> "CallState":
        """The state a live view counts it in: a caller leaving a message is still in the IVR."""
        return CallState.IVR if self is CallState.MESSAGE else self

    @classmethod
    def read(cls, value: Any) -> "CallState":
        try:
            state = cls(value)
        except ValueError:
            return cls.UNKNOWN
        return state


# The phases a live view counts calls in (wallboard, metrics), in order.
LIVE_PHASES = (CallState.IVR, CallState.WAITING, CallState.RINGING, CallState.TALKING)

# What a caller keys at the satisfaction survey (ivr/survey.py), and the scores a record may carry.
SURVEY_SCORES: Mapping[str, str] = {"1": "satisfied", "2": "basically_satisfied", "3": "dissatisfied"}


def clean_text(value: Optional[str], limit: int = 64) -> str:
    """Caller-controlled text (caller ID) kept printable and short before we store it."""
    if not value or value == "<unknown>":
        return ""
    return "".join(ch for ch in value if ch.isprintable())[:limit]


@dataclass
class LiveCall:
    """One call as the ACD follows it; its Redis hash has one field per attribute, by name."""

    uniqueid: str
    channel: str
    linkedid: str
    line: str
    caller: str
    arrived_at: float
    queued_at: Optional[float] = None
    queue: Optional[str] = None
    skills: str = ""                   # required skills, "mandarin:1+enterprise:3" (hotline.model.format_skills)
    priority: int = 0
    state: CallState = CallState.IVR
    agent: Optional[str] = None
    answered_at: Optional[float] = None
    ring_attempts: int = 0
    caller_hung_up: bool = False
    bucket: str = ""                   # the waiting-call bucket it was queued in (acd/router.py)
    talk_ended_at: Optional[float] = None   # the bridge with the agent ended (a survey may follow)
    offer: str = ""                    # what the caller is offered past the queue's limit ("callback+message")
    overflowed_from: str = ""          # the queue it overflowed from (queues.yaml overflow)
    callback: str = ""                 # number to call back: the caller hung up, keeping the place
    leg: str = ""                      # uniqueid of the call-back leg placed to the caller ("pending" while placed)
    callback_tries: int = 0            # call backs placed that the caller did not answer
    owner: str = ""                    # the ACD node following the call (acd/cluster.py)
    leg_id: str = ""                   # uniqueid given to the call back being placed (Originate ChannelId),
                                       # saved first: after a crash, recovery finds that leg in Asterisk
    agent_channel: str = ""            # the agent's leg (DialBegin DestChannel): what hang-up and transfer act on
    agents: str = ""                   # every agent who talked with the caller, in order, "+"-joined
    talked_s: float = 0.0              # seconds bridged with agents in conversations that ended
    bridged_at: Optional[float] = None  # the conversation going on now began (None: not bridged)
    transferring: str = ""             # a transfer under way sends the caller to: queue, agent or external
    # (The call hash also holds ``transfers`` and ``transfer_allowance``, written only by the
    # transfer scripts (acd/lua/transfer*.lua), never from this copy.)

    def __post_init__(self) -> None:
        if not isinstance(self.state, CallState):
            self.state = CallState(self.state)

    def to_redis(self) -> dict[str, str]:
        return {name: _encode(value) for name, value in asdict(self).items()}

    @classmethod
    def from_redis(cls, data: Mapping[str, str], *, uniqueid: Optional[str] = None,
                   lenient: bool = False) -> "LiveCall":
        """The call from its hash, field by field by name. Strict (the ACD): a missing ``uniqueid``
        or ``arrived_at``, a garbled number or an unknown state raises ``KeyError``/``ValueError``.
        Lenient (screens): what is missing or garbled reads as the field's default, an unknown state
        as ``unknown``."""
        values: dict[str, Any] = {"channel": "", "linkedid": "", "line": "main", "caller": ""}
        if lenient:
            values.update(uniqueid=uniqueid or "", arrived_at=0.0)
        decoders = _LENIENT if lenient else _STRICT
        for name, decode in decoders.items():
            raw = uniqueid if name == "uniqueid" and uniqueid is not None else data.get(name)
            if raw is None or raw == "":
                if name in _REQUIRED and not lenient:
                    raise KeyError(name)
                continue
            try:
                values[name] = decode(raw)
            except ValueError:
                if not lenient:
                    raise
        return cls(**values)


def _finite(text: str) -> float:
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"not a finite number: {text!r}")
    return value


def _decoder(kind: Any, lenient: bool) -> Callable[[str], Any]:
    if kind in (float, Optional[float]):
        return _finite
    if kind is int:
        return int
    if kind is bool:
        return lambda text: text == "True"
    if kind is CallState:
        return CallState.read if lenient else CallState
    return str


def _encode(value: Any) -> str:
    return "" if value is None else str(value)


_HINTS = typing.get_type_hints(LiveCall)
_STRICT = {f.name: _decoder(_HINTS[f.name], False) for f in fields(LiveCall)}
_LENIENT = {f.name: _decoder(_HINTS[f.name], True) for f in fields(LiveCall)}
_REQUIRED = {"uniqueid", "arrived_at"}
