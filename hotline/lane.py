"""A lean Redis connection for hot paths: the ACD's routing decisions (:class:`acd.router.Router`)
and the subscriptions every agent change reaches (ACD nodes, the CTI's event hub).

redis-py spends ~100 µs of Python per command (retries, timeouts, connection pool, packing);
a routing decision is one ``EVALSHA``, so that overhead was most of a decision's cost. This is
one TCP connection per router, replies parsed by hiredis, requests from concurrent coroutines
written together and answered in order (Redis answers in order), the script loaded again after
``NOSCRIPT`` (a restarted Redis). Errors are redis-py's exceptions (``ConnectionError``,
``TimeoutError``, ``ResponseError``), so callers handle them as before; a lost connection fails
the requests in flight (not retried: a script may have run) and the next request reconnects.

The same machinery serves subscriptions (:meth:`Lane.subscribe`): every agent change of the
cluster reaches every ACD node and the CTI, and each message costs a few µs here instead of
redis-py's ~15.

Only for plain TCP or a Unix socket (``unix://`` URLs, a Redis on the same host) with optional
password and database; anything else (TLS,
credential providers) or no hiredis: :func:`open_lane` returns None and the router keeps
using redis-py.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, Awaitable, Optional

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

try:
    import hiredis
    _HIREDIS = True
except ImportError:                       # pragma: no cover - hiredis is a dependency
    _HIREDIS = False

__all__ = ["Lane", "Subscription", "bulk", "open_lane", "pack"]

log = logging.getLogger(__name__)


def bulk(text: str) -> bytes:
    """One argument, encoded."""
    data = text.encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _encode(parts) -> tuple[int, bytes]:
    """Arguments encoded (a :class:`Packed` spliced in as it is): (how many, the bytes). On every
    routing decision: the parts are encoded inline, no call per part."""
    count = 0
    out = []
    for part in parts:
        kind = type(part)
        if kind is Packed:
            count += part.count
            out.append(part.data)
            continue
        if kind is str:
            data = part.encode()
        elif kind is bytes:
            data = part
        elif kind is float:
            data = repr(part).encode()
        else:
            data = str(part).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        count += 1
    return count, b"".join(out)


def pack(*parts: Any) -> bytes:
    """One RESP command; a part that is a :class:`Packed` is spliced in as already encoded args."""
    count, data = _encode(parts)
    return b"*%d\r\n%s" % (count, data)


class Packed:
    """Arguments encoded once (a plan, a key list) and reused in many commands."""
    __slots__ = ("count", "data")

    def __init__(self, *args: Any) -> None:
        self.count, self.data = _encode(args)

    @classmethod
    def raw(cls, command: bytes) -> "Packed":
        """A packed command's arguments (without its ``*n`` header) as a Packed."""
        packed = cls()
        header, _, packed.data = command.partition(b"\r\n")
        packed.count = int(header[1:])
        return packed


def _error(reply: Exception) -> Exception:
    text = str(reply)
    if text.startswith("NOSCRIPT"):
        return NoScriptError(text)
    return ResponseError(text)


class _Protocol(asyncio.Protocol):
    def __init__(self, timeout: Optional[float]) -> None:
        self.reader = hiredis.Reader(encoding="utf-8", errors="replace", replyError=Exception)
        self.transport: Optional[asyncio.Transport] = None
        self.pending: deque = deque()           # (future, sent at), answered in order
        self.out: list[bytes] = []              # written together at the next turn of the loop
        self.closed = False
        self.timeout = timeout
        self._watch: Optional[asyncio.TimerHandle] = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def send(self, loop: asyncio.AbstractEventLoop, command: bytes) -> asyncio.Future:
        if self.closed:
            raise RedisConnectionError("connection to Redis lost")
        future = loop.create_future()
        self.pending.append((future, loop.time()))
        if not self.out:
            loop.call_soon(self._flush)
        self.out.append(command)
        if self.timeout is not None and self._watch is None:
            self._watch = loop.call_later(min(self.timeout, 1.0), self._check, loop)
        return future

    def _flush(self) -> None:
        out, self.out = self.out, []
        if not self.closed and out and self.transport is not None:
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        """One timer per connection, not one per request: the oldest request unanswered too long
        fails the connection (the replies' order can no longer be trusted)."""
        self._watch = None
        timeout = self.timeout
        if self.closed or not self.pending or timeout is None:
            return
        if loop.time() - self.pending[0][1] > timeout:
            self.fail(RedisTimeoutError("Redis did not answer in time"))
            return
        self._watch = loop.call_later(min(timeout, 1.0), self._check, loop)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        pending = self.pending
        while True:
            try:
                reply = self.reader.gets()
            except Exception as exc:                    # protocol error: the stream is unusable
                self.fail(RedisConnectionError(f"bad reply from Redis: {exc}"))
                return
            if reply is False:
                return
            if not pending:                             # nobody asked: the stream is out of step
                self.fail(RedisConnectionError("unexpected reply from Redis"))
                return
            future = pending.popleft()[0]
            if not future.done():                       # a caller that was cancelled is gone
                future.set_result(reply)

    def connection_lost(self, exc) -> None:
        self.fail(RedisConnectionError(f"connection to Redis lost{': ' + str(exc) if exc else ''}"))

    def fail(self, error: Exception) -> None:
        self.closed = True
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        while self.pending:
            future = self.pending.popleft()[0]
            if not future.done():
                future.set_exception(error)
        if self.transport is not None:
            self.transport.abort()


class Lane:
    def __init__(self, host: str, port: int, *, db: int = 0, username: Optional[str] = None,
                 password: Optional[str] = None, timeout: Optional[float] = None,
                 connect_timeout: Optional[float] = None, path: Optional[str] = None) -> None:
        self.host, self.port, self.db = host, port, db
        self.path = path                      # a Unix socket instead of host:port
        self.username, self.password = username, password
        self.timeout = timeout
        self.connect_timeout = connect_timeout or 5.0
        self._proto: Optional[_Protocol] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._connecting: Optional[asyncio.Future] = None

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            if self.path:
                connecting = loop.create_unix_connection(lambda: _Protocol(self.timeout), self.path)
            else:
                connecting = loop.create_connection(lambda: _Protocol(self.timeout), self.host, self.port)
            _, proto = await asyncio.wait_for(connecting, self.connect_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            where = self.path or f"{self.host}:{self.port}"
            raise RedisConnectionError(f"cannot connect to Redis at {where}: "
                                       f"{str(exc) or type(exc).__name__}") from None
        self._proto, self._loop = proto, loop
        hello = []
        if self.password:
            hello.append(pack("AUTH", *([self.username] if self.username else []), self.password))
        if self.db:
            hello.append(pack("SELECT", self.db))
        for command in hello:
            reply = await self._send(proto, command)
            if isinstance(reply, Exception):
                self._close(proto)
                raise RedisConnectionError(f"Redis refused the connection set-up: {reply}")
        return proto

    async def _ready(self) -> _Protocol:
        proto = self._proto
        if proto is not None and not proto.closed and self._loop is asyncio.get_running_loop():
            return proto
        if self._connecting is not None and not self._connecting.done() \
                and self._loop is asyncio.get_running_loop():
            return await asyncio.shield(self._connecting)
        self._proto = None
        self._loop = asyncio.get_running_loop()
        self._connecting = self._loop.create_task(self._connect())
        return await asyncio.shield(self._connecting)

    def _send(self, proto: _Protocol, command: bytes) -> asyncio.Future:
        assert self._loop is not None           # (set with the protocol)
        return proto.send(self._loop, command)

    def request(self, command: bytes) -> Awaitable:
        """Send one packed command; await the result for its reply (a Redis error reply comes back
        as an exception *object*, not raised). Written at once when connected, as is the rule on
        the hot path: no coroutine in between, and no ``get_running_loop()``, which on Python 3.11
        makes a ``getpid()`` system call each time. A lane serves the loop it connected from; after
        that loop closed (a new one, as between tests) it connects again."""
        proto, loop = self._proto, self._loop
        if proto is not None and loop is not None and not proto.closed and not loop.is_closed():
            return proto.send(loop, command)
        return self._request_when_connected(command)

    async def _request_when_connected(self, command: bytes) -> Any:
        proto = await self._ready()
        return await self._send(proto, command)

    async def execute(self, command: bytes) -> Any:
        """Send one packed command, return its reply (errors raised as redis-py's)."""
        reply = await self.request(command)
        if isinstance(reply, Exception):
            raise _error(reply)
        return reply

    async def evalsha(self, sha: str, script: str, command: bytes) -> Any:
        """``command`` is a packed ``EVALSHA sha ...``; on NOSCRIPT the script is loaded and sent again."""
        reply = await self.request(command)
        if isinstance(reply, Exception):
            error = _error(reply)
            if not isinstance(error, NoScriptError):
                raise error
            await self.execute(pack("SCRIPT", "LOAD", script))
            return await self.execute(command)
        return reply

    async def evalsha_many(self, sha: str, script: str, commands: list[bytes]) -> list[Any]:
        """Several packed ``EVALSHA`` commands written together (one round trip), their replies in
        order; an error reply is returned in its place as a redis-py exception, not raised."""
        futures = [self.request(command) for command in commands]
        replies: list[Any] = []
        for future in futures:                  # every one awaited: none left unretrieved
            try:
                reply = await future
                if isinstance(reply, Exception):
                    reply = _error(reply)
            except (RedisConnectionError, RedisTimeoutError) as exc:    # the connection failed under them
                reply = exc
            replies.append(reply)
        if any(isinstance(r, NoScriptError) for r in replies):
            await self.execute(pack("SCRIPT", "LOAD", script))
            for i, reply in enumerate(replies):
                if isinstance(reply, NoScriptError):
                    try:
                        replies[i] = await self.execute(commands[i])
                    except (RedisConnectionError, RedisTimeoutError, ResponseError) as exc:
                        replies[i] = exc
        return replies

    async def subscribe(self, channels: list[str], on_message) -> Subscription:
        """Subscribe to these channels on a connection of its own (see :class:`Subscription`);
        returns once Redis confirmed every channel."""
        loop = asyncio.get_running_loop()
        try:
            if self.path:
                connecting = loop.create_unix_connection(lambda: Subscription(channels, on_message), self.path)
            else:
                connecting = loop.create_connection(lambda: Subscription(channels, on_message), self.host, self.port)
            transport, sub = await asyncio.wait_for(connecting, self.connect_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            where = self.path or f"{self.host}:{self.port}"
            raise RedisConnectionError(f"cannot connect to Redis at {where}: "
                                       f"{str(exc) or type(exc).__name__}") from None
        hello = pack("AUTH", *([self.username] if self.username else []), self.password) if self.password else b""
        transport.write(hello + pack("SUBSCRIBE", *channels))
        try:
            await asyncio.wait_for(asyncio.shield(sub.confirmed), self.connect_timeout)
        except asyncio.TimeoutError:
            sub.close()
            raise RedisTimeoutError("Redis did not confirm the subscription in time") from None
        except BaseException:               # refused, or the caller gave up: no connection left behind
            sub.close()
            raise
        return sub

    def _close(self, proto: _Protocol) -> None:
        proto.fail(RedisConnectionError("connection to Redis closed"))

    async def aclose(self) -> None:
        proto, self._proto = self._proto, None
        if proto is not None and not proto.closed:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is self._loop:
                self._close(proto)


class Subscription(asyncio.Protocol):
    """A subscription on its own lean connection (:meth:`Lane.subscribe`): each message is handed
    to ``on_message(channel, data)`` as it is parsed, with no task or coroutine per message (every
    agent change of the cluster reaches every ACD node: redis-py's pub/sub cost ~14 µs a
    message). ``lost`` completes, with the error, when the connection ends."""

    def __init__(self, channels: list[str], on_message) -> None:
        self.reader = hiredis.Reader(encoding="utf-8", errors="replace", replyError=Exception)
        self.on_message = on_message
        self._unconfirmed = set(channels)
        loop = asyncio.get_running_loop()
        self.confirmed: asyncio.Future = loop.create_future()
        self.lost: asyncio.Future = loop.create_future()
        self.transport: Optional[asyncio.Transport] = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            try:
                reply = self.reader.gets()
            except Exception as exc:                    # protocol error: the stream is unusable
                self._end(RedisConnectionError(f"bad reply from Redis: {exc}"))
                return
            if reply is False:
                return
            if type(reply) is list and len(reply) == 3:
                kind = reply[0]
                if kind == "message":
                    try:
                        self.on_message(reply[1], reply[2])
                    except Exception:   # noqa: BLE001 - one bad message must not end the subscription
                        log.exception("message on %s not handled: %r", reply[1], str(reply[2])[:200])
                elif kind == "subscribe":
                    self._unconfirmed.discard(reply[1])
                    if not self._unconfirmed and not self.confirmed.done():
                        self.confirmed.set_result(None)
            elif isinstance(reply, Exception):          # AUTH or SUBSCRIBE refused
                self._end(RedisConnectionError(f"Redis refused the subscription: {reply}"))
                return

    def connection_lost(self, exc) -> None:
        self._end(RedisConnectionError(f"subscription to Redis lost{': ' + str(exc) if exc else ''}"))

    def _end(self, error: Exception) -> None:
        if not self.confirmed.done():
            self.confirmed.set_exception(error)
            self.confirmed.exception()          # (retrieved here: whoever waits gets it too)
        if not self.lost.done():
            self.lost.set_result(error)
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self._end(RedisConnectionError("subscription closed"))


def open_lane(redis) -> Optional[Lane]:
    """A lane to the same server and database as this redis-py client, when it can be one."""
    if not _HIREDIS:
        return None
    try:
        from redis.asyncio.connection import Connection, UnixDomainSocketConnection

        pool = redis.connection_pool
        if pool.connection_class not in (Connection, UnixDomainSocketConnection):
            return None
        kw = pool.connection_kwargs
        if kw.get("credential_provider") is not None or int(kw.get("protocol") or 2) != 2:
            return None
        path = kw.get("path") if pool.connection_class is UnixDomainSocketConnection else None
        if pool.connection_class is UnixDomainSocketConnection and not path:
            return None
        return Lane(kw.get("host") or "localhost", int(kw.get("port") or 6379), db=int(kw.get("db") or 0),
                    username=kw.get("username"), password=kw.get("password"), timeout=kw.get("socket_timeout"),
                    connect_timeout=kw.get("socket_connect_timeout"), path=path)
    except (AttributeError, TypeError, ValueError):
        return None
