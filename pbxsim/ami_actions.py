"""The AMI actions the simulated PBX answers, one function per action, as manager.c's handlers.

Every action, the session ones (Login, Challenge, Logoff, Ping, Events) too, is registered
with ``@ami_action("Name")`` and gets (pbx, reply, message): ``reply`` answers on the
action's session (``reply.session``) and echoes its ActionID, ``message`` holds the
action's headers. The TCP server and its framing are ``pbxsim/ami_server.py``.
"""
from __future__ import annotations

import asyncio
import hashlib
import random
import re
import time
from typing import TYPE_CHECKING, Optional

from . import apps, variables
from .ami_server import Message, Reply, format_message
from .channel import ChannelState
from .originate import OriginateRequest, originate
from .registry import ami_action

if TYPE_CHECKING:
    from .channel import Channel
    from .pbx import PBX

# "core show version", in Asterisk's format (the build host says it is the simulator).
VERSION_LINE = "Asterisk 22.10.1 built by pbxsim @ pbxsim on a x86_64 running Linux on 2026-11-22 03:26:14 UTC"


# ---- the session --------------------------------------------------------------------------
@ami_action("Challenge", before_login=True)
async def challenge(pbx: "PBX", reply: Reply, message: Message) -> None:
    if message.get("authtype").lower() != "md5":
        reply.error("Must specify AuthType")
        return
    reply.session.challenge = str(random.randint(100000000, 999999999))
    reply.success(("Challenge", reply.session.challenge))


@ami_action("Login", before_login=True)
async def login(pbx: "PBX", reply: Reply, message: Message) -> None:
    session = reply.session
    user = session.server.users.get(message.get("username"))
    ok = False
    if user is not None:
        if message.get("authtype").lower() == "md5" and session.challenge:
            expected = hashlib.md5((session.challenge + user.secret).encode()).hexdigest()
            ok = message.get("key").lower() == expected
        else:
            ok = message.fields.get("secret") == user.secret
    if not ok:
        # Asterisk answers a failed login after about a second and then hangs up.
        await asyncio.sleep(session.server.auth_fail_delay)
        reply.error("Authentication failed")
        session.close_after_sending()
        return
    session.user = user
    events = message.get("events", "on").strip().lower()
    if events in ("off", "no", "false", "0"):
        session.events_on = False
    else:
        session.events_on = True
        if events not in ("on", "yes", "true", "1", "all"):
            session.event_classes = frozenset(c.strip() for c in events.split(",") if c.strip())
    reply.success(("Message", "Authentication accepted"))
    if session.wants("system,all"):
        session.send(format_message([
            ("Event", "FullyBooted"), ("Privilege", "system,all"),
            ("Uptime", str(int(pbx.uptime()))), ("LastReload", str(int(pbx.uptime()))),
            ("Status", "Fully Booted"),
        ]))


@ami_action("Logoff", before_login=True)
async def logoff(pbx: "PBX", reply: Reply, message: Message) -> None:
    reply.send([("Response", "Goodbye"), ("Message", "Thanks for all the fish.")])
    reply.session.close_after_sending()


@ami_action("Ping")
async def ping(pbx: "PBX", reply: Reply, message: Message) -> None:
    reply.success(("Ping", "Pong"), ("Timestamp", f"{pbx.now():.6f}"))


@ami_action("Events")
async def events(pbx: "PBX", reply: Reply, message: Message) -> None:
    session = reply.session
    mask = message.get("eventmask", "on").lower()
    session.events_on = mask not in ("off", "no", "false", "0")
    reply.send([("Response", "Success"), ("Events", "On" if session.events_on else "Off")])


# ---- channels -----------------------------------------------------------------------------
def _channel_or_error(pbx: "PBX", reply: Reply, message: Message) -> Optional["Channel"]:
    channel = pbx.channels.get(message.get("channel"))
    if channel is None:
        reply.error("No such channel")
    return channel


@ami_action("CoreShowChannels")
async def coreshowchannels(pbx: "PBX", reply: Reply, message: Message) -> None:
    reply.list_start("Channels will follow")
    channels = list(pbx.channels.values())
    now = time.time()
    for channel in channels:
        seconds = int(now - channel.created_at)
        duration = f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
        reply.list_event("CoreShowChannel", [
            *channel.snapshot(), ("Application", channel.application), ("ApplicationData", channel.app_data),
            ("Duration", duration), ("BridgeId", channel.bridge.uniqueid if channel.bridge else "")])
    reply.list_complete("CoreShowChannelsComplete", len(channels))


@ami_action("Status")
async def status(pbx: "PBX", reply: Reply, message: Message) -> None:
    if message.get("channel"):
        channel = _channel_or_error(pbx, reply, message)
        if channel is None:
            return
        channels = [channel]
    else:
        channels = list(pbx.channels.values())
    reply.list_start("Channel status will follow")
    now = time.time()

    def fmt(c: "Channel") -> str:
        return "slin" if c.tech == "Local" else "ulaw"

    for channel in channels:
        reply.list_event("Status", [
            ("Privilege", "Call"), *channel.snapshot(), ("Type", channel.tech), ("DNID", channel.dnid),
            ("EffectiveConnectedLineNum", channel.connected_num),
            ("EffectiveConnectedLineName", channel.connected_name), ("TimeToHangup", "0"),
            ("BridgeID", channel.bridge.uniqueid if channel.bridge else ""),
            ("Application", channel.application), ("Data", channel.app_data),
            ("Nativeformats", f"({fmt(channel)})"), ("Readformat", fmt(channel)), ("Readtrans", ""),
            ("Writeformat", fmt(channel)), ("Writetrans", ""), ("Callgroup", "0"), ("Pickupgroup", "0"),
            ("Seconds", str(int(now - channel.created_at)))], action_id_last=True)
    reply.list_complete("StatusComplete", len(channels), ("Items", str(len(channels))))


@ami_action("Getvar")
async def getvar(pbx: "PBX", reply: Reply, message: Message) -> None:
    channel = None
    if message.get("channel"):
        channel = _channel_or_error(pbx, reply, message)
        if channel is None:
            return
    name = message.get("variable")
    reply.success(("Variable", name), ("Value", variables.lookup(pbx, channel, name)))


@ami_action("Setvar")
async def setvar(pbx: "PBX", reply: Reply, message: Message) -> None:
    channel = None
    if message.get("channel"):
        channel = _channel_or_error(pbx, reply, message)
        if channel is None:
            return
    variables.set_variable(pbx, channel, message.get("variable"), message.get("value"))
    reply.success(("Message", "Variable Set"))


@ami_action("Redirect")
async def redirect(pbx: "PBX", reply: Reply, message: Message) -> None:
    name = message.get("channel")
    channel = pbx.channels.get(name)
    if channel is None or not channel.alive:
        reply.error(f"Channel does not exist: {name}")
        return
    context = message.get("context", channel.context)
    exten = message.get("exten")
    priority = pbx.dialplan.resolve_priority(context, exten, message.get("priority", "1")) or 1
    if channel.task is None:
        reply.error("Redirect failed")
        return
    # A Redirect to an extension that does not exist still answers Success;
    # the channel then falls off the dialplan and is hung up.
    channel.redirect_to = (context, exten, priority)
    channel.interrupt.set()
    reply.success(("Message", "Redirect successful"))


@ami_action("Hangup")
async def hangup(pbx: "PBX", reply: Reply, message: Message) -> None:
    name = message.get("channel")
    cause = int(message.get("cause")) if message.get("cause").isdigit() else 16
    if name.startswith("/") and name.endswith("/") and len(name) > 1:
        try:
            pattern = re.compile(name[1:-1])
        except re.error:
            reply.error("Invalid regex")
            return
        matched = [c for c in pbx.channels.values() if pattern.search(c.name)]
        reply.list_start("Channels hung up will follow")
        for each in matched:
            pbx.hangup_channel(each, cause, soft=True)
            reply.list_event("ChannelHungup", [("Channel", each.name)])
        reply.list_complete("ChannelsHungupListComplete", len(matched))
        return
    channel = _channel_or_error(pbx, reply, message)
    if channel is None:
        return
    pbx.hangup_channel(channel, cause, soft=True)
    reply.success(("Message", "Channel Hungup"))


@ami_action("BlindTransfer")
async def blindtransfer(pbx: "PBX", reply: Reply, message: Message) -> None:
    """manager.c action_blind_transfer -> ast_bridge_transfer_blind(is_external=1): whoever is
    bridged with the transferer goes to context/exten (an async goto: it leaves the bridge and runs
    the dialplan there); the transferer, alone in the two-party bridge, is hung up. The
    ``BlindTransfer`` event is published whatever the result (Invalid: not bridged)."""
    name, exten = message.get("channel"), message.get("exten")
    if not name:
        reply.error("No channel specified")
        return
    if not exten:
        reply.error("No extension specified")
        return
    transferer = pbx.channels.get(name)
    if transferer is None or not transferer.alive:
        reply.error("Channel specified does not exist")
        return
    context = message.get("context") or transferer.variables.get("TRANSFER_CONTEXT") or transferer.context
    bridge = transferer.bridge
    others = [c for c in bridge.channels if c is not transferer] if bridge is not None else []
    # (Only a caller whose dialplan runs can continue elsewhere; a pair of phone legs cannot here.)
    transferees = [c for c in others if c.task is not None and c.alive]
    result = "Success" if transferees and len(others) == 1 else "Invalid"
    headers = [("Result", result), *transferer.snapshot("Transferer")]
    if result == "Success" and bridge is not None:
        transferee = transferees[0]
        transferee.variables["BLINDTRANSFER"] = transferer.name
        priority = pbx.dialplan.resolve_priority(context, exten, "1") or 1
        transferee.redirect_to = (context, exten, priority)
        transferee.interrupt.set()
        headers += [*transferee.snapshot("Transferee"), *bridge.headers()]
    headers += [("IsExternal", "Yes"), ("Context", context), ("Extension", exten)]
    pbx.emit("BlindTransfer", "call,all", headers)
    if result == "Success":
        reply.success(("Message", "Transfer succeeded"))
    else:
        reply.error("Transfer invalid")


@ami_action("MixMonitor")
async def mixmonitor(pbx: "PBX", reply: Reply, message: Message) -> None:
    if not message.get("channel"):
        reply.error("No channel specified")
        return
    channel = _channel_or_error(pbx, reply, message)
    if channel is None:
        return
    await apps.mixmonitor(pbx, channel, message.get("file", f"{channel.uniqueid}.wav"))
    reply.success()


@ami_action("StopMixMonitor")
async def stopmixmonitor(pbx: "PBX", reply: Reply, message: Message) -> None:
    channel = _channel_or_error(pbx, reply, message)
    if channel is None:
        return
    if not channel.mixmonitors:
        reply.error("Could not stop monitoring channel")
        return
    await apps.stopmixmonitor(pbx, channel, "")
    reply.success()


@ami_action("Originate")
async def originate_action(pbx: "PBX", reply: Reply, message: Message) -> None:
    target = message.get("channel")
    if not target:
        reply.error("Channel not specified")
        return
    is_async = message.get("async").lower() in ("true", "yes", "1")
    request = OriginateRequest(target)
    match = re.match(r'^\s*"?([^"<]*)"?\s*<([^>]*)>\s*$', message.get("callerid"))
    if match:
        request.caller_name, request.caller_num = match.group(1).strip() or "<unknown>", match.group(2) or "<unknown>"
    request.variables = message.values("variable")
    # ChannelId: the uniqueid the new channel gets (Asterisk refuses one already in use).
    request.channel_id = message.get("channelid")
    if request.channel_id and any(c.uniqueid == request.channel_id for c in pbx.channels.values()):
        reply.error("Originate failed")
        return
    request.other_channel_id = message.get("otherchannelid")
    request.timeout = float(message.get("timeout", "30000")) / 1000 / pbx.speed
    request.app, request.app_data = message.get("application"), message.get("data")
    request.context, request.exten = message.get("context"), message.get("exten")
    request.priority = message.get("priority", "1")
    details = ([("Application", request.app), ("Data", request.app_data)] if request.app else
               [("Context", request.context), ("Exten", request.exten)])

    def respond(channel: Optional["Channel"]) -> None:
        ok = channel is not None
        pbx.emit("OriginateResponse", "call,all", [
            ("ActionID", reply.action_id or ""), ("Response", "Success" if ok else "Failure"),
            ("Channel", channel.name if channel else target), *details, ("Reason", "4" if ok else "0"),
            ("Uniqueid", channel.uniqueid if channel else "<unknown>"),
            ("CallerIDNum", request.caller_num), ("CallerIDName", request.caller_name)])

    if is_async:
        reply.success(("Message", "Originate successfully queued"))

        async def run() -> None:
            respond(await originate(pbx, request))
        pbx.spawn(run())
        return
    if await originate(pbx, request) is None:
        reply.error("Originate failed")
    else:
        reply.success(("Message", "Originate successfully queued"))


# ---- the rest -----------------------------------------------------------------------------
@ami_action("Command")
async def command(pbx: "PBX", reply: Reply, message: Message) -> None:
    text = message.get("command").strip()
    if text == "core show version":
        output = [VERSION_LINE]
    elif text == "core show channels concise":
        output = ["!".join([c.name, c.context, c.exten, str(c.priority), ChannelState.DESC[c.state],
                            c.application, c.app_data, c.caller_num, "", "", "3", "0", "", c.uniqueid])
                  for c in pbx.channels.values()]
    else:
        best = " ".join(text.split()[:2])
        reply.send([("Response", "Error"), ("Message", "Command output follows"),
                    ("Output", f"No such command '{text}' (type 'core show help {best}' for other possible commands)")])
        return
    reply.send([("Response", "Success"), ("Message", "Command output follows"),
                *[("Output", line) for line in output]])


@ami_action("UserEvent")
async def userevent(pbx: "PBX", reply: Reply, message: Message) -> None:
    name = message.get("userevent")
    extra = [(k, v) for k, v in message.headers if k.lower() not in ("action", "actionid", "userevent")]
    pbx.emit("UserEvent", "user,all", [("UserEvent", name), *extra])
    reply.success()


@ami_action("QueueStatus")
async def queuestatus(pbx: "PBX", reply: Reply, message: Message) -> None:
    # The hotline does not use app_queue; like an Asterisk with no queues configured.
    reply.list_start("Queue status will follow")
    reply.list_complete("QueueStatusComplete", 0)
