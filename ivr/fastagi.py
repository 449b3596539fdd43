"""FastAGI server: Asterisk connects (``AGI(agi://host:port/script,args)``), we drive the call.

One asyncio task per connection. The session starts with Asterisk's environment
block (``agi_name: value`` lines ending with an empty line), read under a
deadline so a health check that connects and says nothing, or a peer that goes
away half-way, costs one short-lived task and never a spinning loop. Then the
handler registered for ``agi_network_script`` gets an :class:`AGISession`
(``ivr/session.py``) and talks to Asterisk one command at a time; when it
returns, we close the socket and Asterisk goes on with the dialplan
(``AGISTATUS=SUCCESS``).

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

from .agi import AGIError, AGIHangup
from .session import AGISession, close_writer

# AGISession is re-exported: handlers and tests have always found it here.
__all__ = ["AGIHandler", "AGISession", "FastAGIServer"]

log = logging.getLogger("ivr.fastagi")

AGIHandler = Callable[[AGISession], Awaitable[Any]]

# Longest line we accept from Asterisk (its own lines are far shorter).
_LINE_LIMIT = 64 * 1024
# Asterisk sends about 25 environment lines; more is not Asterisk.
_MAX_ENV_LINES = 256


def _is_async_callable(obj: object) -> bool:
    while isinstance(obj, functools.partial):
        obj = obj.func
    if inspect.iscoroutinefunction(obj):
        return True
    # An object whose __call__ is "async def".
    return callable(obj) and inspect.iscoroutinefunction(type(obj).__call__)


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
                    await close_writer(writer)
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

