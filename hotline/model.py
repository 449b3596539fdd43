"""The hotline's domain terms, defined once: call outcome, agent state, skills, call record."""
from __future__ import annotations

import enum
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

__all__ = [
    "AbandonedIn", "AgentState", "CallOutcome", "CallRecord", "NOT_READY_REASONS", "SkillError",
    "format_skills", "parse_skills", "valid_name",
]

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class CallOutcome(str, enum.Enum):
    ANSWERED = "answered"            # an agent answered
    ABANDONED = "abandoned"          # the caller hung up before an agent answered
    IVR_COMPLETED = "ivr_completed"  # the IVR served the caller and ended the call itself


class AbandonedIn(str, enum.Enum):
    IVR = "ivr"
    QUEUE = "queue"
    RINGING = "ringing"              # while an agent's phone was ringing


class AgentState(str, enum.Enum):
    LOGGED_OUT = "logged_out"
    READY = "ready"
    RESERVED = "reserved"            # chosen for a call, phone ringing
    ON_CALL = "on_call"
    WRAPUP = "wrapup"
    NOT_READY = "not_ready"


# Why an agent is not ready (reason codes on record in agent_states; "no_answer" is set by the ACD).
NOT_READY_REASONS = ("break", "meal", "training", "meeting", "no_answer")


class SkillError(ValueError):
    pass


def valid_name(value: str) -> bool:
    """Queue, skill and agent names: letters, digits, '-' and '_' only (they reach AMI and SQL)."""
    # (fullmatch: "$" would also accept a name ending in a newline, which AMI reads as a new header)
    return bool(_NAME.fullmatch(value))


# Skills travel through dialplan variables and UserEvent arguments, where Asterisk splits
# on commas: so the list separator is '+', as in "mandarin:1+enterprise:3".
SKILL_SEPARATOR = "+"


def parse_skills(text: str) -> dict[str, int]:
    """Parse ``"mandarin:1+enterprise:3"`` (a bare name means level 1; ',' also accepted)."""
    skills: dict[str, int] = {}
    for part in re.split(r"[+,]", text or ""):
        part = part.strip()
        if not part:
            continue
        name, _, level = part.partition(":")
        name = name.strip()
        if not valid_name(name):
            raise SkillError(f"bad skill name {name!r}")
        try:
            value = int(level) if level.strip() else 1
        except ValueError:
            raise SkillError(f"bad level for skill {name!r}: {level!r}") from None
        if not 1 <= value <= 10:
            raise SkillError(f"level for skill {name!r} must be 1..10, got {value}")
        skills[name] = value
    return skills


def format_skills(skills: dict[str, int]) -> str:
    return SKILL_SEPARATOR.join(f"{name}:{level}" for name, level in sorted(skills.items()))


@dataclass
class CallRecord:
    """What PostgreSQL keeps of one inbound call (table ``calls``)."""

    uniqueid: str
    arrived_at: float                      # epoch seconds
    ended_at: float
    outcome: CallOutcome
    linkedid: Optional[str] = None
    line: str = "main"
    caller_id: Optional[str] = None
    queued_at: Optional[float] = None
    answered_at: Optional[float] = None
    talk_ended_at: Optional[float] = None  # end of the conversation (the caller may stay for a survey)
    queue: Optional[str] = None
    agent: Optional[str] = None
    abandoned_in: Optional[AbandonedIn] = None
    hangup_cause: Optional[int] = None
    ring_attempts: int = 0
    priority: int = 0
    skills: Optional[str] = None
    ivr_path: Optional[Any] = field(default=None)
    survey: Optional[str] = None            # satisfied / basically_satisfied / dissatisfied
    agents: Optional[list[str]] = None      # every agent who talked with the caller, in order
    transfers: Optional[list[dict[str, Any]]] = None    # {to, kind, mode, at, by, from} per transfer
    talked_s: Optional[float] = None        # a transferred call: seconds bridged with agents

    @property
    def wait_s(self) -> Optional[float]:
        if self.queued_at is None:
            return None
        end = self.answered_at if self.answered_at is not None else self.ended_at
        return max(0.0, end - self.queued_at)

    @property
    def talk_s(self) -> Optional[float]:
        if self.answered_at is None:
            return None
        if self.talked_s is not None:
            return self.talked_s            # (not the time ringing the next agent after a transfer)
        end = self.talk_ended_at if self.talk_ended_at is not None else self.ended_at
        return max(0.0, end - self.answered_at)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcome"] = self.outcome.value
        data["abandoned_in"] = self.abandoned_in.value if self.abandoned_in else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "CallRecord":
        data = dict(data)
        data["outcome"] = CallOutcome(data["outcome"])
        if data.get("abandoned_in"):
            data["abandoned_in"] = AbandonedIn(data["abandoned_in"])
        return cls(**data)
