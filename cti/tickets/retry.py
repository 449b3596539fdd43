"""What the delivery worker makes of an answer, and how long it waits before trying again.
Pure functions (cti/tickets/delivery.py applies them)."""
from __future__ import annotations

import enum
import json
import random
from dataclasses import dataclass
from typing import Callable, Optional

__all__ = ["Outcome", "Verdict", "backoff_s", "judge_answer", "judge_failure"]

RETRIED_4XX = frozenset({408, 425, 429})      # the receiver asks us to come back later
MAX_REASON = 300
TICKET_ID_MAX = 64


class Verdict(enum.StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD = "dead"


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    ticket_id: Optional[str] = None
    reason: Optional[str] = None


def _clip(text: str) -> str:
    text = "".join(ch for ch in text if ch.isprintable())
    return text[:MAX_REASON]


def judge_answer(status: int, body: bytes, kind: str) -> Outcome:
    """2xx: delivered (a ticket must come back with its ``ticket_id``); 4xx other than 408/425/429:
    dead at once, the receiver will never take it; anything else: try again."""
    if 200 <= status < 300:
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            data = None
        ticket_id = data.get("ticket_id") if isinstance(data, dict) else None
        if isinstance(ticket_id, int) and not isinstance(ticket_id, bool):
            ticket_id = str(ticket_id)
        if isinstance(ticket_id, str) and 0 < len(ticket_id) <= TICKET_ID_MAX and ticket_id.isprintable():
            return Outcome(Verdict.DELIVERED, ticket_id=ticket_id)
        if kind != "ticket":
            return Outcome(Verdict.DELIVERED)
        return Outcome(Verdict.RETRY, reason=f"HTTP {status} without a ticket_id")
    detail = _clip(body.decode("utf-8", "replace"))
    reason = f"HTTP {status}" + (f": {detail}" if detail else "")
    if 400 <= status < 500 and status not in RETRIED_4XX:
        return Outcome(Verdict.DEAD, reason=reason)
    return Outcome(Verdict.RETRY, reason=reason)


def judge_failure(reason: str) -> Outcome:
    """No answer at all (refused, timed out, reset): try again."""
    return Outcome(Verdict.RETRY, reason=_clip(reason))


def backoff_s(attempt: int, base_s: float, max_s: float, rand: Callable[[], float] = random.random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(max, base * 2^(attempt-1))]."""
    ceiling = min(max_s, base_s * (2 ** min(max(attempt - 1, 0), 40)))
    return rand() * ceiling
