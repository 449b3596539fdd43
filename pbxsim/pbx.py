"""The simulated PBX's core: channels and their state, hang-ups, bridges, events, and the
loop that runs a channel's dialplan.

It stands in for Asterisk 22 on the wire only. Our services reach it through AMI and
FastAGI exactly as they reach a real Asterisk; nothing here is imported by a service.

What channels do is registered by the modules around the core, as Asterisk's modules
register theirs (``pbxsim/registry.py``): dialplan applications (``apps.py``,
``app_dial.py``), dialplan functions (``functions.py``), AGI commands
(``agi_commands.py``, spoken over ``agi_client.py``) and AMI actions (``ami_actions.py``,
served by ``ami_server.py``). Variables and ``${...}`` substitution are ``variables.py``.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import time
from pathlib import Path
from typing import Any, Iterable, Optional

# The modules that register applications, functions, AGI commands and AMI actions, imported
# for that (as Asterisk loads its modules at start). They import nothing of this module at
# run time, so the registry they fill is all the core looks at.
from . import agi_commands, ami_actions, app_dial, apps, functions  # noqa: F401
from . import variables
from .ami_server import AMIServer, AMIUser, Headers
from .channel import HANGUP_CAUSES, Bridge, Channel, ChannelState
from .dialplan import Dialplan
from .endpoints import ChannelListener, Endpoint, IncomingCall, Phone
from .registry import JUMPED, STOP, find_application
from .sounds import SoundLibrary

__all__ = ["PBX", "Endpoint", "IncomingCall", "Phone", "ChannelListener"]

log = logging.getLogger(__name__)


class PBX:
    """The simulated Asterisk: what every module works on, given to each handler."""

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

    def channel_event(self, channel: Channel, event: str, privilege: str,
                      extra: Iterable[tuple[str, str]] = ()) -> None:
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

    # ---- channels -----------------------------------------------------------------------
    def new_channel(self, tech: str, endpoint: str, context: str, exten: str, *,
                    caller_num: str = "<unknown>", caller_name: str = "<unknown>",
                    linkedid: Optional[str] = None, state: int = ChannelState.DOWN,
                    language: str = "en", dnid: str = "", name: Optional[str] = None,
                    uniqueid: str = "") -> Channel:
        now = time.time()
        uniqueid = uniqueid or f"{int(now)}.{next(self._uniqueid_seq)}"     # (Originate's ChannelId)
        channel = Channel(
            name=name or f"{tech}/{endpoint}-{self.next_channel_number():08x}", uniqueid=uniqueid,
            linkedid=linkedid or uniqueid, context=context, exten=exten, state=state,
            caller_num=caller_num or "<unknown>", caller_name=caller_name or "<unknown>",
            language=language, dnid=dnid, endpoint=endpoint, created_at=now)
        self.channels[channel.name] = channel
        self.channel_event(channel, "Newchannel", "call,all")
        return channel

    def next_channel_number(self) -> int:
        """The number at the end of a new channel's name (PJSIP/1001-0000000a)."""
        return next(self._channel_seq)

    def find_channel(self, name: str) -> Optional[Channel]:
        return self.channels.get(name)

    def start_dialplan(self, channel: Channel, context: str, exten: str, priority: int = 1) -> None:
        channel.context, channel.exten, channel.priority = context, exten, priority
        channel.task = self.spawn(self.run_channel(channel))

    def hangup_channel(self, channel: Channel, cause: int = 16, *, soft: bool = False) -> None:
        """Ask a channel to hang up; its owner (dialplan loop or Dial) finishes it.

        ``soft`` is AMI Hangup: Asterisk only raises the channel's soft-hangup flag, which
        emits no event (02b, act-51/act-65); the ``SoftHangupRequest`` that follows comes from
        the end of the channel's dialplan (see :meth:`run_channel`). Otherwise it is the far
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

    # ---- running the dialplan -----------------------------------------------------------
    async def run_channel(self, channel: Channel) -> None:
        """Run the channel's dialplan from where it stands, then its h extension; then finish it."""
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
            data = variables.substitute(self, channel, step.data)
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
            data = variables.substitute(self, channel, step.data)
            self.channel_event(channel, "Newexten", "dialplan,all",
                               [("Extension", "h"), ("Application", step.app), ("AppData", data)])
            app = find_application(step.app)
            if app is not None and app.after_hangup:
                await app.execute(self, channel, data)
            channel.priority += 1

    # ---- bridges ------------------------------------------------------------------------
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
