"""The dialplan applications the hotline's dialplan uses, except Dial (``pbxsim/app_dial.py``).

One function per application, registered by name as Asterisk's ``app_*.c`` modules
register theirs. Each gets the PBX, the channel and the application's data after
substitution, and returns NEXT, JUMPED or STOP to the channel loop (``pbxsim/pbx.py``).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from . import media, variables
from .agi_client import run_fastagi
from .ami_server import Headers
from .channel import ChannelState
from .registry import JUMPED, NEXT, STOP, AppResult, application
from .substitution import split_args

if TYPE_CHECKING:
    from .channel import Channel
    from .pbx import PBX

log = logging.getLogger(__name__)


@application("NoOp", after_hangup=True)
@application("Verbose", after_hangup=True)
@application("Log", after_hangup=True)
async def noop(pbx: "PBX", channel: "Channel", data: str) -> AppResult:
    return NEXT


@application("Answer")
async def answer(pbx: "PBX", channel: "Channel", data: str) -> AppResult:
    was_up = channel.state == ChannelState.UP
    pbx.answer(channel)
    if not was_up:
        # chan_pjsip waits for media after answering: the recording shows 500 ms.
        await media.wait(channel, 0.5 / pbx.speed)
    return NEXT


@application("Set", after_hangup=True)
async def set_(pbx: "PBX", channel: "Channel", data: str) -> AppResult:
    name, sep, value = data.partition("=")
    if not sep:
        return NEXT
    name = name.strip()
    if name.upper().startswith("CDR("):
        return NEXT
    if name.upper().startswith("CALLERID("):
        part = name[9:-1].lower()
        if part == "num":
            channel.caller_num = value
        elif part == "name":
            channel.caller_name = value
        return NEXT
    variables.set_variable(pbx, channel, name, value)
    return NEXT


def goto(pbx: "PBX", channel: "Channel", target: str) -> AppResult:
    """Jump to ``[[context,]exten,]priority`` (a priority may be a label)."""
    parts = [p.strip() for p in split_args(target)]
    if len(parts) == 1:
        context, exten, priority = channel.context, channel.exten, parts[0]
    elif len(parts) == 2:
        context, exten, priority = channel.context, parts[0], parts[1]
    else:
        context, exten, priority = parts[0], parts[1], parts[2]
    number = pbx.dialplan.resolve_priority(context, exten, priority)
    if number is None:
        log.warning("%s: Goto(%s) to a priority that does not exist", channel.name, target)
        channel.hangup_cause = channel.hangup_cause or 16
        return STOP
    channel.context, channel.exten, channel.priority = context, exten, number
    return JUMPED


@application("Goto")
async def goto_app(pbx: "PBX", channel: "Channel", data: str) -> AppResult:
    return goto(pbx, channel, data)


@application("GotoIf")
async def gotoif(pbx: "PBX", channel: "Channel", data: str) -> AppResult:
    condition, _, targets = data.partition("?")
    true_target, _, false_target = targets.partition(":")
    truthy = condition.strip() not in ("", "0")
    target = true_target if truthy else false_target
    if not target.strip():
        return NEXT
    return goto(pbx, channel, target)


@application("Hangup")
async def hangup(pbx: "PBX", channel: "Channel", data: str) -> AppResult:
    cause = int(data) if data.strip().isdigit() else 16
    channel.hangup_cause = cause
    return STOP


@application("Wait")
async def wait(pbx: "PBX", channel: "Channel", data: str) -> AppResult:
    try:
        seconds = float(data or 0)
    except ValueError:
        seconds = 0
    await media.wait(channel, seconds / pbx.speed)
    return NEXT


@application("Echo")
async def echo(pbx: "PBX", channel: "Channel", data: str) -> AppResult:
    await media.wait(channel, None)
    return NEXT


@application("Playback")
async def playback(pbx: "PBX", channel: "Channel", data: str) -> AppResult:
    args = split_args(data)
    status = "SUCCESS"
    for name in args[0].split("&"):
        outcome, _ = await media.play(pbx, channel, name)
        if outcome == "missing":
            status = "FAILED"
        if outcome == "hangup":
            break
    channel.variables["PLAYBACKSTATUS"] = status
    return NEXT


@application("MusicOnHold")
async def musiconhold(pbx: "PBX", channel: "Channel", data: str) -> AppResult:
    args = split_args(data)
    moh_class = args[0] or "default"
    duration = float(args[1]) / pbx.speed if len(args) > 1 and args[1].strip() else None
    pbx.channel_event(channel, "MusicOnHoldStart", "call,all", [("Class", moh_class)])
    await media.wait(channel, duration)
    if channel.alive:
        pbx.channel_event(channel, "MusicOnHoldStop", "call,all")
    return NEXT


@application("UserEvent", after_hangup=True)
async def userevent(pbx: "PBX", channel: "Channel", data: str) -> AppResult:
    args = split_args(data)
    name, body = args[0], args[1:]
    headers: Headers = [("UserEvent", name)]
    for item in body:
        # app_userevent: "key: value" pairs; an item without ':' is dropped.
        key, sep, value = item.partition(":")
        if sep:
            headers.append((key.strip(), value.strip()))
    pbx.channel_event(channel, "UserEvent", "user,all", headers)
    return NEXT


@application("AGI")
async def agi(pbx: "PBX", channel: "Channel", data: str) -> AppResult:
    args = split_args(data)
    url = args[0]
    if not url.startswith("agi://"):
        variables.set_variable(pbx, channel, "AGISTATUS", "FAILURE")
        return NEXT
    status = await run_fastagi(pbx, channel, url, args[1:])
    variables.set_variable(pbx, channel, "AGISTATUS", status)
    if status == "HANGUP" or not channel.alive:
        return STOP
    return NEXT


@application("MixMonitor")
async def mixmonitor(pbx: "PBX", channel: "Channel", data: str) -> AppResult:
    args = split_args(data)
    channel.mixmonitors += 1
    variables.set_variable(pbx, channel, "MIXMONITOR_FILENAME", args[0])
    pbx.channel_event(channel, "MixMonitorStart", "call,all")
    media.write_wav(pbx.recordings_dir, Path(args[0]), 0)
    return NEXT


@application("StopMixMonitor")
async def stopmixmonitor(pbx: "PBX", channel: "Channel", data: str) -> AppResult:
    if channel.mixmonitors:
        channel.mixmonitors -= 1
        pbx.channel_event(channel, "MixMonitorStop", "call,all")
    return NEXT
