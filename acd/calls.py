"""A call as the ACD follows it (its shared layout is :class:`hotline.live.LiveCall`), and helpers
for what Asterisk reports about calls."""
from __future__ import annotations

from hotline.live import LiveCall, clean_text

__all__ = ["ENDED_KEPT_S", "LiveCall", "UP", "ami_duration", "clean_text"]


ENDED_KEPT_S = 120.0            # ended calls remembered, so a late duplicate event cannot revive them
UP = "6"                        # AMI ChannelState of an answered channel


def ami_duration(text: str) -> float:
    """AMI Duration ``HH:MM:SS`` in seconds (0 if unreadable)."""
    try:
        hours, minutes, seconds = (int(part) for part in text.split(":"))
    except ValueError:
        return 0.0
    return hours * 3600 + minutes * 60 + seconds
