"""What a channel hears and keys: playing sound files, collecting DTMF, waiting, recording.

The simulator carries no audio. A file "plays" for as long as the real one lasts (at the
PBX's speed), DTMF arrives on the channel's queue (``PBX.send_dtmf``), and a recording is
an empty WAV file. Applications (``pbxsim/apps.py``) and AGI commands
(``pbxsim/agi_commands.py``) share these, as Asterisk's apps share file.c and app.c.
"""
from __future__ import annotations

import asyncio
import logging
import wave
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from .channel import Channel
    from .pbx import PBX

__all__ = ["play", "read_digits", "wait", "write_wav"]

log = logging.getLogger(__name__)


async def wait(channel: "Channel", seconds: Optional[float]) -> bool:
    """Wait; True if a hang-up or redirect cut the wait short."""
    if not channel.alive or channel.redirect_to is not None:
        return True
    try:
        await asyncio.wait_for(channel.interrupt.wait(), seconds)
        return True
    except asyncio.TimeoutError:
        return False


async def play(pbx: "PBX", channel: "Channel", name: str, escape: str = "") -> tuple[str, int]:
    """Play a file: ('ok'|'missing'|'hangup'|digit, endpos in 8 kHz samples)."""
    length = pbx.sounds.duration(name, channel.language)
    if length is None:
        log.warning("%s: file %s does not exist in any format", channel.name, name)
        return "missing", 0
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + length
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return "ok", int(length * pbx.speed * 8000)
        digit_task = asyncio.ensure_future(channel.dtmf.get()) if escape else None
        waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(channel.interrupt.wait())}
        if digit_task:
            waiters.add(digit_task)
        done, pending = await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        played = int((loop.time() - start) * pbx.speed * 8000)
        if digit_task is not None and digit_task in done:
            digit = digit_task.result()
            if digit in escape:
                return digit, played
            continue
        if done:
            return "hangup", played


async def read_digits(channel: "Channel", first_timeout: Optional[float], max_digits: int,
                      inter_timeout: Optional[float] = None) -> tuple[str, bool]:
    """Collect DTMF like ast_app_getdata: (digits, timed_out). '#' ends the input.

    A timeout of None waits for ever (WAIT FOR DIGIT -1, RECORD FILE without a limit).
    """
    digits = ""
    timeout = first_timeout
    while len(digits) < max_digits:
        get = asyncio.ensure_future(channel.dtmf.get())
        stop = asyncio.ensure_future(channel.interrupt.wait())
        waiters: set[asyncio.Future[Any]] = {get, stop}
        done, pending = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if get in done:
            digit = get.result()
            if digit == "#":
                return digits, False
            digits += digit
            timeout = inter_timeout if inter_timeout is not None else first_timeout
            continue
        if stop in done:
            return digits, False
        return digits, True
    return digits, False


def write_wav(recordings_dir: Optional[Path], relative: Optional[Path], seconds: float) -> None:
    # The simulator carries no audio: like a recording of a SIPp call, a valid empty WAV.
    if relative is None or recordings_dir is None:
        return
    path = recordings_dir / relative
    if ".." in path.relative_to(recordings_dir).parts:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
