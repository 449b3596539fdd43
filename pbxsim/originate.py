"""Placing the call an AMI Originate asks for, as Asterisk's ast_pbx_outgoing_app/_exten.

Three kinds of target: an agent's phone (``PJSIP/1001``), a number on the carrier trunk
(``PJSIP/<number>@trunk``: only a simulated caller waiting to be called back answers), and
a Local channel pair (``Local/<exten>@<context>``), whose ";2" half runs the dialplan.
Once the far end answers, the originated channel runs the application or the dialplan
the action named. The AMI side (parsing, replies, OriginateResponse) is in
``pbxsim/ami_actions.py``.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

from .channel import ChannelState
from .endpoints import IncomingCall
from .registry import find_application

if TYPE_CHECKING:
    from .channel import Channel
    from .pbx import PBX

__all__ = ["OriginateRequest", "originate"]


@dataclass
class OriginateRequest:
    target: str                     # the action's Channel
    caller_num: str = "<unknown>"
    caller_name: str = "<unknown>"
    variables: list[str] = field(default_factory=list)       # "NAME=value", one per Variable header
    channel_id: str = ""            # the uniqueid of the new channel (ChannelId), "" for a new one
    other_channel_id: str = ""      # the same for a Local pair's ";2" half (OtherChannelId)
    timeout: float = 30.0           # seconds to wait for the far end to answer
    app: str = ""                   # Application and Data, or else Context, Exten and Priority
    app_data: str = ""
    context: str = ""
    exten: str = ""
    priority: str = "1"


async def originate(pbx: "PBX", request: OriginateRequest) -> Optional["Channel"]:
    """The originated channel once answered, or None if it could not be placed or was not answered."""
    tech, _, resource = request.target.partition("/")
    if tech.upper() == "PJSIP":
        return await _call_sip(pbx, request, resource)
    if tech.upper() == "LOCAL":
        return _local_pair(pbx, request, resource)
    return None


def _set_variables(channel: "Channel", variables: list[str]) -> None:
    for item in variables:
        key, _, value = item.partition("=")
        channel.variables[key] = value


async def _call_sip(pbx: "PBX", request: OriginateRequest, resource: str) -> Optional["Channel"]:
    ring: Callable[[IncomingCall], None]
    if "@" in resource:
        # A number on the carrier trunk: only a simulated caller waiting for a call back answers.
        number, _, trunk = resource.partition("@")
        callee: Any = pbx.trunk_callees.pop(number, None)
        if callee is None or trunk not in pbx.endpoints:
            return None
        channel = pbx.new_channel("PJSIP", trunk, request.context or pbx.endpoints[trunk].context,
                                  request.exten or "s", caller_num=request.caller_num,
                                  caller_name=request.caller_name, uniqueid=request.channel_id)
        channel.listener = callee
        ring = callee.called_back
    else:
        endpoint = pbx.endpoints.get(resource)
        phone = endpoint.phone if endpoint is not None else None
        if endpoint is None or phone is None:
            return None
        channel = pbx.new_channel("PJSIP", resource, request.context or endpoint.context, request.exten or "s",
                                  caller_num=request.caller_num, caller_name=request.caller_name,
                                  uniqueid=request.channel_id)
        ring = phone.ring
    channel.connected_num, channel.connected_name = request.caller_num, request.caller_name
    _set_variables(channel, request.variables)
    call = IncomingCall(pbx, channel, channel)
    pbx.set_state(channel, ChannelState.RINGING)
    ring(call)
    try:
        result = await asyncio.wait_for(asyncio.shield(call.result), request.timeout)
    except asyncio.TimeoutError:
        result = "NOANSWER"
    if result != "ANSWER":
        channel.hangup_cause = 19
        pbx.finish_channel(channel)
        return None
    pbx.set_state(channel, ChannelState.UP)
    channel.task = pbx.spawn(_run_originated(pbx, channel, request))
    return channel


def _local_pair(pbx: "PBX", request: OriginateRequest, resource: str) -> Optional["Channel"]:
    local_exten, _, local_context = resource.partition("@")
    local_context = local_context.split("/")[0]
    if pbx.dialplan.find_extension(local_context, local_exten) is None:
        return None
    base = f"Local/{resource}-{pbx.next_channel_number():08x}"
    one = pbx.new_channel("Local", "", request.context or local_context, request.exten or local_exten,
                          caller_num=request.caller_num, caller_name=request.caller_name, name=base + ";1",
                          uniqueid=request.channel_id)
    # ";2" is the incoming side: it starts ringing (02b/03b Newchannel: 4 Ring).
    two = pbx.new_channel("Local", "", local_context, local_exten, caller_num=request.caller_num,
                          caller_name=request.caller_name, linkedid=one.linkedid, name=base + ";2",
                          state=ChannelState.RING, uniqueid=request.other_channel_id)
    one.local_peer, two.local_peer = two, one
    for half in (one, two):
        half.connected_num, half.connected_name = request.caller_num, request.caller_name
        _set_variables(half, request.variables)
    pbx.set_state(one, ChannelState.UP)
    pbx.start_dialplan(two, local_context, local_exten, 1)
    one.task = pbx.spawn(_run_originated(pbx, one, request))
    return one


async def _run_originated(pbx: "PBX", channel: "Channel", request: OriginateRequest) -> None:
    if request.app:
        application = find_application(request.app)
        try:
            if application is not None:
                channel.application, channel.app_data = request.app, request.app_data
                await application.execute(pbx, channel, request.app_data)
        finally:
            if channel.alive:
                channel.hangup_cause = 16
            pbx.finish_channel(channel)
        return
    number = pbx.dialplan.resolve_priority(request.context, request.exten, request.priority) or 1
    channel.context, channel.exten, channel.priority = request.context, request.exten, number
    await pbx.run_channel(channel)
