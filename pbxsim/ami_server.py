"""The simulated PBX's Asterisk Manager Interface: a TCP server that speaks like Asterisk 22.

This is the TCP, session and framing part: banner, messages in and out, ActionID echo,
``EventList`` replies, event privileges and the permission check before Login follow the
recordings in ``shared/asterisk/transcripts``. The actions themselves, Login included,
are registered in ``pbxsim/ami_actions.py``.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Optional

from .registry import AMI_ACTIONS

if TYPE_CHECKING:
    from .pbx import PBX

__all__ = ["AMIServer", "AMISession", "AMIUser", "Headers", "Message", "Reply", "format_message"]

log = logging.getLogger(__name__)

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
Headers = list[tuple[str, str]]


def format_message(headers: Iterable[tuple[str, str]]) -> bytes:
    return ("".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n").encode("utf-8", "replace")


@dataclass
class AMIUser:
    username: str
    secret: str
    read: frozenset[str] = frozenset({"all"})
    write: frozenset[str] = frozenset({"all"})


@dataclass(eq=False)
class AMISession:
    server: "AMIServer"
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    user: Optional[AMIUser] = None
    events_on: bool = False
    event_classes: frozenset[str] = frozenset()
    challenge: Optional[str] = None
    closed: bool = False
    out: "asyncio.Queue[Optional[bytes]]" = field(default_factory=asyncio.Queue)

    def wants(self, privilege: str) -> bool:
        if self.user is None or not self.events_on:
            return False
        classes = set(privilege.split(","))
        readable = self.user.read
        if "all" not in readable and not classes & readable:
            return False
        if self.event_classes and not classes & self.event_classes:
            return False
        return True

    def send(self, data: bytes) -> None:
        if not self.closed:
            self.out.put_nowait(data)

    def close_after_sending(self) -> None:
        """End the connection once what is queued has been written (Logoff, a failed Login)."""
        self.out.put_nowait(None)


class AMIServer:
    def __init__(self, pbx: "PBX", users: list[AMIUser], host: str = "127.0.0.1", port: int = 5038,
                 *, auth_fail_delay: float = 1.0) -> None:
        self.pbx = pbx
        self.users = {u.username: u for u in users}
        self.host, self.port = host, port
        self.auth_fail_delay = auth_fail_delay
        self.sessions: set[AMISession] = set()
        self._server: Optional[asyncio.base_events.Server] = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server:
            self._server.close()
        for session in list(self.sessions):
            session.closed = True
            session.out.put_nowait(None)
            session.writer.close()
        if self._server:
            await self._server.wait_closed()

    # ---- events -------------------------------------------------------------------------
    def broadcast(self, event: str, privilege: str, headers: Headers) -> None:
        data: Optional[bytes] = None
        for session in self.sessions:
            if session.wants(privilege):
                if data is None:
                    data = format_message([("Event", event), ("Privilege", privilege), *headers])
                session.send(data)

    # ---- connection ---------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = AMISession(self, reader, writer)
        self.sessions.add(session)
        writer_task = asyncio.create_task(self._write_loop(session))
        session.send(BANNER)
        try:
            while not session.closed:
                message = await self._read_message(reader)
                if message is None:
                    break
                await self._dispatch(session, message)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.sessions.discard(session)
            session.out.put_nowait(None)
            await writer_task
            writer.close()

    async def _write_loop(self, session: AMISession) -> None:
        while True:
            data = await session.out.get()
            if data is None:
                break
            try:
                session.writer.write(data)
                await session.writer.drain()
            except ConnectionError:
                break
        # Closing here is what makes Logoff and a failed login end the connection.
        session.closed = True
        session.writer.close()

    @staticmethod
    async def _read_message(reader: asyncio.StreamReader) -> Optional[Headers]:
        headers: Headers = []
        while True:
            line = await reader.readline()
            if not line:
                return None
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            if not text:
                if headers:
                    return headers
                continue
            key, sep, value = text.partition(":")
            if sep:
                headers.append((key.strip(), value.strip()))

    # ---- actions ------------------------------------------------------------------------
    async def _dispatch(self, session: AMISession, headers: Headers) -> None:
        message = Message.parse(headers)
        action = message.get("action")
        reply = Reply(session, message.fields.get("actionid"))
        if not action:
            reply.error("Missing action in request")
            return
        registered = AMI_ACTIONS.get(action.lower())
        if session.user is None and (registered is None or not registered.before_login):
            reply.error("Permission denied")
            return
        if registered is None:
            reply.error(f"Invalid/unknown command: {action}. Use Action: ListCommands to show available commands.")
            return
        await registered.handler(self.pbx, reply, message)


@dataclass
class Message:
    """One action as received: its headers in order (repeated ones kept, as Originate's
    Variable), and the first value of each by lower-case name."""

    headers: Headers
    fields: dict[str, str]

    @classmethod
    def parse(cls, headers: Headers) -> "Message":
        fields: dict[str, str] = {}
        for key, value in headers:
            fields.setdefault(key.lower(), value)
        return cls(headers, fields)

    def get(self, name: str, default: str = "") -> str:
        """A header's first value by lower-case name."""
        return self.fields.get(name, default)

    def values(self, name: str) -> list[str]:
        """Every value of a repeated header, by lower-case name."""
        return [v for k, v in self.headers if k.lower() == name]


class Reply:
    """Answers one action on its session: echoes its ActionID where Asterisk puts it."""

    def __init__(self, session: AMISession, action_id: Optional[str]) -> None:
        self.session = session
        self.action_id = action_id

    def send(self, headers: Headers) -> None:
        # ActionID comes right after Response, as in Asterisk's replies.
        if self.action_id is not None:
            headers = [headers[0], ("ActionID", self.action_id), *headers[1:]]
        self.session.send(format_message(headers))

    def success(self, *headers: tuple[str, str]) -> None:
        self.send([("Response", "Success"), *headers])

    def error(self, message: str) -> None:
        self.send([("Response", "Error"), ("Message", message)])

    def list_start(self, message: str) -> None:
        self.send([("Response", "Success"), ("EventList", "start"), ("Message", message)])

    def list_event(self, event: str, headers: Headers, *, action_id_last: bool = False) -> None:
        aid = [("ActionID", self.action_id)] if self.action_id is not None else []
        if action_id_last:
            self.session.send(format_message([("Event", event), *headers, *aid]))
        else:
            self.session.send(format_message([("Event", event), *aid, *headers]))

    def list_complete(self, event: str, count: int, *extra: tuple[str, str]) -> None:
        aid = [("ActionID", self.action_id)] if self.action_id is not None else []
        self.session.send(format_message(
            [("Event", event), *aid, ("EventList", "Complete"), ("ListItems", str(count)), *extra]))

