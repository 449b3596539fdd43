"""The AGI commands the simulated PBX answers, one function per command, as res_agi's handlers.

Each is registered by its command words with the facts res_agi's command table holds
about it (minimum arguments, whether it works on a dead channel, usage); the FastAGI
session (``pbxsim/agi_client.py``) matches a line to a command, checks those, frames it
with AGIExecStart/AGIExecEnd and sends the reply line the handler returns.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from . import media, variables
from .registry import agi_command, find_application

if TYPE_CHECKING:
    from .channel import Channel
    from .pbx import PBX

OK0, OK1 = "200 result=0\n", "200 result=1\n"


# ---- the call -----------------------------------------------------------------------------
@agi_command("ANSWER")
async def answer(pbx: "PBX", channel: "Channel", args: list[str]) -> str:
    pbx.answer(channel)
    return OK0


@agi_command("HANGUP")
async def hangup(pbx: "PBX", channel: "Channel", args: list[str]) -> str:
    pbx.channel_event(channel, "SoftHangupRequest", "call,all", [("Cause", "32")])
    pbx.hangup_channel(channel, 0, soft=True)
    return OK1


@agi_command("CHANNEL", "STATUS")
async def channel_status(pbx: "PBX", channel: "Channel", args: list[str]) -> str:
    return f"200 result={channel.state}\n"


@agi_command("SET", "CALLERID", min_args=1)
async def set_callerid(pbx: "PBX", channel: "Channel", args: list[str]) -> str:
    # Only the first argument counts: 'SET CALLERID "IVR Test" <5551234>' sets the name
    # "IVR Test" and no number (the recorded NewCallerid says CallerIDNum <unknown>).
    match = re.match(r'^\s*"?([^"<]*?)"?\s*<([^>]*)>\s*$', args[0])
    if match:
        name, num = match.group(1).strip(), match.group(2).strip()
    elif re.fullmatch(r"[0-9+*#()\- .]+", args[0].strip()):
        name, num = "", args[0].strip()
    else:
        name, num = args[0].strip(), ""
    channel.caller_name, channel.caller_num = name or "<unknown>", num or "<unknown>"
    pbx.channel_event(channel, "NewCallerid", "call,all",
                      [("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")])
    return OK1


@agi_command("SET", "MUSIC", min_args=1)
async def set_music(pbx: "PBX", channel: "Channel", args: list[str]) -> str:
    return OK0


@agi_command("EXEC", min_args=1, dead=True, fails_on_minus_one=True)
async def exec_(pbx: "PBX", channel: "Channel", args: list[str]) -> str:
    app = find_application(args[0])
    if app is None:
        return "200 result=-2\n"
    # The application's arguments, split on the AGI line, joined back as its data.
    await app.execute(pbx, channel, ",".join(args[1:]))
    return OK0


# ---- logging ------------------------------------------------------------------------------
@agi_command("NOOP", dead=True)
async def noop(pbx: "PBX", channel: "Channel", args: list[str]) -> str:
    return OK0


@agi_command("VERBOSE", min_args=1, dead=True)
async def verbose(pbx: "PBX", channel: "Channel", args: list[str]) -> str:
    return OK1


# ---- variables and the database -----------------------------------------------------------
@agi_command("SET", "VARIABLE", min_args=2, dead=True, usage=("Sets a variable to the current channel.",))
async def set_variable(pbx: "PBX", channel: "Channel", args: list[str]) -> str:
    if args[0].upper() == "CHANNEL(LANGUAGE)":
        # A dialplan function: written by func_channel, no VarSet event (pbx_builtin_setvar_helper).
        channel.language = args[1]
        return OK1
    variables.set_variable(pbx, channel, args[0], args[1])
    return OK1


@agi_command("GET", "VARIABLE", min_args=1, dead=True)
async def get_variable(pbx: "PBX", channel: "Channel", args: list[str]) -> str:
    name = args[0]
    value = variables.lookup(pbx, channel, name)
    return f"200 result=1 ({value})\n" if variables.exists(pbx, channel, name) else OK0


@agi_command("GET", "FULL", "VARIABLE", min_args=1, dead=True)
async def get_full_variable(pbx: "PBX", channel: "Channel", args: list[str]) -> str:
    return f"200 result=1 ({variables.substitute(pbx, channel, args[0])})\n"


@agi_command("DATABASE", "PUT", min_args=3, dead=True)
async def database_put(pbx: "PBX", channel: "Channel", args: list[str]) -> str:
    pbx.astdb[(args[0], args[1])] = args[2]
    return OK1


@agi_command("DATABASE", "GET", min_args=2, dead=True)
async def database_get(pbx: "PBX", channel: "Channel", args: list[str]) -> str:
    value = pbx.astdb.get((args[0], args[1]))
    return f"200 result=1 ({value})\n" if value is not None else OK0


@agi_command("DATABASE", "DEL", min_args=2, dead=True)
async def database_del(pbx: "PBX", channel: "Channel", args: list[str]) -> str:
    return OK1 if pbx.astdb.pop((args[0], args[1]), None) is not None else OK0


# ---- media --------------------------------------------------------------------------------
STREAM_FILE_USAGE = (
    "Send the given file, allowing playback to be interrupted by the given digits, if any. Returns <literal>0</literal> if playback completes without a digit being pressed, or the ASCII numerical value of the digit if one was pressed, or <literal>-1</literal> on error or if the channel was disconnected. If musiconhold is playing before calling stream file it will be automatically stopped and will not be restarted after completion.",
    "It sets the following channel variables upon completion:",
    "<variable>PLAYBACKSTATUS</variable>: The status of the playback attempt as a text string.",
    "    <value>SUCCESS</value>",
    "    <value>FAILED</value>",
)


@agi_command("STREAM", "FILE", min_args=2, fails_on_minus_one=True, usage=STREAM_FILE_USAGE)
async def stream_file(pbx: "PBX", channel: "Channel", args: list[str]) -> str:
    return await _stream(pbx, channel, args, control=False)


@agi_command("CONTROL", "STREAM", "FILE", min_args=2, fails_on_minus_one=True)
async def control_stream_file(pbx: "PBX", channel: "Channel", args: list[str]) -> str:
    return await _stream(pbx, channel, args, control=True)


async def _stream(pbx: "PBX", channel: "Channel", args: list[str], *, control: bool) -> str:
    outcome, endpos = await media.play(pbx, channel, args[0], args[1] if len(args) > 1 else "")
    if outcome == "missing":
        return "200 result=-1 endpos=0\n"
    if not control:
        # res_agi: PLAYBACKSTATUS is SUCCESS only when the file played to its end (01, 03b).
        variables.set_variable(pbx, channel, "PLAYBACKSTATUS", "SUCCESS" if outcome == "ok" else "FAILED")
    if outcome == "hangup":
        return f"200 result=-1 endpos={endpos}\n"
    if outcome == "ok":
        return f"200 result=0 endpos={-1 if control else endpos}\n"
    return f"200 result={ord(outcome)} endpos={endpos}\n"


@agi_command("GET", "OPTION", min_args=2, fails_on_minus_one=True)
async def get_option(pbx: "PBX", channel: "Channel", args: list[str]) -> str:
    outcome, endpos = await media.play(pbx, channel, args[0], args[1])
    if outcome == "missing":
        return "200 result=-1 endpos=0\n"
    if outcome == "hangup":
        return f"200 result=-1 endpos={endpos}\n"
    if outcome != "ok":
        return f"200 result={ord(outcome)} endpos={endpos}\n"
    timeout = float(args[2]) / 1000 if len(args) > 2 else 5.0
    digits, _ = await media.read_digits(channel, timeout, 1)
    if not channel.alive:
        return "200 result=-1 endpos=0\n"
    if digits and digits in args[1]:
        return f"200 result={ord(digits)} endpos={endpos}\n"
    return f"200 result=0 endpos={endpos}\n"


@agi_command("WAIT", "FOR", "DIGIT", min_args=1, fails_on_minus_one=True)
async def wait_for_digit(pbx: "PBX", channel: "Channel", args: list[str]) -> str:
    ms = float(args[0])
    digits, _ = await media.read_digits(channel, None if ms < 0 else ms / 1000, 1)
    if not channel.alive:
        return "200 result=-1\n"
    return f"200 result={ord(digits)}\n" if digits else OK0


@agi_command("GET", "DATA", min_args=1, usage=(
    "Stream the given <replaceable>file</replaceable>, and receive DTMF data.",
    "Returns the digits received from the channel at the other end."))
async def get_data(pbx: "PBX", channel: "Channel", args: list[str]) -> str:
    timeout = float(args[1]) / 1000 if len(args) > 1 and args[1] else 6.0
    max_digits = int(args[2]) if len(args) > 2 and args[2] else 1024
    # The prompt is interruptible by any digit; a digit keyed during it starts the input.
    outcome, _ = await media.play(pbx, channel, args[0], "0123456789*#")
    if outcome == "hangup" or not channel.alive:
        return "200 result=-1\n"
    digits = ""
    if outcome not in ("ok", "missing"):
        if outcome == "#":
            return "200 result=\n"
        digits = outcome
    if len(digits) < max_digits:
        more, timed_out = await media.read_digits(channel, timeout, max_digits - len(digits))
        if not channel.alive:
            return "200 result=-1\n"
        digits += more
        if timed_out and not digits:
            return "200 result= (timeout)\n"
        if timed_out:
            return f"200 result={digits} (timeout)\n"
    return f"200 result={digits}\n"


@agi_command("SAY", "DIGITS", min_args=2, fails_on_minus_one=True)
@agi_command("SAY", "NUMBER", min_args=2, fails_on_minus_one=True)
async def say(pbx: "PBX", channel: "Channel", args: list[str]) -> str:
    # Each digit is one short file (digits/N) of about 0.6 s.
    text = args[0]
    if await media.wait(channel, 0.6 * len(text) / pbx.speed):
        return "200 result=-1\n"
    return OK0


@agi_command("RECORD", "FILE", min_args=4, fails_on_minus_one=True)
async def record_file(pbx: "PBX", channel: "Channel", args: list[str]) -> str:
    # RECORD FILE name format escape_digits timeout [offset] [BEEP] [s=silence]
    escape = args[2]
    timeout = float(args[3]) / 1000 if args[3] and float(args[3]) > 0 else None
    # s=<seconds>: Asterisk stops after that much silence, and a simulated caller sends no audio
    # (res_agi then answers "(timeout)", as for the time limit).
    for option in args[4:]:
        if option.startswith("s=") and option[2:].isdigit() and int(option[2:]) > 0:
            timeout = min(timeout, float(option[2:])) if timeout is not None else float(option[2:])
    start = time.time()
    digits, _ = await media.read_digits(channel, timeout, 1) if escape else ("", True)
    seconds = time.time() - start
    media.write_wav(pbx.recordings_dir, Path(args[0] + "." + args[1]) if pbx.recordings_dir else None, seconds)
    if not channel.alive:
        return "200 result=-1 (hangup) endpos=%d\n" % int(seconds * 8000)
    if digits:
        return f"200 result={ord(digits)} (dtmf) endpos={int(seconds * 8000)}\n"
    return f"200 result=0 (timeout) endpos={int(seconds * 8000)}\n"
