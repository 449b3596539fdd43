"""Channels and bridges of the simulated PBX, with the AMI snapshots Asterisk 22 prints for them."""
from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any, Optional

__all__ = ["Bridge", "Channel", "ChannelState", "HANGUP_CAUSES"]


class ChannelState:
    DOWN, RING, RINGING, UP = 0, 4, 5, 6
    DESC = {0: "Down", 1: "Rsrvd", 2: "OffHook", 3: "Dialing", 4: "Ring", 5: "Ringing", 6: "Up",
            7: "Busy", 8: "Dialing Offhook", 9: "Pre-ring", 10: "Unknown"}


# Q.850 causes with the text Asterisk puts in Cause-txt.
HANGUP_CAUSES = {
    0: "Unknown",
    1: "Unallocated (unassigned) number",
    16: "Normal Clearing",
    17: "User busy",
    18: "No user responding",
    19: "User alerting, no answer",
    21: "Call Rejected",
    26: "Answered elsewhere",
    27: "Destination out of order",
    34: "Circuit/channel congestion",
}


@dataclass(eq=False)
class Channel:
    name: str
    uniqueid: str
    linkedid: str
    context: str
    exten: str
    priority: int = 1
    state: int = ChannelState.DOWN
    caller_num: str = "<unknown>"
    caller_name: str = "<unknown>"
    connected_num: str = "<unknown>"
    connected_name: str = "<unknown>"
    language: str = "en"
    accountcode: str = ""
    dnid: str = ""
    endpoint: str = ""                          # PJSIP endpoint name (trunk, 1001, ...)
    variables: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    application: str = ""
    app_data: str = ""
    bridge: Optional["Bridge"] = None
    hangup_cause: Optional[int] = None
    # Set when something outside the dialplan asks the channel to hang up or move on.
    interrupt: asyncio.Event = field(default_factory=asyncio.Event)
    redirect_to: Optional[tuple[str, str, int]] = None
    dtmf: "asyncio.Queue[str]" = field(default_factory=asyncio.Queue)
    task: Optional[asyncio.Task] = None
    # The other leg while Dial() is ringing or bridged.
    peer: Optional["Channel"] = None
    # The other half of a Local channel pair (;1 <-> ;2): when one half ends, so does the other.
    local_peer: Optional["Channel"] = None
    mixmonitors: int = 0
    # Who is told of this channel's events (a simulated caller), if anyone.
    listener: Any = None

    @property
    def alive(self) -> bool:
        return self.hangup_cause is None

    @property
    def tech(self) -> str:
        return self.name.split("/", 1)[0]

    def snapshot(self, prefix: str = "") -> list[tuple[str, str]]:
        """Channel headers in Asterisk's order; ``prefix`` is "Dest" for the other leg."""
        return [
            (prefix + "Channel", self.name),
            (prefix + "ChannelState", str(self.state)),
            (prefix + "ChannelStateDesc", ChannelState.DESC.get(self.state, "Unknown")),
            (prefix + "CallerIDNum", self.caller_num or "<unknown>"),
            (prefix + "CallerIDName", self.caller_name or "<unknown>"),
            (prefix + "ConnectedLineNum", self.connected_num or "<unknown>"),
            (prefix + "ConnectedLineName", self.connected_name or "<unknown>"),
            (prefix + "Language", self.language),
            (prefix + "AccountCode", self.accountcode),
            (prefix + "Context", self.context),
            (prefix + "Exten", self.exten),
            (prefix + "Priority", str(self.priority)),
            (prefix + "Uniqueid", self.uniqueid),
            (prefix + "Linkedid", self.linkedid),
        ]


@dataclass(eq=False)
class Bridge:
    uniqueid: str = field(default_factory=lambda: str(uuid.uuid4()))
    channels: list[Channel] = field(default_factory=list)

    def headers(self) -> list[tuple[str, str]]:
        return [
            ("BridgeUniqueid", self.uniqueid),
            ("BridgeType", "basic"),
            ("BridgeTechnology", "simple_bridge"),
            ("BridgeCreator", "<unknown>"),
            ("BridgeName", "<unknown>"),
            ("BridgeNumChannels", str(len(self.channels))),
            ("BridgeVideoSourceMode", "none"),
        ]
