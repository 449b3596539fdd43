"""Dialplan functions the simulator reads in ``${...}``: CALLERID, LEN, FILTER, CHANNEL.

One function per Asterisk function, registered by name (as ``func_callerid.c``,
``func_strings.c`` and ``func_channel.c`` register theirs). An unknown function, or one
that needs a channel read without one, is empty.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from .channel import ChannelState
from .registry import dialplan_function

if TYPE_CHECKING:
    from .channel import Channel
    from .pbx import PBX


@dialplan_function("CALLERID")
def callerid(pbx: "PBX", channel: Optional["Channel"], arg: str) -> str:
    if channel is None:
        return ""
    num = "" if channel.caller_num == "<unknown>" else channel.caller_num
    name = "" if channel.caller_name == "<unknown>" else channel.caller_name
    return {"num": num, "name": name, "all": f'"{name}" <{num}>', "ani": num,
            "dnid": channel.dnid}.get(arg.lower(), "")


@dialplan_function("LEN")
def length(pbx: "PBX", channel: Optional["Channel"], arg: str) -> str:
    return str(len(arg))


@dialplan_function("FILTER")
def filter_chars(pbx: "PBX", channel: Optional["Channel"], arg: str) -> str:
    # func_strings FILTER(allowed-chars,string): keeps only the allowed characters.
    allowed, _, value = arg.partition(",")
    return "".join(ch for ch in value if ch in allowed)


@dialplan_function("CHANNEL")
def channel_info(pbx: "PBX", channel: Optional["Channel"], arg: str) -> str:
    if channel is None:
        return ""
    return {"linkedid": channel.linkedid, "name": channel.name, "language": channel.language,
            "state": ChannelState.DESC.get(channel.state, "Unknown"),
            "endpoint": channel.endpoint if channel.name.startswith("PJSIP/") else ""}.get(arg.lower(), "")
