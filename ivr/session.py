"""One FastAGI conversation with Asterisk about one channel: the ``agi_*`` environment, one
command at a time and its reply, the commands the handlers use (``STREAM FILE``, ``GET DATA``,
``SET VARIABLE``...), and knowing when the caller hung up.

The server that accepts the connections and reads the environment block is
``ivr/fastagi.py``; the wire format (quoting, reply lines) is ``ivr/agi.py``.
"""
from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping
from typing import Any, Optional

from .agi import (
    HANGUP_LINE,
    AGIError,
    AGIHangup,
    AGIInvalidCommand,
    AGIProtocolError,
    AGIResponse,
    AGITimeout,
    AGIUsageError,
    format_command,
    parse_response,
)

__all__ = ["AGISession", "check_alive", "close_writer"]

# The server's logger: everything FastAGI logs, sessions included, goes under one name.
log = logging.getLogger("ivr.fastagi")

# Two debug lines per command would cost more than the command itself when not logged.
_DEBUG_ENABLED = functools.partial(log.isEnabledFor, logging.DEBUG)

# How long closing may wait for the peer before the connection is dropped hard.
_CLOSE_TIMEOUT = 1.0
# Marks "use the server's command timeout" in AGISession.command().
_DEFAULT: Any = object()


class _SessionLog(logging.LoggerAdapter):
    """Prefixes every message with the call's uniqueid and passes it as ``extra``."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        uniqueid = self.extra.get("uniqueid", "-") if self.extra else "-"
        kwargs.setdefault("extra", {}).update(self.extra or {})
        return f"[{uniqueid}] {msg}", kwargs


class AGISession:
    """One FastAGI conversation with Asterisk about one channel.

    Everything in ``env`` comes from the call (caller ID in particular is set by
    whoever calls us): arguments are always quoted by :func:`format_command`, so
    passing such values to :meth:`command` is safe.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        env: Mapping[str, str],
        *,
        command_timeout: Optional[float] = None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._env = dict(env)
        self._command_timeout = command_timeout
        self._lock = asyncio.Lock()  # AGI is strictly one command, one reply
        self._hung_up = False
        self._closed = False
        self.log = _SessionLog(log, {"uniqueid": self.uniqueid or "-"})

    # ------------------------------------------------------------------ environment

    @property
    def env(self) -> dict[str, str]:
        """The ``agi_*`` environment without the prefix (``env['channel']``)."""
        return self._env

    @property
    def args(self) -> list[str]:
        """``agi_arg_1``, ``agi_arg_2``... in order (the AGI() application's arguments)."""
        found: list[str] = []
        index = 1
        while f"arg_{index}" in self._env:
            found.append(self._env[f"arg_{index}"])
            index += 1
        return found

    @property
    def uniqueid(self) -> str:
        return self._env.get("uniqueid", "")

    @property
    def channel(self) -> str:
        return self._env.get("channel", "")

    @property
    def callerid(self) -> str:
        """Caller number as Asterisk reports it. Untrusted: only ever pass it as an argument."""
        return self._env.get("callerid", "")

    @property
    def script(self) -> str:
        return self._env.get("network_script", "")

    @property
    def hung_up(self) -> bool:
        """True once Asterisk said the channel is gone (``HANGUP`` line, 511, closed socket)."""
        return self._hung_up

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ protocol

    async def command(
        self, verb: str, *args: object, timeout: Optional[float] = _DEFAULT
    ) -> AGIResponse:
        """Send one command and return its ``200`` reply.

        Raises :class:`AGIHangup` on 511 or a closed connection (a ``HANGUP``
        line before the reply only sets :attr:`hung_up`: GET/SET VARIABLE still
        work on a dead channel), :class:`AGIInvalidCommand` on 510,
        :class:`AGIUsageError` on 520 and :class:`AGITimeout` when no reply
        comes in time (the connection is then closed: a late reply would be
        taken for the next command's).
        """
        line = format_command(verb, *args)  # before the lock: a bad command sends nothing
        if timeout is _DEFAULT:
            timeout = self._command_timeout
        async with self._lock:
            if self._closed:
                raise AGIHangup("AGI connection is closed", command=line)
            if _DEBUG_ENABLED():
                self.log.debug(">>> %s", line)
            try:
                if timeout is None:  # the common case: no timer to arm for every command
                    await self._send(line)
                    return await self._read_reply(line)
                async with asyncio.timeout(timeout):
                    await self._send(line)
                    return await self._read_reply(line)
            except TimeoutError:
                self._abort()
                raise AGITimeout(f"no reply to {verb.upper()} within {timeout} s", command=line) from None
            except asyncio.CancelledError:
                # Its reply may still come and would be read as the next command's.
                self._abort()
                raise

    async def _send(self, line: str) -> None:
        try:
            self._writer.write(line.encode("utf-8") + b"\n")
            if self._writer.transport.get_write_buffer_size():  # only wait when the socket pushes back
                await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            self._lost()
            raise AGIHangup(f"AGI connection lost: {exc}", command=line) from exc

    async def _read_line(self, command: str) -> str:
        try:
            raw = await self._reader.readline()
        except (ConnectionError, OSError) as exc:
            self._lost()
            raise AGIHangup(f"AGI connection lost: {exc}", command=command) from exc
        except ValueError as exc:  # line over the limit: not Asterisk, stop talking
            self._abort()
            raise AGIProtocolError("reply line too long", command=command) from exc
        if not raw.endswith(b"\n"):  # EOF (maybe after a partial line): Asterisk closed
            self._lost()
            raise AGIHangup("Asterisk closed the AGI connection", command=command)
        return raw.decode("utf-8", "replace").rstrip("\r\n")

    async def _read_reply(self, command: str) -> AGIResponse:
        while True:
            text = await self._read_line(command)
            if _DEBUG_ENABLED():
                self.log.debug("<<< %s", text)
            if text == HANGUP_LINE:
                # Asterisk's notice that the channel hung up; the reply follows.
                if not self._hung_up:
                    self.log.info("channel hung up")
                self._hung_up = True
                continue
            try:
                reply = parse_response(text)
            except AGIProtocolError as exc:
                self._abort()  # out of step with the peer: nothing more can be trusted
                exc.command = command
                raise
            if reply.code == 200:
                return reply
            if reply.code == 511:
                self._hung_up = True
                raise AGIHangup(reply.text or "channel hung up", command=command, response=reply)
            if reply.code == 510:
                raise AGIInvalidCommand(reply.text, command=command, response=reply)
            if reply.code == 520:
                usage = [reply.text]
                if reply.multiline:
                    # Usage text runs until "520 End of proper usage."
                    while True:
                        more = await self._read_line(command)
                        if more.startswith("520 "):
                            usage.append(more[4:])
                            break
                        usage.append(more)
                raise AGIUsageError(
                    f"wrong usage of {command.split(' ', 2)[0]}: {reply.text}",
                    usage="\n".join(usage),
                    command=command,
                    response=reply,
                )
            raise AGIError(f"unexpected AGI reply {text!r}", command=command, response=reply)

    def _lost(self) -> None:
        # No connection means no channel for us any more.
        self._closed = True
        self._hung_up = True

    def _abort(self) -> None:
        self._closed = True
        self._writer.transport.abort()

    async def close(self) -> None:
        """Close the connection: Asterisk then leaves AGI() and runs the next priority."""
        if self._closed and self._writer.transport.is_closing():
            return
        self._closed = True
        await close_writer(self._writer)

    # ------------------------------------------------------------------ commands

    async def answer(self) -> AGIResponse:
        return await self.command("ANSWER")

    async def stream_file(self, name: str, escape_digits: str = "") -> AGIResponse:
        """Play a prompt. ``result`` 0 = played, ASCII code = key pressed (``.digit``),
        -1 = missing file *or* caller hung up (the next command tells which)."""
        return await self.command("STREAM FILE", name, escape_digits)

    async def get_data(self, prompt: str, timeout_ms: int, max_digits: int) -> Optional[str]:
        """Play ``prompt`` and collect up to ``max_digits`` keys.

        Returns the digits (``""`` if the caller only pressed ``#``), or None when
        the time ran out with no key. Asterisk's -1 (channel failure or hang-up)
        raises :class:`AGIHangup`.
        """
        reply = await self.command("GET DATA", prompt, int(timeout_ms), int(max_digits))
        if reply.result == "-1":
            self._hung_up = True
            raise AGIHangup("GET DATA failed: channel hung up", response=reply)
        if reply.data == "timeout" and not reply.result:
            return None
        return reply.result

    async def wait_for_digit(self, timeout_ms: int) -> Optional[str]:
        """Wait for one key: the key, or None on timeout; -1 raises :class:`AGIHangup`."""
        reply = await self.command("WAIT FOR DIGIT", int(timeout_ms))
        if reply.result == "-1":
            self._hung_up = True
            raise AGIHangup("WAIT FOR DIGIT failed: channel hung up", response=reply)
        return reply.digit

    async def set_variable(self, name: str, value: object) -> None:
        await self.command("SET VARIABLE", name, value)

    async def get_variable(self, name: str) -> Optional[str]:
        """The variable's value, or None when it is not set."""
        reply = await self.command("GET VARIABLE", name)
        if reply.result != "1":
            return None
        return reply.data if reply.data is not None else ""

    async def verbose(self, message: str, level: int = 1) -> None:
        await self.command("VERBOSE", message, int(level))

    async def noop(self, text: str = "") -> AGIResponse:
        """Does nothing, even on a dead channel: tells whether the channel hung up."""
        if text:
            return await self.command("NOOP", text)
        return await self.command("NOOP")

    async def hangup(self) -> AGIResponse:
        """Hang the channel up (Asterisk then answers further commands as on a dead channel)."""
        reply = await self.command("HANGUP")
        self._hung_up = True
        return reply



async def close_writer(writer: asyncio.StreamWriter) -> None:
    """Close politely, but never wait long on a peer that does not read."""
    try:
        writer.close()
        async with asyncio.timeout(_CLOSE_TIMEOUT):
            await writer.wait_closed()
    except (TimeoutError, ConnectionError, OSError):
        writer.transport.abort()


def check_alive(session: AGISession) -> None:
    """Raise :class:`AGIHangup` once Asterisk said the caller is gone (handlers call it after a command)."""
    if session.hung_up:
        raise AGIHangup("the caller hung up")
