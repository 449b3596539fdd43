"""The simulated PBX: channels running the dialplan, bridges, and the AMI actions that act on them.

It stands in for Asterisk 22 on the wire only. Our services reach it through AMI and
FastAGI exactly as they reach a real Asterisk; nothing here is imported by a service.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional

# The modules that register dialplan functions, applications and AGI commands, imported for
# that (like the modules Asterisk loads at start); they import nothing of this module at run time.
from . import agi_commands, app_dial, apps, functions  # noqa: F401
from .ami_server import AMIServer, AMIUser, Headers, Reply
from .channel import BUILTIN_VARIABLES, HANGUP_CAUSES, Bridge, Channel, ChannelState
from .dialplan import Dialplan
from .endpoints import ChannelListener, Endpoint, IncomingCall, Phone
from .registry import FUNCTIONS, JUMPED, STOP, find_application
from .sounds import SoundLibrary
from .substitution import ExpressionError, substitute

__all__ = ["PBX", "Endpoint", "IncomingCall", "Phone", "ChannelListener"]

log = logging.getLogger(__name__)

# "core show version", in Asterisk's format (the build host says it is the simulator).
VERSION_LINE = "Asterisk 22.10.1 built by pbxsim @ pbxsim on a x86_64 running Linux on 2026-11-22 03:26:14 UTC"


class PBX:
    def __init__(self, dialplan: Dialplan, sounds: SoundLibrary, *,
                 ami_users: Optional[list[AMIUser]] = None, ami_host: str = "127.0.0.1", ami_port: int = 5038,
                 agi_connect_timeout: float = 2.0, auth_fail_delay: float = 1.0, speed: float = 1.0,
                 recordings_dir: Optional[Path] = None) -> None:
        self.dialplan = dialplan
        self.sounds = sounds
        self.speed = speed
        self.globals = dict(dialplan.globals)
        self.channels: dict[str, Channel] = {}
        self.endpoints: dict[str, Endpoint] = {}
        # Callers on the carrier's side who wait to be called back, by number (Originate PJSIP/<n>@trunk).
        self.trunk_callees: dict[str, Any] = {}
        self.agi_connect_timeout = agi_connect_timeout
        self.recordings_dir = recordings_dir
        self.astdb: dict[tuple[str, str], str] = {}
        self._channel_seq = itertools.count(1)
        self._uniqueid_seq = itertools.count(1)
        self._started = time.time()
        self._tasks: set[asyncio.Task] = set()
        self.ami = AMIServer(self, ami_users or [AMIUser("hotline", "hotline")], ami_host, ami_port,
                             auth_fail_delay=auth_fail_delay)
        self.ami_actions: dict[str, Callable[[Reply, dict, Headers], Awaitable[None]]] = {
            "coreshowchannels": self._ami_coreshowchannels, "status": self._ami_status,
            "getvar": self._ami_getvar, "setvar": self._ami_setvar, "redirect": self._ami_redirect,
            "hangup": self._ami_hangup, "originate": self._ami_originate, "command": self._ami_command,
            "mixmonitor": self._ami_mixmonitor, "stopmixmonitor": self._ami_stopmixmonitor,
            "userevent": self._ami_userevent, "queuestatus": self._ami_queuestatus,
        }

    # ---- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        await self.ami.start()

    async def stop(self) -> None:
        for channel in list(self.channels.values()):
            self.hangup_channel(channel, 16, soft=True)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        await self.ami.stop()

    def now(self) -> float:
        return time.time()

    def uptime(self) -> float:
        return time.time() - self._started

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def add_endpoint(self, endpoint: Endpoint) -> None:
        self.endpoints[endpoint.name] = endpoint

    # ---- events -------------------------------------------------------------------------
    def emit(self, event: str, privilege: str, headers: Headers) -> None:
        self.ami.broadcast(event, privilege, headers)

    def channel_event(self, channel: Channel, event: str, privilege: str, extra: Headers = ()) -> None:
        headers = [*channel.snapshot(), *extra]
        self.ami.broadcast(event, privilege, headers)
        listener = channel.listener
        if listener is not None:
            listener.on_channel_event(channel, event, headers)

    def device_state(self, channel: Channel, state: str) -> None:
        device = f"{channel.tech}/{channel.endpoint}" if channel.endpoint else channel.name.rsplit("-", 1)[0]
        self.emit("DeviceStateChange", "call,all", [("Device", device), ("State", state)])

    def set_state(self, channel: Channel, state: int) -> None:
        if channel.state != state:
            channel.state = state
            self.channel_event(channel, "Newstate", "call,all")

    def answer(self, channel: Channel) -> None:
        if channel.state != ChannelState.UP:
            self.set_state(channel, ChannelState.UP)
            if channel.endpoint:
                self.device_state(channel, "INUSE")

    def set_variable(self, channel: Optional[Channel], name: str, value: str) -> None:
        bare = name.lstrip("_")
        if channel is None:
            self.globals[bare] = value
            self.emit("VarSet", "dialplan,all",
                      [("Channel", "none"), ("Uniqueid", "none"), ("Variable", name), ("Value", value)])
            return
        channel.variables[bare] = value
        if name.startswith("_"):
            channel.variables.setdefault("__inherit__", "")
            inherited = set(filter(None, channel.variables["__inherit__"].split(",")))
            inherited.add(bare)
            channel.variables["__inherit__"] = ",".join(sorted(inherited))
        self.channel_event(channel, "VarSet", "dialplan,all", [("Variable", name), ("Value", value)])

    # ---- channels -----------------------------------------------------------------------
    def new_channel(self, tech: str, endpoint: str, context: str, exten: str, *,
                    caller_num: str = "<unknown>", caller_name: str = "<unknown>",
                    linkedid: Optional[str] = None, state: int = ChannelState.DOWN,
                    language: str = "en", dnid: str = "", name: Optional[str] = None,
                    uniqueid: str = "") -> Channel:
        now = time.time()
        uniqueid = uniqueid or f"{int(now)}.{next(self._uniqueid_seq)}"     # (Originate's ChannelId)
        channel = Channel(
            name=name or f"{tech}/{endpoint}-{next(self._channel_seq):08x}", uniqueid=uniqueid,
            linkedid=linkedid or uniqueid, context=context, exten=exten, state=state,
            caller_num=caller_num or "<unknown>", caller_name=caller_name or "<unknown>",
            language=language, dnid=dnid, endpoint=endpoint, created_at=now)
        self.channels[channel.name] = channel
        self.channel_event(channel, "Newchannel", "call,all")
        return channel

    def find_channel(self, name: str) -> Optional[Channel]:
        return self.channels.get(name)

    def start_dialplan(self, channel: Channel, context: str, exten: str, priority: int = 1) -> None:
        channel.context, channel.exten, channel.priority = context, exten, priority
        channel.task = self.spawn(self._run_channel(channel))

    def hangup_channel(self, channel: Channel, cause: int = 16, *, soft: bool = False) -> None:
        """Ask a channel to hang up; its owner (dialplan loop or Dial) finishes it.

        ``soft`` is AMI Hangup: Asterisk only raises the channel's soft-hangup flag, which
        emits no event (02b, act-51/act-65); the ``SoftHangupRequest`` that follows comes from
        the end of the channel's dialplan (see :meth:`_run_channel`). Otherwise it is the far
        end's BYE: ``HangupRequest`` without a Cause, as chan_pjsip queues it (01).
        """
        if not channel.alive:
            return
        channel.hangup_cause = cause
        if not soft:
            self.channel_event(channel, "HangupRequest", "call,all")
        channel.interrupt.set()

    def remote_hangup(self, channel: Channel, cause: int = 16) -> None:
        """The far end sent BYE (a caller or a phone hanging up)."""
        self.hangup_channel(channel, cause, soft=False)

    def send_dtmf(self, channel: Channel, digit: str, duration_ms: int = 100) -> None:
        """The far end keys a digit (RFC 4733)."""
        if not channel.alive:
            return
        self.channel_event(channel, "DTMFBegin", "dtmf,all", [("Digit", digit), ("Direction", "Received")])
        self.channel_event(channel, "DTMFEnd", "dtmf,all",
                           [("Digit", digit), ("DurationMs", str(duration_ms)), ("Direction", "Received")])
        channel.dtmf.put_nowait(digit)

    def finish_channel(self, channel: Channel) -> None:
        if channel.hangup_cause is None:
            channel.hangup_cause = 16
        cause = channel.hangup_cause
        channel.variables["HANGUPCAUSE"] = str(cause)
        other = channel.local_peer
        if other is not None and other.alive:
            # chan_local queues the hang-up on the other half with the cause (03b: ";1" gets
            # HangupRequest Cause 16 when ";2" ends, and the other way round in 02b).
            other.hangup_cause = cause
            self.channel_event(other, "HangupRequest", "call,all", [("Cause", str(cause))])
            other.interrupt.set()
        self.channel_event(channel, "Hangup", "call,all",
                           [("Cause", str(cause)), ("Cause-txt", HANGUP_CAUSES.get(cause, "Unknown"))])
        if channel.endpoint:
            self.device_state(channel, "NOT_INUSE")
        self.channels.pop(channel.name, None)
        channel.interrupt.set()

    async def _run_channel(self, channel: Channel) -> None:
        try:
            await self._execute(channel)
        except Exception:  # a simulator bug must not leave a channel behind
            log.exception("dialplan execution failed on %s", channel.name)
        finally:
            if channel.alive:
                channel.hangup_cause = channel.hangup_cause or 16
            # Asterisk's pbx loop ends with a soft hang-up (flag AST_SOFTHANGUP_APPUNLOAD = 16)
            # before the h extension, whatever ended it (01, 02b, 03b).
            self.channel_event(channel, "SoftHangupRequest", "call,all", [("Cause", "16")])
            await self._run_h_extension(channel)
            self.finish_channel(channel)

    async def _execute(self, channel: Channel) -> None:
        while channel.alive:
            if channel.redirect_to is not None:
                channel.context, channel.exten, channel.priority = channel.redirect_to
                channel.redirect_to = None
                channel.interrupt.clear()
            step = self.dialplan.step(channel.context, channel.exten, channel.priority)
            if step is None:
                log.debug("%s: no priority %s@%s:%s, hanging up", channel.name, channel.exten,
                          channel.context, channel.priority)
                return
            data = self.substitute(channel, step.data)
            channel.application, channel.app_data = step.app, data
            self.channel_event(channel, "Newexten", "dialplan,all",
                               [("Extension", channel.exten), ("Application", step.app), ("AppData", data)])
            app = find_application(step.app)
            if app is None:
                log.warning("%s: no application %r in the simulator, hanging up", channel.name, step.app)
                return
            result = await app.execute(self, channel, data)
            if result == STOP or not channel.alive:
                return
            if channel.redirect_to is not None or result == JUMPED:
                continue
            channel.priority += 1

    async def _run_h_extension(self, channel: Channel) -> None:
        if channel.redirect_to is not None:
            return
        if self.dialplan.find_extension(channel.context, "h") is None:
            return
        channel.exten, channel.priority = "h", 1
        while True:
            step = self.dialplan.step(channel.context, "h", channel.priority)
            if step is None:
                return
            data = self.substitute(channel, step.data)
            self.channel_event(channel, "Newexten", "dialplan,all",
                               [("Extension", "h"), ("Application", step.app), ("AppData", data)])
            app = find_application(step.app)
            if app is not None and app.after_hangup:
                await app.execute(self, channel, data)
            channel.priority += 1

    # ---- substitution -------------------------------------------------------------------
    def lookup(self, channel: Optional[Channel], name: str) -> str:
        if "(" in name and name.endswith(")"):
            func, _, arg = name[:-1].partition("(")
            function = FUNCTIONS.get(func.upper())
            return function.read(self, channel, arg) if function is not None else ""
        if channel is not None and name in channel.variables:
            return channel.variables[name]
        if name in BUILTIN_VARIABLES:
            if name == "EPOCH":
                return str(int(time.time()))
            if channel is not None:
                return {"CHANNEL": channel.name, "UNIQUEID": channel.uniqueid, "EXTEN": channel.exten,
                        "CONTEXT": channel.context, "PRIORITY": str(channel.priority)}[name]
        return self.globals.get(name, "")

    def substitute(self, channel: Optional[Channel], text: str) -> str:
        try:
            return substitute(text, lambda name: self.lookup(channel, name))
        except ExpressionError as exc:
            log.warning("expression error in %r: %s", text, exc)
            return ""

    def bridge_enter(self, bridge: Bridge, channel: Channel) -> None:
        bridge.channels.append(channel)
        channel.bridge = bridge
        self.bridge_event(channel, "BridgeEnter", bridge)

    def bridge_leave(self, bridge: Bridge, channel: Channel) -> None:
        bridge.channels.remove(channel)
        channel.bridge = None
        self.bridge_event(channel, "BridgeLeave", bridge)

    def bridge_event(self, channel: Channel, event: str, bridge: Bridge) -> None:
        headers = [*bridge.headers(), *channel.snapshot()]
        self.ami.broadcast(event, "call,all", headers)
        listener = channel.listener
        if listener is not None:
            listener.on_channel_event(channel, event, headers)

    # ---- inbound calls (the trunk side) -------------------------------------------------
    def inbound_call(self, exten: str, caller_num: str, caller_name: str = "", *,
                     trunk: str = "trunk", language: str = "en", listener: Any = None) -> Channel:
        endpoint = self.endpoints.get(trunk)
        context = endpoint.context if endpoint else "from-trunk"
        channel = self.new_channel("PJSIP", trunk, context, exten, caller_num=caller_num,
                                   caller_name=caller_name, state=ChannelState.RING, language=language,
                                   dnid=exten)
        channel.listener = listener
        if listener is not None:
            listener.on_channel_event(channel, "Newchannel", channel.snapshot())
        self.start_dialplan(channel, context, exten, 1)
        return channel

    # ---- AMI actions --------------------------------------------------------------------
    def _channel_or_error(self, reply: Reply, fields: dict, message: str = "No such channel") -> Optional[Channel]:
        name = fields.get("channel", "")
        channel = self.channels.get(name)
        if channel is None:
            reply.error(message)
        return channel

    async def _ami_coreshowchannels(self, reply: Reply, fields: dict, raw: Headers) -> None:
        reply.list_start("Channels will follow")
        channels = list(self.channels.values())
        now = time.time()
        for channel in channels:
            seconds = int(now - channel.created_at)
            duration = f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
            reply.list_event("CoreShowChannel", [
                *channel.snapshot(), ("Application", channel.application), ("ApplicationData", channel.app_data),
                ("Duration", duration), ("BridgeId", channel.bridge.uniqueid if channel.bridge else "")])
        reply.list_complete("CoreShowChannelsComplete", len(channels))

    async def _ami_status(self, reply: Reply, fields: dict, raw: Headers) -> None:
        if fields.get("channel"):
            channel = self._channel_or_error(reply, fields)
            if channel is None:
                return
            channels = [channel]
        else:
            channels = list(self.channels.values())
        reply.list_start("Channel status will follow")
        now = time.time()
        fmt = lambda c: "slin" if c.tech == "Local" else "ulaw"
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

    async def _ami_getvar(self, reply: Reply, fields: dict, raw: Headers) -> None:
        channel = None
        if fields.get("channel"):
            channel = self._channel_or_error(reply, fields)
            if channel is None:
                return
        name = fields.get("variable", "")
        reply.success(("Variable", name), ("Value", self.lookup(channel, name)))

    async def _ami_setvar(self, reply: Reply, fields: dict, raw: Headers) -> None:
        channel = None
        if fields.get("channel"):
            channel = self._channel_or_error(reply, fields)
            if channel is None:
                return
        self.set_variable(channel, fields.get("variable", ""), fields.get("value", ""))
        reply.success(("Message", "Variable Set"))

    async def _ami_redirect(self, reply: Reply, fields: dict, raw: Headers) -> None:
        name = fields.get("channel", "")
        channel = self.channels.get(name)
        if channel is None or not channel.alive:
            reply.error(f"Channel does not exist: {name}")
            return
        context = fields.get("context", channel.context)
        exten = fields.get("exten", "")
        priority = self.dialplan.resolve_priority(context, exten, fields.get("priority", "1")) or 1
        if channel.task is None:
            reply.error("Redirect failed")
            return
        # A Redirect to an extension that does not exist still answers Success;
        # the channel then falls off the dialplan and is hung up.
        channel.redirect_to = (context, exten, priority)
        channel.interrupt.set()
        reply.success(("Message", "Redirect successful"))

    async def _ami_hangup(self, reply: Reply, fields: dict, raw: Headers) -> None:
        name = fields.get("channel", "")
        cause = int(fields["cause"]) if fields.get("cause", "").isdigit() else 16
        if name.startswith("/") and name.endswith("/") and len(name) > 1:
            try:
                pattern = re.compile(name[1:-1])
            except re.error:
                reply.error("Invalid regex")
                return
            matched = [c for c in self.channels.values() if pattern.search(c.name)]
            reply.list_start("Channels hung up will follow")
            for channel in matched:
                self.hangup_channel(channel, cause, soft=True)
                reply.list_event("ChannelHungup", [("Channel", channel.name)])
            reply.list_complete("ChannelsHungupListComplete", len(matched))
            return
        channel = self._channel_or_error(reply, fields)
        if channel is None:
            return
        self.hangup_channel(channel, cause, soft=True)
        reply.success(("Message", "Channel Hungup"))

    async def _ami_command(self, reply: Reply, fields: dict, raw: Headers) -> None:
        command = fields.get("command", "").strip()
        if command == "core show version":
            output = [VERSION_LINE]
        elif command == "core show channels concise":
            output = ["!".join([c.name, c.context, c.exten, str(c.priority), ChannelState.DESC[c.state],
                                c.application, c.app_data, c.caller_num, "", "", "3", "0", "", c.uniqueid])
                      for c in self.channels.values()]
        else:
            best = " ".join(command.split()[:2])
            reply.send([("Response", "Error"), ("Message", "Command output follows"),
                        ("Output", f"No such command '{command}' (type 'core show help {best}' for other possible commands)")])
            return
        reply.send([("Response", "Success"), ("Message", "Command output follows"),
                    *[("Output", line) for line in output]])

    async def _ami_mixmonitor(self, reply: Reply, fields: dict, raw: Headers) -> None:
        if not fields.get("channel"):
            reply.error("No channel specified")
            return
        channel = self._channel_or_error(reply, fields)
        if channel is None:
            return
        await apps.mixmonitor(self, channel, fields.get("file", f"{channel.uniqueid}.wav"))
        reply.success()

    async def _ami_stopmixmonitor(self, reply: Reply, fields: dict, raw: Headers) -> None:
        channel = self._channel_or_error(reply, fields)
        if channel is None:
            return
        if not channel.mixmonitors:
            reply.error("Could not stop monitoring channel")
            return
        await apps.stopmixmonitor(self, channel, "")
        reply.success()

    async def _ami_userevent(self, reply: Reply, fields: dict, raw: Headers) -> None:
        name = fields.get("userevent", "")
        extra = [(k, v) for k, v in raw if k.lower() not in ("action", "actionid", "userevent")]
        self.emit("UserEvent", "user,all", [("UserEvent", name), *extra])
        reply.success()

    async def _ami_queuestatus(self, reply: Reply, fields: dict, raw: Headers) -> None:
        # The hotline does not use app_queue; like an Asterisk with no queues configured.
        reply.list_start("Queue status will follow")
        reply.list_complete("QueueStatusComplete", 0)

    async def _ami_originate(self, reply: Reply, fields: dict, raw: Headers) -> None:
        target = fields.get("channel", "")
        if not target:
            reply.error("Channel not specified")
            return
        is_async = fields.get("async", "").lower() in ("true", "yes", "1")
        caller_num, caller_name = "<unknown>", "<unknown>"
        match = re.match(r'^\s*"?([^"<]*)"?\s*<([^>]*)>\s*$', fields.get("callerid", ""))
        if match:
            caller_name, caller_num = match.group(1).strip() or "<unknown>", match.group(2) or "<unknown>"
        variables = [v for k, v in raw if k.lower() == "variable"]
        # ChannelId: the uniqueid the new channel gets (Asterisk refuses one already in use).
        channel_id = fields.get("channelid", "")
        if channel_id and any(c.uniqueid == channel_id for c in self.channels.values()):
            reply.error("Originate failed")
            return
        timeout = float(fields.get("timeout", "30000")) / 1000 / self.speed
        app, app_data = fields.get("application"), fields.get("data", "")
        context, exten = fields.get("context", ""), fields.get("exten", "")
        priority = fields.get("priority", "1")
        details = ([("Application", app), ("Data", app_data)] if app else
                   [("Context", context), ("Exten", exten)])

        def respond(ok: bool, channel: Optional[Channel]) -> None:
            self.emit("OriginateResponse", "call,all", [
                ("ActionID", reply.action_id or ""), ("Response", "Success" if ok else "Failure"),
                ("Channel", channel.name if channel else target), *details, ("Reason", "4" if ok else "0"),
                ("Uniqueid", channel.uniqueid if channel else "<unknown>"),
                ("CallerIDNum", caller_num), ("CallerIDName", caller_name)])

        async def originate() -> Optional[Channel]:
            tech, _, resource = target.partition("/")
            if tech.upper() == "PJSIP" and "@" in resource:
                # A number on the carrier trunk: only a simulated caller waiting for a call back answers.
                number, _, trunk = resource.partition("@")
                callee = self.trunk_callees.pop(number, None)
                if callee is None or trunk not in self.endpoints:
                    return None
                channel = self.new_channel("PJSIP", trunk, context or self.endpoints[trunk].context, exten or "s",
                                           caller_num=caller_num, caller_name=caller_name, uniqueid=channel_id)
                channel.listener = callee
                ring = callee.called_back
            elif tech.upper() == "PJSIP":
                endpoint = self.endpoints.get(resource)
                if endpoint is None or not endpoint.registered:
                    return None
                channel = self.new_channel("PJSIP", resource, context or endpoint.context, exten or "s",
                                           caller_num=caller_num, caller_name=caller_name, uniqueid=channel_id)
                ring = endpoint.phone.ring
            if tech.upper() == "PJSIP":
                channel.connected_num, channel.connected_name = caller_num, caller_name
                for item in variables:
                    key, _, value = item.partition("=")
                    channel.variables[key] = value
                call = IncomingCall(self, channel, channel)
                self.set_state(channel, ChannelState.RINGING)
                ring(call)
                try:
                    result = await asyncio.wait_for(asyncio.shield(call.result), timeout)
                except asyncio.TimeoutError:
                    result = "NOANSWER"
                if result != "ANSWER":
                    channel.hangup_cause = 19
                    self.finish_channel(channel)
                    return None
                self.set_state(channel, ChannelState.UP)
                channel.task = self.spawn(self._run_originated(channel, app, app_data, context, exten, priority))
                return channel
            if tech.upper() == "LOCAL":
                local_exten, _, local_context = resource.partition("@")
                local_context = local_context.split("/")[0]
                if self.dialplan.find_extension(local_context, local_exten) is None:
                    return None
                base = f"Local/{resource}-{next(self._channel_seq):08x}"
                one = self.new_channel("Local", "", context or local_context, exten or local_exten,
                                       caller_num=caller_num, caller_name=caller_name, name=base + ";1",
                                       uniqueid=channel_id)
                # ";2" is the incoming side: it starts ringing (02b/03b Newchannel: 4 Ring).
                two = self.new_channel("Local", "", local_context, local_exten, caller_num=caller_num,
                                       caller_name=caller_name, linkedid=one.linkedid, name=base + ";2",
                                       state=ChannelState.RING, uniqueid=fields.get("otherchannelid", ""))
                one.local_peer, two.local_peer = two, one
                for half in (one, two):
                    half.connected_num, half.connected_name = caller_num, caller_name
                for item in variables:
                    key, _, value = item.partition("=")
                    one.variables[key] = value
                    two.variables[key] = value
                self.set_state(one, ChannelState.UP)
                self.start_dialplan(two, local_context, local_exten, 1)
                one.task = self.spawn(self._run_originated(one, app, app_data, context, exten, priority))
                return one
            return None

        if is_async:
            reply.success(("Message", "Originate successfully queued"))

            async def run() -> None:
                channel = await originate()
                respond(channel is not None, channel)
            self.spawn(run())
            return
        channel = await originate()
        if channel is None:
            reply.error("Originate failed")
        else:
            reply.success(("Message", "Originate successfully queued"))

    async def _run_originated(self, channel: Channel, app: Optional[str], app_data: str,
                              context: str, exten: str, priority: str) -> None:
        if app:
            application = find_application(app)
            try:
                if application is not None:
                    channel.application, channel.app_data = app, app_data
                    await application.execute(self, channel, app_data)
            finally:
                if channel.alive:
                    channel.hangup_cause = 16
                self.finish_channel(channel)
            return
        number = self.dialplan.resolve_priority(context, exten, priority) or 1
        channel.context, channel.exten, channel.priority = context, exten, number
        await self._run_channel(channel)
