"""AMIClient against a small TCP server that replays what a real Asterisk 22 answered.

The banner and every reply come from 02-ami-actions.txt (ActionID swapped for the
client's); the event stream of the replay test is 01-ami-queue-call-lifecycle.txt.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
from collections.abc import Callable
from typing import Any, Optional

import pytest

from hotline.ami import (
    AMIActionError,
    AMIAuthError,
    AMIClient,
    AMIConnectionLost,
    AMIParser,
    AMIProtocolError,
    AMITimeout,
    Message,
)
from tests.transcripts import (
    TranscriptMessage,
    ami_wire_bytes,
    load_ami_transcript,
    received,
    require_transcripts,
    section,
    transcript_path,
)

require_transcripts()  # skips this module, with the reason, if the recordings are absent

T02 = load_ami_transcript(transcript_path("02"))
T01 = load_ami_transcript(transcript_path("01"))


def _replies(title: str) -> list[TranscriptMessage]:
    return received(section(T02, title))


BANNER = next(m for m in T02 if m.banner).text
LOGIN_OK = _replies("Login (success, Events: on)")  # Response: Success + FullyBooted
LOGIN_FAILED = _replies("Banner + Login (failure: wrong secret)")
LOGOFF = _replies("Logoff")
# Action name -> what Asterisk answered in the recording.
REPLIES: dict[str, list[TranscriptMessage]] = {
    "Ping": _replies("Ping"),
    "CoreShowChannels": _replies("CoreShowChannels (with channels)"),
    "Status": _replies("Status (all channels)"),
    "Originate": _replies("Originate (async, success): Local/200@agi-test, Application Wait 60"),
    "QueueAdd": _replies("QueueAdd (failure: already a member)"),
    "Command": _replies("Command (queue show test)"),
    "Hangup": _replies("Hangup (regex form: /^Local\\//)"),
    "Setvar": _replies("Setvar (channel var on Local/200@agi-test-00000003;2)"),
    "Getvar": _replies("Getvar (channel var TESTVAR on Local/200@agi-test-00000003;2)"),
}

USER = SECRET = "hotline"
Policy = Callable[[int, Message], str]  # (connection number, action) -> reply|ignore|close


def with_action_id(messages: list[TranscriptMessage], action_id: Optional[str]) -> bytes:
    """The recorded reply on the wire, carrying the client's ActionID."""
    fixed = [
        dataclasses.replace(m, headers=[(k, action_id if k == "ActionID" and action_id else v) for k, v in m.headers])
        for m in messages
    ]
    return ami_wire_bytes(fixed)


class FakeAsterisk:
    """AMI server replaying recorded replies; records every connection and action."""

    def __init__(
        self,
        *,
        policy: Optional[Policy] = None,
        refuse: Optional[Callable[[int], bool]] = None,
        after_login: bytes = b"",
        login_events: bool = True,
        auth_delay: float = 0.02,
    ) -> None:
        self.policy = policy or (lambda conn, msg: "reply")
        self.refuse = refuse or (lambda conn: False)
        self.after_login = after_login
        self.login_reply = LOGIN_OK if login_events else LOGIN_OK[:1]
        self.auth_delay = auth_delay
        self.accept_times: list[float] = []
        self.received: list[tuple[int, Message]] = []
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def __aenter__(self) -> "FakeAsterisk":
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for w in self._writers:
            w.close()
        await self._server.wait_closed()

    def actions(self, name: str) -> list[tuple[int, Message]]:
        return [(c, m) for c, m in self.received if m.get("Action") == name]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = len(self.accept_times)
        self.accept_times.append(asyncio.get_running_loop().time())
        self._writers.append(writer)
        try:
            if self.refuse(conn):
                return
            writer.write(BANNER.encode() + b"\r\n")
            parser = AMIParser(expect_banner=False)
            while data := await reader.read(65536):
                for msg in parser.feed(data):
                    self.received.append((conn, msg))
                    if not await self._answer(conn, msg, writer):
                        return
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _answer(self, conn: int, msg: Message, writer: asyncio.StreamWriter) -> bool:
        """Write the reply; False = close the connection."""
        what = self.policy(conn, msg)
        if what == "ignore":
            return True
        if what == "close":
            return False
        action, action_id = msg.get("Action"), msg.get("ActionID")
        if action == "Login":
            if msg.get("Username") == USER and msg.get("Secret") == SECRET:
                writer.write(with_action_id(self.login_reply, action_id) + self.after_login)
                return True
            await asyncio.sleep(self.auth_delay)  # Asterisk waits ~1 s, then closes
            writer.write(with_action_id(LOGIN_FAILED, action_id))
            await writer.drain()
            return False
        if action == "Logoff":
            writer.write(with_action_id(LOGOFF, action_id))
            await writer.drain()
            return False
        reply = REPLIES.get(str(action))
        if reply is None:
            writer.write(f"Response: Error\r\nActionID: {action_id}\r\nMessage: Invalid/unknown command\r\n\r\n".encode())
        else:
            writer.write(with_action_id(reply, action_id))
        return True


def client_for(server: FakeAsterisk, **options: Any) -> AMIClient:
    settings: dict[str, Any] = dict(
        action_timeout=0.5, ping_interval=None, ping_timeout=0.2, reconnect_min=0.01, reconnect_max=0.05
    )
    settings.update(options)
    secret = settings.pop("secret", SECRET)
    return AMIClient("127.0.0.1", server.port, USER, secret, **settings)


async def until(predicate: Callable[[], bool], timeout: float = 1.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def strip_action_id(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers if k != "ActionID"]


# -- login -----------------------------------------------------------------------------------
async def test_login_success() -> None:
    async with FakeAsterisk() as server:
        client = client_for(server)
        await client.connect()
        try:
            assert client.connected
            assert client.banner == "Asterisk Call Manager/11.0.0"
            ((_, login),) = server.actions("Login")
            assert login.headers[0] == ("Action", "Login")
            assert login["Username"] == USER and login["Secret"] == SECRET and login["Events"] == "on"
        finally:
            await client.close()
        assert not client.connected
        assert len(server.actions("Logoff")) == 1
        await asyncio.sleep(0.05)
        assert len(server.accept_times) == 1  # no reconnect after close()


async def test_login_events_off() -> None:
    async with FakeAsterisk() as server:
        async with client_for(server, events=False):
            pass
        assert server.actions("Login")[0][1]["Events"] == "off"


async def test_login_failure_raises_auth_error() -> None:
    async with FakeAsterisk() as server:
        client = client_for(server, secret="wrong")
        with pytest.raises(AMIAuthError) as info:
            await client.connect()
        assert info.value.message == "Authentication failed"
        assert info.value.response is not None
        assert info.value.response["ActionID"] == server.actions("Login")[0][1]["ActionID"]
        assert not client.connected
        await asyncio.sleep(0.05)
        assert len(server.accept_times) == 1  # a refused first login is not retried
        await client.close()


async def test_connect_refused_is_an_os_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = AMIClient("127.0.0.1", port, USER, SECRET, action_timeout=0.5)
    with pytest.raises(OSError):
        await client.connect()
    await client.close()


async def test_connect_timeout_when_login_is_never_answered() -> None:
    async with FakeAsterisk(policy=lambda conn, msg: "ignore") as server:
        client = client_for(server)
        with pytest.raises(AMITimeout) as info:
            await client.connect(timeout=0.05)
        assert isinstance(info.value, OSError)  # TimeoutError is an OSError
        await client.close()


# -- actions ---------------------------------------------------------------------------------
async def test_action_id_is_added_and_echoed() -> None:
    async with FakeAsterisk() as server, client_for(server) as client:
        first = await client.send_action({"Action": "Ping"})
        second = await client.send_action({"Action": "Ping"})
        sent = [m for _, m in server.actions("Ping")]
        assert [m["ActionID"] for m in sent] == [first["ActionID"], second["ActionID"]]
        assert first["ActionID"] != second["ActionID"]
        assert first["Response"] == "Success" and first["Ping"] == "Pong"
        own = await client.send_action([("Action", "Ping"), ("ActionID", "mine-1")])
        assert own["ActionID"] == "mine-1"


async def test_action_error_reply() -> None:
    async with FakeAsterisk() as server, client_for(server) as client:
        with pytest.raises(AMIActionError) as info:
            await client.send_action({"Action": "QueueAdd", "Queue": "test", "Interface": "PJSIP/1002"})
        assert info.value.message == "Unable to add interface: Already there"
        assert info.value.response is not None and info.value.response["Response"] == "Error"
        assert client.connected


async def test_command_output_is_kept_whole() -> None:
    async with FakeAsterisk() as server, client_for(server) as client:
        reply = await client.send_action({"Action": "Command", "Command": "queue show test"})
        assert len(reply.getall("Output")) == 6
        assert reply.getall("Output")[0].startswith("test has 0 calls")


async def test_values_cannot_inject_a_second_action() -> None:
    async with FakeAsterisk() as server, client_for(server) as client:
        evil = 'x"\r\n\r\nAction: Hangup\r\nChannel: PJSIP/1001-00000001\r\n\r\n'
        await client.send_action({"Action": "Setvar", "Variable": "CALLERID(name)", "Value": evil})
        await client.send_action({"Action": "Ping"})  # the server has read everything before it
        assert [m["Action"] for _, m in server.received] == ["Login", "Setvar", "Ping"]
        assert server.actions("Setvar")[0][1]["Value"] == evil.replace("\r", " ").replace("\n", " ")
        with pytest.raises(AMIProtocolError):
            await client.send_action({"Action": "Ping", "Bad\r\nName": "x"})


async def test_send_when_not_connected() -> None:
    client = AMIClient("127.0.0.1", 1, USER, SECRET)
    with pytest.raises(AMIConnectionLost):
        await client.send_action({"Action": "Ping"})


# -- list actions ----------------------------------------------------------------------------
async def test_list_action_core_show_channels() -> None:
    async with FakeAsterisk() as server:
        client = client_for(server)
        seen: list[Message] = []
        client.on_event("*", seen.append)
        await client.connect()
        await until(lambda: len(seen) == 1)  # FullyBooted after login
        response, events = await client.send_list_action({"Action": "CoreShowChannels"})
        action_id = response["ActionID"]
        assert response["EventList"] == "start"
        recorded = REPLIES["CoreShowChannels"]
        assert [e.headers for e in events] == [
            [(k, action_id if k == "ActionID" else v) for k, v in t.headers] for t in recorded[1:]
        ]
        assert [e["Event"] for e in events] == ["CoreShowChannel", "CoreShowChannel", "CoreShowChannelsComplete"]
        assert events[-1]["ListItems"] == "2"
        await client.send_action({"Action": "Ping"})
        assert [m.event for m in seen] == ["FullyBooted"]  # list events bypass the handlers
        await client.close()


async def test_list_action_status_and_empty_list() -> None:
    async with FakeAsterisk() as server, client_for(server) as client:
        _, events = await client.send_list_action({"Action": "Status"})
        assert [e["Event"] for e in events] == ["Status", "Status", "StatusComplete"]
        response, events = await client.send_list_action({"Action": "Hangup", "Channel": "/^Local\\//"})
        assert response["Message"] == "Channels hung up will follow"
        assert [strip_action_id(e.headers) for e in events] == [
            [("Event", "ChannelsHungupListComplete"), ("EventList", "Complete"), ("ListItems", "0")]
        ]


async def test_list_action_without_list_and_with_error() -> None:
    async with FakeAsterisk() as server, client_for(server) as client:
        response, events = await client.send_list_action({"Action": "Ping"})
        assert response["Ping"] == "Pong" and events == []
        with pytest.raises(AMIActionError):
            await client.send_list_action({"Action": "QueueAdd", "Queue": "test", "Interface": "PJSIP/1002"})


# -- timeouts and connection loss ------------------------------------------------------------
async def test_action_timeout_leaves_the_client_usable() -> None:
    def policy(conn: int, msg: Message) -> str:
        return "ignore" if msg.get("Action") == "Getvar" else "reply"

    async with FakeAsterisk(policy=policy) as server, client_for(server) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(AMITimeout):
            await client.send_action({"Action": "Getvar", "Variable": "X"}, timeout=0.05)
        assert 0.04 <= loop.time() - started < 0.5
        with pytest.raises(AMITimeout):
            await client.send_list_action({"Action": "Getvar", "Variable": "X"}, timeout=0.02)
        assert (await client.send_action({"Action": "Ping"}))["Ping"] == "Pong"
        assert client.connected
        assert len(server.accept_times) == 1


async def test_lost_connection_fails_the_pending_originate_which_is_never_resent() -> None:
    def policy(conn: int, msg: Message) -> str:
        return "close" if conn == 0 and msg.get("Action") == "Originate" else "reply"

    async with FakeAsterisk(policy=policy) as server:
        client = client_for(server)
        logins: list[int] = []
        client.on_connected(lambda: logins.append(len(server.accept_times)))
        await client.connect()
        try:
            assert logins == [1]
            with pytest.raises(AMIConnectionLost):
                await client.send_action(
                    {"Action": "Originate", "Channel": "Local/200@agi-test", "Application": "Wait",
                     "Data": "60", "Async": "true"}
                )
            await until(lambda: len(logins) == 2)  # reconnected and logged in again
            assert client.connected
            # TCP keeps order: a re-sent Originate would reach the server before this Ping.
            await client.send_action({"Action": "Ping"})
            assert [conn for conn, _ in server.actions("Originate")] == [0]
            assert [conn for conn, _ in server.actions("Login")] == [0, 1]
            # The new connection works for new actions, including an Originate.
            reply = await client.send_action({"Action": "Originate", "Channel": "Local/200@agi-test", "Async": "true"})
            assert reply["Message"] == "Originate successfully queued"
        finally:
            await client.close()


async def test_reconnect_backoff_grows() -> None:
    # Connection 0 works and is dropped; 1-4 are closed at once; 5 works again.
    def policy(conn: int, msg: Message) -> str:
        return "close" if conn == 0 and msg.get("Action") == "Ping" else "reply"

    async with FakeAsterisk(policy=policy, refuse=lambda conn: 1 <= conn <= 4) as server:
        client = client_for(server, reconnect_min=0.01, reconnect_max=1.0, jitter=0.0)
        logins: list[float] = []
        client.on_connected(lambda: logins.append(1))
        await client.connect()
        try:
            with pytest.raises(AMIConnectionLost):
                await client.send_action({"Action": "Ping"})
            await until(lambda: len(logins) == 2, timeout=2.0)
        finally:
            await client.close()
        times = server.accept_times
        assert len(times) == 6
        gaps = [b - a for a, b in zip(times[1:], times[2:])]  # between failed attempts
        nominal = [0.02, 0.04, 0.08, 0.16]  # reconnect_min doubling, no jitter
        for gap, expected in zip(gaps, nominal):
            assert expected * 0.9 <= gap < expected + 0.05, (gaps, nominal)
        assert all(b > 1.4 * a for a, b in zip(gaps, gaps[1:])), gaps


def test_backoff_delay_bounds_and_jitter() -> None:
    client = AMIClient("127.0.0.1", 1, USER, SECRET, reconnect_min=0.5, reconnect_max=30.0)
    for attempt in range(80):
        for _ in range(20):
            assert 0.5 <= client.backoff_delay(attempt) <= 30.0
    late = {client.backoff_delay(20) for _ in range(50)}
    assert len(late) > 1 and min(late) >= 15.0  # jittered within [max/2, max]
    fixed = AMIClient("127.0.0.1", 1, USER, SECRET, reconnect_min=0.5, reconnect_max=30.0, jitter=0.0)
    assert [fixed.backoff_delay(a) for a in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    with pytest.raises(ValueError):
        AMIClient("127.0.0.1", 1, USER, SECRET, reconnect_min=2.0, reconnect_max=1.0)


async def test_half_open_connection_is_detected_by_ping() -> None:
    # After the first login the server goes silent but keeps the socket open.
    def policy(conn: int, msg: Message) -> str:
        return "ignore" if conn == 0 and msg.get("Action") != "Login" else "reply"

    async with FakeAsterisk(policy=policy, login_events=False) as server:
        client = client_for(server, ping_interval=0.05, ping_timeout=0.05)
        logins: list[int] = []

        async def reconcile() -> None:  # async on_connected callbacks are supported
            logins.append(len(server.accept_times))

        client.on_connected(reconcile)
        await client.connect()
        try:
            await until(lambda: len(logins) == 2)
            assert [conn for conn, _ in server.actions("Ping")][:1] == [0]
            assert len(server.accept_times) == 2
            assert client.connected
            assert (await client.send_action({"Action": "Ping"}))["Ping"] == "Pong"
        finally:
            await client.close()


async def test_keepalive_ping_only_when_the_line_is_idle() -> None:
    async with FakeAsterisk(login_events=False) as server:
        client = client_for(server, ping_interval=0.1, ping_timeout=0.1)
        await client.connect()
        try:
            for _ in range(6):  # replies keep arriving more often than ping_interval
                await client.send_action({"Action": "Getvar", "Variable": "TESTVAR"})
                await asyncio.sleep(0.04)
            assert server.actions("Ping") == []
            await until(lambda: len(server.actions("Ping")) >= 1)  # idle -> keepalive ping
            await asyncio.sleep(0.02)
            assert len(server.accept_times) == 1 and client.connected  # answered: no reconnect
        finally:
            await client.close()


# -- events ----------------------------------------------------------------------------------
def _event(*headers: tuple[str, str]) -> bytes:
    return "".join(f"{k}: {v}\r\n" for k, v in headers).encode() + b"\r\n"


async def test_events_by_name_and_star(caplog: pytest.LogCaptureFixture) -> None:
    stream = (
        _event(("Event", "Newchannel"), ("Uniqueid", "1.1"))
        + _event(("Event", "Hangup"), ("Uniqueid", "1.1"), ("Cause", "16"))
        + _event(("Event", "UserEvent"), ("UserEvent", "HotlineWaiting"), ("Queue", "general"))
    )
    async with FakeAsterisk(after_login=stream, login_events=False) as server:
        client = client_for(server)
        hangups: list[str] = []
        any_events: list[str] = []
        async_seen: list[str] = []

        def broken(msg: Message) -> None:
            raise RuntimeError("handler bug")

        async def slow(msg: Message) -> None:
            await asyncio.sleep(0)
            async_seen.append(msg["Queue"])

        async def broken_async(msg: Message) -> None:
            raise RuntimeError("async handler bug")

        client.on_event("Hangup", broken)  # must not stop the others
        client.on_event("Hangup", lambda msg: hangups.append(msg["Cause"]))
        client.on_event("userevent", slow)  # names are case-insensitive
        client.on_event("UserEvent", broken_async)
        client.on_event("*", lambda msg: any_events.append(msg.event or ""))
        with caplog.at_level(logging.ERROR, logger="hotline.ami.client"):
            await client.connect()
            try:
                await until(lambda: len(any_events) == 3 and async_seen == ["general"])
                await asyncio.sleep(0.01)  # let the failing task finish
            finally:
                await client.close()
        assert hangups == ["16"]
        assert any_events == ["Newchannel", "Hangup", "UserEvent"]
        assert "handler bug" in caplog.text and "async handler bug" in caplog.text


async def test_remove_event_handler() -> None:
    client = AMIClient("127.0.0.1", 1, USER, SECRET)
    cb = client.on_event("Hangup", lambda msg: None)
    client.remove_event_handler("hangup", cb)
    client.remove_event_handler("*", cb)
    assert client._handlers == {} and client._any == ()


async def test_originate_response_event_reaches_handlers() -> None:
    async with FakeAsterisk() as server, client_for(server) as client:
        results: list[Message] = []
        client.on_event("OriginateResponse", results.append)
        reply = await client.send_action({"Action": "Originate", "Channel": "Local/200@agi-test", "Async": "true"})
        await until(lambda: len(results) == 1)
        assert results[0]["ActionID"] == reply["ActionID"]
        assert results[0]["Reason"] == "4"


async def test_replay_of_transcript_01_delivers_every_event_in_order() -> None:
    events = [m for m in received(T01) if m.is_event]
    assert len(events) == 195
    stream = ami_wire_bytes(events)
    async with FakeAsterisk(after_login=stream, login_events=False) as server:
        client = client_for(server)
        got: list[Message] = []
        client.on_event("*", got.append)
        hangups: list[str] = []
        client.on_event("Hangup", lambda msg: hangups.append(msg["Channel"]))
        await client.connect()
        try:
            await until(lambda: len(got) == len(events))
        finally:
            await client.close()
        assert [m.headers for m in got] == [t.headers for t in events]
        assert hangups == [t.get("Channel") for t in events if t.event == "Hangup"]
