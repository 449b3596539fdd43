"""Outside a group's business hours: a callback request, or a recorded message.

Both are kept with the call: in the IVR path (``hotline:ivr:{uniqueid}``, merged
into the PostgreSQL record by the ACD) under ``callback`` and ``message``.

The message is recorded by Asterisk with ``RECORD FILE`` into
``hotline/messages/<uniqueid>.wav`` below its sounds directory
(``/var/lib/asterisk/sounds`` for a relative name); the caller ends it with ``#``
or by hanging up, and a recording cut by a hang-up is kept too.
"""
from __future__ import annotations

import re
from typing import Any

from .agi import AGIHangup
from .call import Call
from .menu_model import Target

__all__ = ["Callback", "LeaveMessage", "MESSAGES_DIR"]

MESSAGES_DIR = "hotline/messages"
_UNIQUEID = re.compile(r"[0-9]+\.[0-9]+")
_ENDPOS = re.compile(r"endpos=(-?\d+)")


class Callback:
    """The ``callback`` service: note the caller's number for a call back, confirm, end the call."""

    async def __call__(self, call: Call) -> Target:
        if len(call.caller) < 5:
            # No usable caller ID (withheld, or not a number): a person takes the details.
            call.path.note("callback", "no-number")
            return call.plan.fallback
        call.path.extra["callback"] = {"number": call.caller, "requested_at": call.clock()}
        call.path.note("callback", "requested")
        await call.play("callback", "callback-confirm")
        return Target("hangup", prompt="goodbye")


class LeaveMessage:
    """The ``message`` service: record what the caller says after the beep, keep it with the call."""

    def __init__(self, max_seconds: int = 120, silence_s: int = 5) -> None:
        self.max_seconds = max_seconds
        self.silence_s = silence_s

    async def __call__(self, call: Call) -> Target:
        uniqueid = call.session.uniqueid
        if not _UNIQUEID.fullmatch(uniqueid):
            # The file name comes from the channel: only Asterisk's own uniqueid shape is used.
            call.path.note("message", "no-uniqueid")
            return call.plan.fallback
        name = f"{MESSAGES_DIR}/{uniqueid}"
        await call.play("message", "message-record")
        call.path.begin("message", None)
        message: dict[str, Any] = {"file": f"{name}.wav", "seconds": None}
        call.path.extra["message"] = message
        # A hang-up (AGIHangup) is how many callers end a message: the file is kept, and the
        # open step is closed as the hang-up node by the call flow.
        reply = await call.session.command(
            "RECORD FILE", name, "wav", "#", self.max_seconds * 1000, 0, "BEEP", f"s={self.silence_s}")
        endpos = _ENDPOS.search(reply.line)
        if endpos:
            message["seconds"] = round(max(0, int(endpos.group(1))) / 8000, 1)
        if reply.result == "-1" and not call.session.hung_up:
            await call.session.noop()  # -1: a hang-up or a failure; NOOP tells which
        if call.session.hung_up:
            raise AGIHangup("the caller hung up while recording")
        call.path.end("recorded" if reply.result != "-1" else "error")
        await call.play("message", "message-saved")
        return Target("hangup", prompt="goodbye")
