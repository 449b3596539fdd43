"""Dial(): ring an agent's phone, and bridge the caller with it once it answers.

Only ``PJSIP/<endpoint>`` targets ring (the first of ``&``-joined ones); anything else is
CHANUNAVAIL. The bridge lasts until either side hangs up: BridgeCreate, BridgeEnter for
the callee then the caller, BridgeLeave for whoever hung up first, BridgeDestroy.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Optional

from .channel import Bridge, ChannelState
from .endpoints import IncomingCall
from .registry import NEXT, STOP, AppResult, application
from .substitution import split_args

if TYPE_CHECKING:
    from .channel import Channel
    from .pbx import PBX

# The callee leg's hang-up cause for a Dial that did not end in ANSWER.
CAUSES = {"NOANSWER": 19, "BUSY": 17, "CANCEL": 26}


@application("Dial")
async def dial(pbx: "PBX", channel: "Channel", data: str) -> AppResult:
    args = split_args(data)
    target = args[0].split("&")[0]
    timeout = float(args[1]) / pbx.speed if len(args) > 1 and args[1].strip() else None
    options = args[2] if len(args) > 2 else ""
    tech, _, resource = target.partition("/")
    endpoint = pbx.endpoints.get(resource) if tech.upper() == "PJSIP" else None
    phone = endpoint.phone if endpoint is not None else None
    if endpoint is None or phone is None:
        channel.variables["DIALSTATUS"] = "CHANUNAVAIL"
        return NEXT
    peer = pbx.new_channel(
        "PJSIP", resource, endpoint.context, "s", caller_num=endpoint.callerid_num,
        caller_name=endpoint.callerid_name, linkedid=channel.linkedid)
    for name in filter(None, channel.variables.get("__inherit__", "").split(",")):
        peer.variables[name] = channel.variables.get(name, "")
    peer.connected_num, peer.connected_name = channel.caller_num, channel.caller_name
    channel.peer, peer.peer = peer, channel
    pbx.channel_event(channel, "DialBegin", "call,all", [*peer.snapshot("Dest"), ("DialString", target)])
    channel.connected_num, channel.connected_name = peer.caller_num, peer.caller_name
    pbx.channel_event(channel, "NewConnectedLine", "call,all")
    call = IncomingCall(pbx, peer, channel)
    peer.exten = channel.exten
    pbx.set_state(peer, ChannelState.RINGING)
    # The outgoing leg's own events while it rings, as in 01 (there AppQueue; Dial is AppDial).
    pbx.channel_event(peer, "Newexten", "dialplan,all",
                      [("Extension", peer.exten), ("Application", "AppDial"), ("AppData", "(Outgoing Line)")])
    pbx.channel_event(peer, "NewConnectedLine", "call,all")
    pbx.channel_event(channel, "DialState", "call,all", [*peer.snapshot("Dest"), ("DialStatus", "RINGING")])
    pbx.device_state(peer, "RINGING")
    phone.ring(call)
    status = await _wait_answer(pbx, channel, call, timeout)
    pbx.channel_event(channel, "DialEnd", "call,all", [*peer.snapshot("Dest"), ("DialStatus", status)])
    channel.variables["DIALSTATUS"] = status
    if status != "ANSWER":
        peer.hangup_cause = CAUSES.get(status, 34)
        call.ended.set()
        pbx.finish_channel(peer)
        channel.peer = None
        return STOP if status == "CANCEL" else NEXT
    return await _bridge(pbx, channel, peer, call, options)


async def _wait_answer(pbx: "PBX", channel: "Channel", call: IncomingCall, timeout: Optional[float]) -> str:
    """The DIALSTATUS: the phone's answer, NOANSWER after the timeout, or CANCEL."""
    stop = asyncio.ensure_future(channel.interrupt.wait())
    waiters: set[asyncio.Future[Any]] = {call.result, stop}
    try:
        done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
    if not channel.alive:
        return "CANCEL"
    if call.result in done:
        result = call.result.result()
        if result == "ANSWER":
            pbx.set_state(call.channel, ChannelState.UP)
        return result
    if channel.redirect_to is not None:
        return "CANCEL"
    call.result.cancel()
    return "NOANSWER"


async def _bridge(pbx: "PBX", channel: "Channel", peer: "Channel", call: IncomingCall, options: str) -> AppResult:
    pbx.device_state(peer, "INUSE")
    bridge = Bridge()
    pbx.emit("BridgeCreate", "call,all", bridge.headers())
    for member in (peer, channel):
        pbx.bridge_enter(bridge, member)
    # Talk until one side hangs up.
    first = asyncio.ensure_future(channel.interrupt.wait())
    second = asyncio.ensure_future(peer.interrupt.wait())
    await asyncio.wait({first, second}, return_when=asyncio.FIRST_COMPLETED)
    first.cancel()
    second.cancel()
    # Whoever ends it leaves first: the caller hanging up, or moved on (Redirect, BlindTransfer:
    # the transferer left alone is then hung up); else the agent's phone hanging up.
    order = (channel, peer) if not channel.alive or channel.redirect_to is not None else (peer, channel)
    for member in order:
        pbx.bridge_leave(bridge, member)
    pbx.emit("BridgeDestroy", "call,all", bridge.headers())
    caller_hung_up = not channel.alive
    if peer.alive:
        peer.hangup_cause = 16
    call.ended.set()
    pbx.finish_channel(peer)
    channel.peer = None
    if caller_hung_up or channel.redirect_to is not None:
        return STOP if caller_hung_up else NEXT
    # Dial option g: go on in the dialplan when the called party hangs up.
    if "g" in options:
        return NEXT
    channel.hangup_cause = 16
    return STOP
