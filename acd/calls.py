"""A call as the ACD follows it (live state mirrored in its Redis hash ``hotline:call:<uniqueid>``),
and helpers for what Asterisk reports about calls."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

__all__ = ["ENDED_KEPT_S", "LiveCall", "UP", "ami_duration", "clean_text"]


def clean_text(value: Optional[str], limit: int = 64) -> str:
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


def ami_duration(text: str) -> float:
    """AMI Duration ``HH:MM:SS`` in seconds (0 if unreadable)."""
    try:
        hours, minutes, seconds = (int(part) for part in text.split(":"))
    except ValueError:
        return 0.0
    return hours * 3600 + minutes * 60 + seconds
