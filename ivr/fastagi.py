"""FastAGI server: Asterisk connects (``AGI(agi://host:port/script,args)``), we drive the call.

One asyncio task per connection. The session starts with Asterisk's environment
block (``agi_name: value`` lines ending with an empty line), read under a
deadline so a health check that connects and says nothing, or a peer that goes
away half-way, costs one short-lived task and never a spinning loop. Then the
handler registered for ``agi_network_script`` gets an :class:`AGISession` and
talks to Asterisk one command at a time; when it returns, we close the socket
and Asterisk goes on with the dialplan (``AGISTATUS=SUCCESS``).

Protocol only: what to play and which variables to set is the handlers' business
(``ivr/app.py``).
"""
from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping
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

__all__ = ["AGIHandler", "AGISession", "FastAGIServer"]

log = logging.getLogger("ivr.fastagi")

AGIHandler = Callable[["AGISession"], Awaitable[Any]]

# Two debug lines per command would cost more than the command itself when not logged.
_DEBUG_ENABLED = functools.partial(log.isEnabledFor, logging.DEBUG)

# Longest line we accept from Asterisk (its own lines are far shorter).
_LINE_LIMIT = 64 * 1024
# Asterisk sends about 25 environment lines; more is not Asterisk.
_MAX_ENV_LINES = 256
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


def _is_async_callable(obj: object) -> bool:
    while isinstance(obj, functools.partial):
        obj = obj.func
    if inspect.iscoroutinefunction(obj):
        return True
    # An object whose __call__ is "async def".
    return callable(obj) and inspect.iscoroutinefunction(type(obj).__call__)


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
        await _close_writer(self._writer)

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


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    """Close politely, but never wait long on a peer that does not read."""
    try:
        writer.close()
        async with asyncio.timeout(_CLOSE_TIMEOUT):
            await writer.wait_closed()
    except (TimeoutError, ConnectionError, OSError):
        writer.transport.abort()


class FastAGIServer:
    """FastAGI server dispatching on ``agi_network_script`` to async handlers.

    ``handlers`` maps script names (``ivr`` for ``agi://host:port/ivr``) to
    ``async def handler(session: AGISession)``. ``header_timeout`` bounds the
    reading of the environment block, ``command_timeout`` (None = no limit)
    each command's reply, ``max_sessions`` the connections served at once
    (more are closed at once and logged).
    """

    def __init__(
        self,
        handlers: Mapping[str, AGIHandler],
        host: str = "127.0.0.1",
        port: int = 4573,
        *,
        header_timeout: float = 5.0,
        command_timeout: Optional[float] = None,
        max_sessions: int = 10000,
        backlog: int = 1024,
    ) -> None:
        checked: dict[str, AGIHandler] = {}
        for script, handler in dict(handlers).items():
            if not isinstance(script, str) or not script:
                raise TypeError(f"FastAGI script names must be non-empty strings, got {script!r}")
            if not _is_async_callable(handler):
                # Handlers drive the call through the async session, so they must be
                # coroutines; a plain function would block the event loop for every call.
                raise TypeError(
                    f"FastAGI handler for {script!r} must be an async function "
                    f"(async def handler(session)); got {handler!r}"
                )
            checked[script.strip("/")] = handler
        if header_timeout <= 0:
            raise ValueError("header_timeout must be > 0")
        if max_sessions < 1:
            raise ValueError("max_sessions must be >= 1")
        self._handlers = checked
        self.host = host
        self._port = port
        self.header_timeout = header_timeout
        self.command_timeout = command_timeout
        self.max_sessions = max_sessions
        self._backlog = backlog
        self._server: Optional[asyncio.base_events.Server] = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("FastAGI server already started")
        self._stopping = False
        self._server = await asyncio.start_server(
            self._on_connect, self.host, self._port, limit=_LINE_LIMIT, backlog=self._backlog
        )
        log.info("FastAGI listening on %s:%d (scripts: %s)", self.host, self.port, ", ".join(self._handlers))

    async def stop(self, grace: float = 0.0) -> None:
        """Stop listening, give running sessions ``grace`` seconds, then cancel them."""
        self._stopping = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
        if grace > 0 and self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        if server is not None:
            await server.wait_closed()

    async def wait_idle(self) -> None:
        """Wait until no session is running (graceful shutdown, tests)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def __aenter__(self) -> "FastAGIServer":
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(self._server.sockets) if self._server is not None else ()

    @property
    def port(self) -> int:
        """The port listened on (the real one when started with port 0)."""
        for sock in self.sockets:
            return int(sock.getsockname()[1])
        return self._port

    @property
    def active_sessions(self) -> int:
        return len(self._tasks)

    # ------------------------------------------------------------------ connections

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = writer.get_extra_info("peername")
        session: Optional[AGISession] = None
        try:
            if self._stopping:
                return
            if len(self._tasks) > self.max_sessions:
                log.warning("FastAGI: %d sessions running, refusing %s", self.max_sessions, peer)
                return
            env = await self._read_env(reader, peer)
            if env is None:
                return
            script = env.get("network_script", "").strip("/")
            handler = self._handlers.get(script)
            if handler is None:
                # Closing without a command ends AGI() with AGISTATUS=SUCCESS.
                log.warning(
                    "[%s] FastAGI: no handler for script %r from %s; closing",
                    env.get("uniqueid", "-"), script, peer,
                )
                return
            session = AGISession(reader, writer, env, command_timeout=self.command_timeout)
            session.log.info("FastAGI %s from %s, channel %s", script, peer, session.channel)
            await self._run_handler(handler, session)
        except asyncio.CancelledError:
            # stop() cancels sessions; end the connection task quietly then (asyncio's
            # stream callback would otherwise log the cancellation as an error).
            if not self._stopping:
                raise
        except Exception:  # our own bug: cost one call, never the server
            log.exception("FastAGI: session from %s failed", peer)
        finally:
            try:
                if session is not None:
                    await session.close()
                else:
                    await _close_writer(writer)
            finally:
                self._tasks.discard(task)  # only now: wait_idle() means "all sockets closed"

    async def _read_env(self, reader: asyncio.StreamReader, peer: object) -> Optional[dict[str, str]]:
        """Read ``agi_name: value`` lines up to the empty line; None if that does not happen."""
        env: dict[str, str] = {}
        try:
            # One deadline for the whole block, so a slow trickle cannot hold the task.
            async with asyncio.timeout(self.header_timeout):
                for _ in range(_MAX_ENV_LINES):
                    raw = await reader.readline()
                    if not raw.endswith(b"\n"):
                        # b"" is EOF: the peer went away (a health check); stop, don't loop.
                        log.debug("FastAGI: %s closed before the end of the environment", peer)
                        return None
                    line = raw.decode("utf-8", "replace").rstrip("\r\n")
                    if not line:
                        return env
                    name, sep, value = line.partition(":")
                    if not sep or not name.startswith("agi_"):
                        log.warning("FastAGI: %s sent a non-AGI line %r; closing", peer, line[:80])
                        return None
                    env[name[4:]] = value[1:] if value.startswith(" ") else value
        except TimeoutError:
            log.info("FastAGI: no environment from %s within %.1f s; closing", peer, self.header_timeout)
            return None
        except ValueError:  # line longer than the limit
            log.warning("FastAGI: %s sent an over-long line; closing", peer)
            return None
        except (ConnectionError, OSError) as exc:
            log.debug("FastAGI: %s: %s", peer, exc)
            return None
        log.warning("FastAGI: %s sent more than %d environment lines; closing", peer, _MAX_ENV_LINES)
        return None

    async def _run_handler(self, handler: AGIHandler, session: AGISession) -> None:
        try:
            await handler(session)
        except AGIHangup as exc:
            session.log.info("session ended by hang-up: %s", exc)
        except AGIError as exc:
            session.log.warning("AGI error: %s (command %r)", exc, exc.command)
        except Exception:  # a bug in a handler must cost one call, never the server
            session.log.exception("FastAGI handler for %r failed", session.script)
        else:
            session.log.debug("handler finished")

