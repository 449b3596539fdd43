"""Asterisk's side of FastAGI, as res_agi in Asterisk 22 behaves on the wire.

Recorded behaviour we reproduce (shared/asterisk/transcripts/03-fastagi-sessions.txt):
the ``agi_*`` environment then an empty line; ``200 result=...`` replies; 510 for an
unknown command and multi-line 520 for bad syntax; once the channel has hung up, one bare
``HANGUP`` line (right after the reply of the command that saw the hang-up, so before the
next reply), 511 for media and channel commands, while GET/SET VARIABLE and NOOP still
answer; with ``AGIEXITONHANGUP=yes`` a second ``HANGUP`` and the socket closes at once.
Every command, refused or not, is framed by AGIExecStart/AGIExecEnd events (03b).

This is the session and its framing; the commands, with their minimum arguments and
whether they work on a dead channel, are registered in ``pbxsim/agi_commands.py``.
"""
from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING, Optional
from urllib.parse import urlsplit

from .registry import AGI_COMMANDS, AGICommand

if TYPE_CHECKING:
    from .channel import Channel
    from .pbx import PBX

__all__ = ["run_fastagi", "parse_agi_args"]

log = logging.getLogger(__name__)

AGI_VERSION = "22.10.1"
DEAD = "511 Command Not Permitted on a dead channel or intercept routine\n"


def parse_agi_args(line: str) -> list[str]:
    """Split a command line like res_agi's parse_args: spaces, double quotes, backslash escapes."""
    args: list[str] = []
    current: list[str] = []
    quoted = escaped = have = False
    for ch in line:
        if escaped:
            current.append(ch)
            escaped = False
            have = True
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
            have = True
        elif ch in " \t" and not quoted:
            if have or current:
                args.append("".join(current))
            current, have = [], False
        else:
            current.append(ch)
            have = True
    if have or current:
        args.append("".join(current))
    return args


def _match_command(words: list[str]) -> tuple[Optional[AGICommand], list[str]]:
    """The registered command whose words start the line (the longest first), and its arguments."""
    upper = tuple(w.upper() for w in words)
    for command in sorted(AGI_COMMANDS.values(), key=lambda c: -len(c.words)):
        if upper[:len(command.words)] == command.words:
            return command, words[len(command.words):]
    return None, words


class _Session:
    def __init__(self, pbx: "PBX", channel: "Channel", reader, writer) -> None:
        self.pbx, self.channel = pbx, channel
        self.reader, self.writer = reader, writer
        self.hangup_sent = False
        # A command failed (RESULT_FAILURE) for another reason than a hang-up: AGISTATUS=FAILURE.
        self.failed = False
        self.exit_on_hangup = channel.variables.get("AGIEXITONHANGUP", "").lower() in ("yes", "1", "true")

    def write(self, text: str) -> None:
        self.writer.write(text.encode("utf-8", "replace"))

    def notice_hangup(self) -> bool:
        """Send the one HANGUP line after the channel died; True if the session must end now."""
        if (self.channel.alive and self.channel.redirect_to is None) or self.hangup_sent:
            return False
        self.hangup_sent = True
        self.write("HANGUP\n")
        if self.exit_on_hangup:
            self.write("HANGUP\n")
            return True
        return False

    async def read_command(self) -> Optional[str]:
        read = asyncio.ensure_future(self.reader.readline())
        try:
            while True:
                if not self.channel.alive and self.notice_hangup():
                    return None
                waiter = asyncio.ensure_future(self.channel.interrupt.wait())
                done, _ = await asyncio.wait({read, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if read in done:
                    line = read.result()
                    if not line:
                        return None
                    return line.decode("utf-8", "replace").rstrip("\r\n")
                if not self.channel.alive:
                    if self.notice_hangup():
                        return None
                    # Dead but the server keeps talking: wait for its next line only.
                    line = await read
                    return line.decode("utf-8", "replace").rstrip("\r\n") if line else None
                if self.channel.redirect_to is not None:
                    # An AMI Redirect soft-hangs-up the AGI: it ends and the channel moves on.
                    self.notice_hangup()
                    return None
                # Some other wake-up of a live channel: keep waiting for the server.
                await asyncio.sleep(0)
        finally:
            if not read.done():
                read.cancel()


async def run_fastagi(pbx: "PBX", channel: "Channel", url: str, args: list[str]) -> str:
    """Run one FastAGI session; returns AGISTATUS (SUCCESS, FAILURE, NOTFOUND or HANGUP)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 4573
    script = parts.path.lstrip("/")
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), pbx.agi_connect_timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        log.warning("FastAGI %s unreachable: %s", url, exc)
        return "FAILURE"
    session = _Session(pbx, channel, reader, writer)
    env = [
        ("network", "yes"), ("network_script", script), ("request", url),
        ("channel", channel.name), ("language", channel.language), ("type", channel.tech),
        ("uniqueid", channel.uniqueid), ("version", AGI_VERSION),
        ("callerid", channel.caller_num if channel.caller_num != "<unknown>" else "unknown"),
        ("calleridname", channel.caller_name if channel.caller_name != "<unknown>" else "unknown"),
        ("callingpres", "0"), ("callingani2", "0"), ("callington", "0"), ("callingtns", "0"),
        ("dnid", channel.dnid or "unknown"), ("rdnis", "unknown"),
        ("context", channel.context), ("extension", channel.exten), ("priority", str(channel.priority)),
        ("enhanced", "0.0"), ("accountcode", channel.accountcode),
        ("threadid", str(140000000000000 + id(channel) % 1000000000)),
    ]
    env += [(f"arg_{i}", arg) for i, arg in enumerate(args, 1)]
    try:
        session.write("".join(f"agi_{k}: {v}\n" for k, v in env) + "\n")
        while True:
            line = await session.read_command()
            if line is None:
                break
            if not line.strip():
                continue
            reply = await _execute(pbx, session, line)
            session.write(reply)
            # res_agi notices the hang-up as soon as the command that saw it returns: the
            # HANGUP line follows that command's reply, before anything else (03, B-F).
            exit_now = session.notice_hangup()
            await writer.drain()
            if exit_now:
                break
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
    # res_agi: FAILURE once a command failed on a live channel (session B of 03b: a missing
    # file, although the channel hung up later), else HANGUP if the channel hung up, else SUCCESS.
    if session.failed:
        return "FAILURE"
    return "SUCCESS" if channel.alive else "HANGUP"


def _exec_result(command: Optional[AGICommand], reply: str) -> tuple[str, str]:
    """ResultCode and Result of AGIExecEnd, as res_agi derives them from the handler's return."""
    code = reply[:3]
    if code == "510":
        return "510", "Invalid or unknown command"
    if code == "520":
        return "520", "Usage"
    if code == "511":
        return "511", DEAD[4:].rstrip("\n")
    if command is not None and command.name == "EXEC" and reply.startswith("200 result=-2"):
        return "200", "Unknown Result"   # the unknown application's -2 is no RESULT_* value
    if command is not None and command.fails_on_minus_one and reply.startswith("200 result=-1"):
        return "-1", "Failure"
    return "200", "Success"


async def _execute(pbx: "PBX", session: _Session, line: str) -> str:
    # Every command, even one refused with 510, 520 or 511, is framed by AGIExecStart and
    # AGIExecEnd (03b).
    channel = session.channel
    words = parse_agi_args(line)
    command, args = _match_command(words) if words else (None, [])
    command_id = str(random.randint(1, 2**31 - 1))
    pbx.channel_event(channel, "AGIExecStart", "agi,all", [("CommandId", command_id), ("Command", line)])
    if command is None:
        reply = "510 Invalid or unknown command\n"
    elif len(args) < command.min_args:
        usage = command.usage or (f"Usage: {command.name}",)
        reply = "520-Invalid command syntax.  Proper usage follows:\n" + "".join(u + "\n" for u in usage) \
            + "520 End of proper usage.\n"
    elif not channel.alive and not command.dead:
        reply = DEAD
    else:
        reply = await command.handler(pbx, channel, args)
    result_code, result = _exec_result(command, reply)
    if result_code == "-1" and (session.hangup_sent or (channel.alive and channel.redirect_to is None)):
        session.failed = True
    pbx.channel_event(channel, "AGIExecEnd", "agi,all", [
        ("CommandId", command_id), ("Command", line), ("ResultCode", result_code), ("Result", result)])
    return reply
