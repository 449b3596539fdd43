"""The SIP side of the simulated PBX: PJSIP endpoints, the phones registered on them, a
call offered to a phone, and who else is told what happens to a channel.

The simulated agents' phones and callers (``pbxsim/callers.py``) implement ``Phone`` and
``ChannelListener``; ``pbxsim.pbx`` re-exports all four names.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional, Protocol

from .channel import Channel

if TYPE_CHECKING:
    from .ami_server import Headers
    from .pbx import PBX

__all__ = ["ChannelListener", "Endpoint", "IncomingCall", "Phone"]


class Phone(Protocol):
    """A SIP phone behind an endpoint (the simulated agents implement this)."""

    def ring(self, call: "IncomingCall") -> None: ...


class ChannelListener(Protocol):
    """Told what happens to a channel (the simulated callers implement this)."""

    def on_channel_event(self, channel: Channel, event: str, headers: "Headers") -> None: ...


@dataclass
class Endpoint:
    name: str
    context: str
    callerid_num: str = ""
    callerid_name: str = ""
    phone: Optional[Phone] = None

    @property
    def registered(self) -> bool:
        return self.phone is not None


@dataclass(eq=False)
class IncomingCall:
    """An offered call on a phone: the phone answers, rejects, or hangs up later."""

    pbx: "PBX"
    channel: Channel                  # the phone's leg
    caller: Channel
    result: "asyncio.Future[str]" = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    def answer(self) -> None:
        if not self.result.done():
            self.result.set_result("ANSWER")

    def reject(self, busy: bool = True) -> None:
        if not self.result.done():
            self.result.set_result("BUSY" if busy else "CONGESTION")

    def hangup(self) -> None:
        """The phone hangs up (SIP BYE) after answering."""
        self.pbx.remote_hangup(self.channel)
