"""Transfers of a call from the desktop: the rules, on plain data (no I/O).

- where each kind of target sends the caller (:func:`destination`): ``queue`` (the caller queues
  again, keeping its first queue time), ``agent`` (a ready agent, rung at once), ``specialist`` (a
  department's policy specialists: numbers configured in ``transfer_specialists``) and
  ``emergency`` (110, 119, 120, 122 only), the last two dialled on the trunk by the dialplan's
  ``hotline-transfer-out``, which sends the caller back to the queue if nobody answers;
- the 12345 rule "来电最多转接一次" (:func:`refusal`): a call is transferred at most once unless a
  supervisor allowed one more; the count and the allowances live in the call hash, checked and
  appended in one Redis script (acd/lua/transfer.lua) so that every node enforces it;
- what a transfer leaves in the call record (:func:`transfer_entry`) and a transferred call's talk
  time (:func:`talked_seconds`: the time bridged with agents, not the time ringing the next one).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Iterable, Optional

from hotline.model import SkillError, format_skills, parse_skills, valid_name

__all__ = ["EMERGENCY_NUMBERS", "MAX_TRANSFERS", "ONCE_ONLY", "Destination", "TransferError", "TransferKind",
           "TransferMode", "destination", "refusal", "talked_seconds", "transfer_entry"]

# The emergency services a 12345 agent may hand a caller to, and nothing else on that menu.
EMERGENCY_NUMBERS = {"110": "police", "119": "fire", "120": "ambulance", "122": "traffic accidents"}
MAX_TRANSFERS = 1               # "来电最多转接一次": a call may be transferred once
ONCE_ONLY = "来电最多转接一次: this call was already transferred once; a supervisor may allow one more"

WAIT_CONTEXT = "hotline-wait"
CONNECT_CONTEXT = "hotline-connect"
OUT_CONTEXT = "hotline-transfer-out"


class TransferKind(enum.StrEnum):
    QUEUE = "queue"
    AGENT = "agent"
    SPECIALIST = "specialist"
    EMERGENCY = "emergency"


class TransferMode(enum.StrEnum):
    BLIND = "blind"
    ATTENDED = "attended"


class TransferError(ValueError):
    """A transfer refused, with the HTTP status that says why (400 bad target, 403, 404, 409)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Destination:
    """Where the caller's channel goes (BlindTransfer Context/Exten), the channel variables set on
    it first, and what the follower of the call expects next (``expect``: queue, agent, external)."""

    context: str
    exten: str
    expect: str
    variables: tuple[tuple[str, str], ...] = field(default=())
    agent: str = ""                 # the agent to reserve (kind agent)


def destination(kind: str, target: str, *, queues: Iterable[str], specialists: Iterable[str],
                skills: str = "", priority: int = 0, transferer: str = "") -> Destination:
    """The destination of a transfer to ``target`` of ``kind``; :class:`TransferError` (400) for a
    target that kind does not allow. ``skills`` and ``priority``: what the caller queues with."""
    try:
        kind = TransferKind(kind)
    except ValueError:
        raise TransferError(400, f"kind must be one of {', '.join(k.value for k in TransferKind)}") from None
    if kind == TransferKind.QUEUE:
        known = set(queues)
        if target not in known:
            raise TransferError(400, f"unknown queue {target!r} (queues: {', '.join(sorted(known))})")
        try:
            required = format_skills(parse_skills(skills))
        except SkillError as exc:
            raise TransferError(400, f"skills: {exc}") from None
        return Destination(WAIT_CONTEXT, "s", "queue", (("HOTLINE_QUEUE", target), ("HOTLINE_SKILLS", required),
                                                        ("HOTLINE_PRIORITY", str(priority))))
    if kind == TransferKind.AGENT:
        if not (target.isdigit() and valid_name(target)):
            raise TransferError(400, f"an agent is their extension (digits), got {target!r}")
        if target == transferer:
            raise TransferError(400, "a call cannot be transferred to the agent who has it")
        return Destination(CONNECT_CONTEXT, target, "agent", agent=target)
    allowed = EMERGENCY_NUMBERS if kind == TransferKind.EMERGENCY else set(specialists)
    if target not in allowed:
        what = "emergency numbers" if kind == TransferKind.EMERGENCY else "policy specialists"
        raise TransferError(400, f"{target!r} is not one of the {what} ({', '.join(sorted(allowed)) or 'none set'})")
    return Destination(OUT_CONTEXT, target, "external")


def refusal(done: int, allowed_more: int, limit: int = MAX_TRANSFERS) -> Optional[str]:
    """Why one more transfer is refused (``done`` so far, ``allowed_more`` by supervisors), or None.
    The same rule as acd/lua/transfer.lua, which applies it atomically."""
    return ONCE_ONLY if done >= limit + allowed_more else None


def transfer_entry(kind: str, target: str, mode: str, at: float, by: str, *, transferer: str, entry_id: str) -> dict:
    """A transfer as the call hash and then the record keep it (``transfers``, one per transfer)."""
    return {"id": entry_id, "kind": kind, "to": target, "mode": mode, "at": at, "by": by, "from": transferer}


def talked_seconds(closed_s: float, open_since: Optional[float], end: float) -> float:
    """Seconds bridged with agents: the segments that ended, and the one still open at ``end``."""
    return round(max(0.0, closed_s + (end - open_since if open_since is not None else 0.0)), 3)
