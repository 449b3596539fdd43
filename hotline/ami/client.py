"""Asyncio AMI client: login, actions with timeouts, fast event dispatch, reconnection.

Differences from panoramisk 1.4 that matter for a contact centre:

* An action waiting for its answer when the connection drops fails with
  :class:`AMIConnectionLost` and is **never re-sent** after the reconnect (panoramisk
  replays it, which can place the same Originate twice).
* Every action has a timeout (:class:`AMITimeout`); the client stays usable after one.
* Reconnection uses exponential backoff with jitter instead of a flat 2 s.
* A half-open connection (peer gone without a FIN) is detected with ``Ping`` when the
  line has been silent for ``ping_interval`` seconds.
* Values are sanitised on the way out (see :func:`hotline.ami.protocol.encode_action`).
* Event dispatch is synchronous and cheap: an :class:`asyncio.Protocol` hands whole
  socket reads to the parser, callbacks run right away.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import random
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Optional, Union

from .errors import (
    AMIActionError,
    AMIAuthError,
    AMIConnectionLost,
    AMIError,
    AMITimeout,
)
from .protocol import AMIParser, HeadersInput, Message, _iter_pairs, encode_action

__all__ = ["AMIClient", "EventCallback", "ConnectedCallback"]

log = logging.getLogger(__name__)

#: An event callback takes the Message; it may return a coroutine (run as a task).
EventCallback = Callable[[Message], Optional[Awaitable[Any]]]
#: Called with no argument after every successful login; may be ``async``.
ConnectedCallback = Callable[[], Optional[Awaitable[Any]]]

# Replies that mean the action failed. Asterisk uses "Error"; "Fail"/"Failure" appear in
# some modules and older versions.
_ERROR_RESPONSES = frozenset({"error", "fail", "failure"})


class _Pending:
    """An action waiting for its reply (and, for list actions, its events)."""

    __slots__ = ("future", "is_list", "response", "events", "action")

    def __init__(self, future: asyncio.Future[Any], is_list: bool, action: str) -> None:
        self.future = future
        self.is_list = is_list
        self.action = action
        self.response: Optional[Message] = None
        self.events: list[Message] = []


class _AMIConnection(asyncio.Protocol):
    """One TCP connection. Holds its own table of pending actions, so that whatever
    happens to this connection only ever fails the actions sent on it."""

    def __init__(self, client: "AMIClient", loop: asyncio.AbstractEventLoop) -> None:
        self._client = client
        self._loop = loop
        self.parser = AMIParser()
        self.transport: Optional[asyncio.Transport] = None
        # ActionID -> action awaiting its reply; list actions are also in ``lists`` so
        # that events are only checked for an ActionID while a list is being received.
        # Entries are removed only by the sender (AMIClient._request) when it resumes.
        self.pending: dict[str, _Pending] = {}
        self.lists: dict[str, _Pending] = {}
        self.last_rx = loop.time()
        self.lost: asyncio.Future[Optional[Exception]] = loop.create_future()
        self.watchdog: Optional[asyncio.TimerHandle] = None
        self.logged_in = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        # One clock read per socket read (not per message) feeds half-open detection.
        self.last_rx = self._loop.time()
        messages = self.parser.feed(data)
        if messages:
            self._client._dispatch(self, messages)

    def eof_received(self) -> Optional[bool]:
        return None  # close our side too

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        pending, self.pending, self.lists = self.pending, {}, {}
        reason = f"AMI connection lost ({exc})" if exc else "AMI connection closed"
        for p in pending.values():
            if not p.future.done():
                p.future.set_exception(AMIConnectionLost(f"{reason} before the reply to {p.action}"))
        if not self.lost.done():
            self.lost.set_result(exc)
        self._client._connection_lost(self)

    def send(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise AMIConnectionLost("AMI connection is closed")
        self.transport.write(data)


class AMIClient:
    """Client of the Asterisk Manager Interface.

    >>> ami = AMIClient('127.0.0.1', 5038, 'hotline', 'secret')   # doctest: +SKIP
    >>> ami.on_event('Hangup', lambda msg: print(msg['Uniqueid'])) # doctest: +SKIP
    >>> await ami.connect()                                        # doctest: +SKIP
    >>> await ami.send_action({'Action': 'Redirect', 'Channel': ch, 'Context': 'x',
    ...                        'Exten': '1001', 'Priority': 1})    # doctest: +SKIP
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        action_timeout: float = 5.0,
        ping_interval: Optional[float] = 10.0,
        ping_timeout: float = 5.0,
        reconnect_min: float = 0.5,
        reconnect_max: float = 30.0,
        events: Union[bool, str] = True,
        jitter: float = 0.5,
    ) -> None:
        """``events``: True/False send ``Events: on``/``off``; a string (e.g.
        ``"call,agent"``) is sent as is. ``ping_interval`` None or 0 disables pings.
        ``jitter``: each reconnect delay is drawn from ``[d * (1 - jitter), d]`` where d
        doubles from ``reconnect_min`` to ``reconnect_max`` (never below the minimum)."""
        if reconnect_min <= 0 or reconnect_max < reconnect_min:
            raise ValueError("need 0 < reconnect_min <= reconnect_max")
        if not 0.0 <= jitter <= 1.0:
            raise ValueError("jitter must be between 0 and 1")
        self.host = host
        self.port = port
        self.username = username
        self._secret = secret
        self.action_timeout = action_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.jitter = jitter
        self.events = events
        #: The banner of the current (or last) connection, e.g. "Asterisk Call Manager/11.0.0".
        self.banner: Optional[str] = None

        self._handlers: dict[str, tuple[EventCallback, ...]] = {}  # lower-case name
        self._any: tuple[EventCallback, ...] = ()  # '*' handlers
        self._connected_cbs: list[ConnectedCallback] = []
        self._conn: Optional[_AMIConnection] = None
        self._supervisor: Optional[asyncio.Task[None]] = None
        self._closing = False
        self._tasks: set[asyncio.Task[Any]] = set()
        # ActionIDs are unique across clients sharing one AMI user, because events such
        # as OriginateResponse reach every session.
        self._id_prefix = f"hl-{secrets.token_hex(3)}-"
        self._ids = itertools.count(1)
        self._random = random.Random()

    # -- public API ---------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """True while logged in on an open connection."""
        conn = self._conn
        return conn is not None and conn.logged_in and not conn.lost.done()

    def on_event(self, name: str, callback: EventCallback) -> EventCallback:
        """Call ``callback(msg)`` for every event named ``name`` (case-insensitive);
        ``'*'`` means every event. Callbacks run synchronously in the reader; a returned
        coroutine is scheduled as a task. Exceptions are logged, never propagated.
        Returns ``callback``."""
        if name == "*":
            self._any = self._any + (callback,)
        else:
            key = name.lower()
            self._handlers[key] = self._handlers.get(key, ()) + (callback,)
        return callback

    def remove_event_handler(self, name: str, callback: EventCallback) -> None:
        """Undo :meth:`on_event` (no error if it was not registered)."""
        if name == "*":
            self._any = tuple(cb for cb in self._any if cb is not callback)
            return
        key = name.lower()
        remaining = tuple(cb for cb in self._handlers.get(key, ()) if cb is not callback)
        if remaining:
            self._handlers[key] = remaining
        else:
            self._handlers.pop(key, None)

    def on_connected(self, callback: ConnectedCallback) -> ConnectedCallback:
        """Call ``callback()`` after every successful login, the first one and every
        reconnect, so a service can reconcile its state (e.g. CoreShowChannels)."""
        self._connected_cbs.append(callback)
        return callback

    async def connect(self, timeout: Optional[float] = None) -> None:
        """Open the first connection and log in, then keep it up until :meth:`close`.

        Raises :class:`AMIAuthError` if the login is refused, ``OSError`` (e.g.
        ``ConnectionRefusedError``), :class:`AMITimeout` or :class:`AMIConnectionLost`
        if Asterisk cannot be reached within ``timeout`` (default ``action_timeout``).
        Nothing is retried here: a service decides itself whether to start without AMI.
        """
        if self._supervisor is not None or self._conn is not None:
            raise AMIError("connect() was already called")
        self._closing = False
        await self._open(self.action_timeout if timeout is None else timeout)
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def send_action(self, headers: HeadersInput, timeout: Optional[float] = None) -> Message:
        """Send one action and return its ``Response:`` message.

        An ``ActionID`` is added unless ``headers`` has one. Raises
        :class:`AMIActionError` on ``Response: Error``, :class:`AMITimeout` after
        ``timeout`` (default ``action_timeout``), :class:`AMIConnectionLost` if not
        connected or the connection drops first (the action is not re-sent).
        """
        reply = await self._request(headers, timeout, False, self._conn)
        assert isinstance(reply, Message)
        return reply

    async def send_list_action(
        self, headers: HeadersInput, timeout: Optional[float] = None
    ) -> tuple[Message, list[Message]]:
        """Send an action answered by ``EventList: start`` and a list of events
        (CoreShowChannels, Status, QueueStatus, Hangup by regex...).

        Returns ``(response, events)``: every event carrying this ActionID, in order,
        the completion event (``EventList: Complete``) last. Those events do not reach
        the event handlers. If the reply has no ``EventList: start`` the list is empty.
        ``timeout`` covers the whole list.
        """
        reply = await self._request(headers, timeout, True, self._conn)
        assert isinstance(reply, tuple)
        return reply

    async def close(self) -> None:
        """Log off, close the connection and stop reconnecting. Idempotent."""
        self._closing = True
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if conn.logged_in and not conn.lost.done():
            try:
                await self._request({"Action": "Logoff"}, min(1.0, self.action_timeout), False, conn)
            except AMIError:
                pass  # closing anyway
        if conn.transport is not None:
            conn.transport.close()
        try:
            await asyncio.wait_for(asyncio.shield(conn.lost), 1.0)
        except asyncio.TimeoutError:  # pragma: no cover - peer ignores our FIN
            if conn.transport is not None:
                conn.transport.abort()

    async def __aenter__(self) -> "AMIClient":
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- actions ------------------------------------------------------------------------
    def _next_action_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids)}"

    async def _request(
        self,
        headers: HeadersInput,
        timeout: Optional[float],
        is_list: bool,
        conn: Optional[_AMIConnection],
    ) -> Union[Message, tuple[Message, list[Message]]]:
        pairs = list(_iter_pairs(headers))
        action = next((str(v) for n, v in pairs if isinstance(n, str) and n.lower() == "action"), "?")
        action_id = next(
            (str(v) for n, v in pairs if isinstance(n, str) and n.lower() == "actionid"), None
        )
        if action_id is None:
            action_id = self._next_action_id()
            pairs.insert(1, ("ActionID", action_id))
        data = encode_action(pairs)  # validates before anything is registered
        if conn is None or conn.lost.done() or (not conn.logged_in and action != "Login"):
            raise AMIConnectionLost(f"not connected to AMI; {action} not sent")
        if action_id in conn.pending:
            raise AMIError(f"ActionID {action_id!r} is already in use")

        loop = asyncio.get_running_loop()
        pending = _Pending(loop.create_future(), is_list, action)
        conn.pending[action_id] = pending
        if is_list:
            conn.lists[action_id] = pending
        delay = self.action_timeout if timeout is None else timeout
        timer = loop.call_later(delay, self._expire, action_id, pending, delay)
        try:
            conn.send(data)
            return await pending.future
        finally:
            timer.cancel()
            if conn.pending.get(action_id) is pending:
                del conn.pending[action_id]
            if conn.lists.get(action_id) is pending:
                del conn.lists[action_id]

    @staticmethod
    def _expire(action_id: str, pending: _Pending, delay: float) -> None:
        if not pending.future.done():
            pending.future.set_exception(
                AMITimeout(f"no reply to {pending.action} (ActionID {action_id}) within {delay:g} s")
            )

    # -- incoming messages (hot path) ---------------------------------------------------
    def _dispatch(self, conn: _AMIConnection, messages: list[Message]) -> None:
        handlers = self._handlers
        any_handlers = self._any
        lists = conn.lists
        for msg in messages:
            raw = msg._raw  # parser-made messages keep their text: read the name from it
            if raw is not None and raw.startswith("Event: "):
                end = raw.find("\n")
                name = raw[7:end] if end >= 0 else raw[7:]
            else:
                name = msg.get("Event")
                if name is None:
                    if msg.get("Response") is not None:
                        self._on_response(conn.pending, msg)
                    else:
                        log.debug("ignoring AMI message with neither Event nor Response: %r", msg)
                    continue
            if lists:
                # Events of a list action belong to that action, not to the handlers.
                p = lists.get(msg.get("ActionID"))
                if p is not None:
                    self._on_list_event(p, msg)
                    continue
            callbacks = handlers.get(name.lower())
            if callbacks is not None:
                for cb in callbacks:
                    try:
                        ret = cb(msg)
                    except Exception:
                        log.exception("AMI event handler %r failed on %s", cb, name)
                        continue
                    if ret is not None:
                        self._maybe_spawn(ret, cb, name)
            for cb in any_handlers:
                try:
                    ret = cb(msg)
                except Exception:
                    log.exception("AMI event handler %r failed on %s", cb, name)
                    continue
                if ret is not None:
                    self._maybe_spawn(ret, cb, name)

    @staticmethod
    def _on_response(pending: dict[str, _Pending], msg: Message) -> None:
        action_id = msg.get("ActionID")
        p = pending.get(action_id) if action_id is not None else None
        if p is None or p.future.done():
            # Late (the action timed out) or for another client of the same session.
            log.debug("AMI reply to no pending action: %r", msg)
            return
        status = (msg.get("Response") or "").lower()
        if status in _ERROR_RESPONSES:
            p.future.set_exception(AMIActionError(msg.get("Message", ""), msg))
        elif p.is_list and (msg.get("EventList") or "").lower() == "start":
            p.response = msg  # now wait for the events and the completion event
        else:
            p.future.set_result((msg, []) if p.is_list else msg)

    @staticmethod
    def _on_list_event(p: _Pending, msg: Message) -> None:
        if p.future.done():
            return  # timed out or already complete: drop the stragglers
        p.events.append(msg)
        if (msg.get("EventList") or "").lower() == "complete":
            response = p.response if p.response is not None else Message({"Response": "Success"})
            p.future.set_result((response, p.events))

    def _maybe_spawn(self, ret: Any, cb: Any, name: str) -> None:
        if asyncio.iscoroutine(ret):
            self._spawn(ret, f"AMI event handler {cb!r} for {name}")

    def _spawn(self, coro: Any, what: str) -> "asyncio.Task[Any]":
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)

        def done(t: "asyncio.Task[Any]") -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("%s failed", what, exc_info=t.exception())

        task.add_done_callback(done)
        return task

    # -- connection life ----------------------------------------------------------------
    async def _open(self, timeout: float) -> None:
        """Connect, log in, install the connection, fire on_connected callbacks."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout  # one budget for TCP connect + Login
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _AMIConnection(self, loop), self.host, self.port),
                timeout,
            )
        except asyncio.TimeoutError:
            raise AMITimeout(f"could not connect to AMI at {self.host}:{self.port} within {timeout:g} s") from None
        events = self.events if isinstance(self.events, str) else ("on" if self.events else "off")
        login = {"Action": "Login", "Username": self.username, "Secret": self._secret, "Events": events}
        try:
            await self._request(login, max(deadline - loop.time(), 0.001), False, conn)
        except AMIActionError as exc:
            # Asterisk closes the connection itself after a failed login; make sure.
            if conn.transport is not None:
                conn.transport.close()
            raise AMIAuthError(exc.message or "Authentication failed", exc.response) from None
        except BaseException:
            if conn.transport is not None:
                conn.transport.abort()
            raise
        if conn.lost.done():
            raise AMIConnectionLost("AMI connection closed right after login")
        conn.logged_in = True
        self.banner = conn.parser.banner
        self._conn = conn
        self._arm_watchdog(conn, self.ping_interval)
        log.info("logged in to AMI at %s:%s (%s)", self.host, self.port, self.banner)
        for cb in list(self._connected_cbs):
            try:
                ret = cb()
            except Exception:
                log.exception("AMI on_connected callback %r failed", cb)
                continue
            if asyncio.iscoroutine(ret):
                self._spawn(ret, f"AMI on_connected callback {cb!r}")

    def _connection_lost(self, conn: _AMIConnection) -> None:
        if conn is self._conn and not self._closing:
            log.warning("AMI connection to %s:%s lost", self.host, self.port)

    def backoff_delay(self, attempt: int) -> float:
        """Delay before reconnect attempt ``attempt`` (0 = first after a loss)."""
        base = min(self.reconnect_max, self.reconnect_min * (2.0 ** min(attempt, 62)))
        delay = base * (1.0 - self.jitter * self._random.random())
        return max(self.reconnect_min, delay)

    async def _supervise(self) -> None:
        """Wait for the connection to drop, then reconnect until it works (or close)."""
        attempt = 0
        while not self._closing:
            conn = self._conn
            if conn is not None:
                await asyncio.shield(conn.lost)
                if self._closing:
                    return
                self._conn = None
                attempt = 0
            delay = self.backoff_delay(attempt)
            log.info("reconnecting to AMI at %s:%s in %.2f s", self.host, self.port, delay)
            await asyncio.sleep(delay)
            if self._closing:
                return
            try:
                await self._open(max(self.action_timeout, 0.001))
            except AMIAuthError as exc:
                log.error("AMI login refused on reconnect: %s", exc.message)
            except (OSError, AMIError) as exc:
                log.warning("AMI reconnect failed: %r", exc)
            else:
                continue
            attempt += 1

    # -- half-open detection ------------------------------------------------------------
    def _arm_watchdog(self, conn: _AMIConnection, delay: Optional[float]) -> None:
        if not self.ping_interval or delay is None:
            return
        conn.watchdog = asyncio.get_running_loop().call_later(delay, self._watchdog, conn)

    def _watchdog(self, conn: _AMIConnection) -> None:
        conn.watchdog = None
        if conn is not self._conn or conn.lost.done() or self._closing:
            return
        interval = float(self.ping_interval or 0)
        idle = conn._loop.time() - conn.last_rx
        if idle < interval:
            self._arm_watchdog(conn, interval - idle)  # data arrived meanwhile
            return
        self._spawn(self._probe(conn), "AMI keepalive ping")

    async def _probe(self, conn: _AMIConnection) -> None:
        try:
            await self._request({"Action": "Ping"}, self.ping_timeout, False, conn)
        except AMITimeout:
            log.warning(
                "AMI at %s:%s silent for %.1f s and no answer to Ping: closing the half-open connection",
                self.host, self.port, float(self.ping_interval or 0) + self.ping_timeout,
            )
            if conn.transport is not None:
                conn.transport.abort()  # connection_lost -> supervisor reconnects
            return
        except AMIConnectionLost:
            return
        except AMIActionError:
            pass  # an error reply still proves the peer is alive
        self._arm_watchdog(conn, self.ping_interval)
