"""ivr.fastagi over real TCP, against a fake Asterisk replaying the recorded sessions."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ivr.agi import (
    AGIHangup,
    AGIInvalidCommand,
    AGITimeout,
    AGIUsageError,
    parse_response,
)
from ivr.fastagi import AGISession, FastAGIServer
from tests.agi_transcripts import (
    Exchange,
    FakeAsterisk,
    TranscriptSession,
    agi_verbs,
    asterisk_parse_args,
    make_env,
    require_sessions,
    split_verb,
)


@contextlib.asynccontextmanager
async def serving(handlers: dict[str, Any], **options: Any) -> AsyncIterator[FastAGIServer]:
    server = FastAGIServer(handlers, "127.0.0.1", 0, **options)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def wait_until(condition: Callable[[], bool], timeout: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def nothing(session: AGISession) -> None:
    """A handler that must not be reached."""
    raise AssertionError("handler must not run")


@pytest.fixture(scope="module")
def sessions() -> dict[str, TranscriptSession]:
    return require_sessions()


# --------------------------------------------------------------------------- recorded sessions


async def test_session_a_replayed_byte_for_byte(sessions, caplog) -> None:
    """The lifecycle call: the caller keys 1 during GET DATA; the server then closes."""
    recorded = sessions["A"]
    seen: dict[str, Any] = {}

    async def ivr(session: AGISession) -> None:
        seen["env"] = session.env
        seen["args"] = session.args
        seen["ids"] = (session.uniqueid, session.channel, session.callerid)
        await session.answer()
        reply = await session.stream_file("demo-congrats")
        seen["stream"] = (reply.result, reply.endpos)
        seen["digits"] = await session.get_data("beep", 3000, 1)
        await session.set_variable("FOO", "bar")
        seen["foo"] = await session.get_variable("FOO")
        seen["hung_up"] = session.hung_up

    caplog.set_level(logging.INFO, logger="ivr.fastagi")
    async with serving({"ivr": ivr}) as server:
        fake = await FakeAsterisk.connect(server.port, recorded.env_lines)
        await fake.play((x.command, x.replies) for x in recorded.exchanges)
        await fake.expect_closed()
        fake.close()
    assert fake.received == [x.command for x in recorded.exchanges]
    assert seen["env"] == {name[4:]: value for name, value in recorded.env.items()}
    assert seen["env"]["accountcode"] == ""
    assert seen["args"] == ["lang=en"]
    assert seen["ids"] == ("1795319058.44", "PJSIP/trunk-00000008", "+15551230001")
    assert seen["stream"] == ("0", 242214)
    assert seen["digits"] == "1"
    assert seen["foo"] == "bar"
    assert seen["hung_up"] is False
    assert any("[1795319058.44]" in r.getMessage() for r in caplog.records)


async def test_session_e_caller_hangs_up_during_the_menu(sessions) -> None:
    """BYE during STREAM FILE: -1 with endpos, then HANGUP line and 511; variables still work."""
    recorded = sessions["E"]
    seen: dict[str, Any] = {}

    async def ivr(session: AGISession) -> None:
        await session.answer()
        reply = await session.stream_file("demo-congrats")
        seen["stream"] = (reply.result, reply.endpos)
        try:
            await session.get_data("beep", 3000, 1)
        except AGIHangup as exc:
            seen["hangup"] = (session.hung_up, exc.response.code if exc.response else None)
        await session.set_variable("FOO", "bar")  # SET/GET VARIABLE run on dead channels
        seen["foo"] = await session.get_variable("FOO")

    async with serving({"ivr": ivr}) as server:
        fake = await FakeAsterisk.connect(server.port, recorded.env_lines)
        await fake.play((x.command, x.replies) for x in recorded.exchanges)
        await fake.expect_closed()
        fake.close()
    assert fake.received == [x.command for x in recorded.exchanges]
    assert seen == {"stream": ("-1", 44160), "hangup": (True, 511), "foo": "bar"}


def _expected_outcome(exchange: Exchange) -> tuple[str, Any]:
    status = [line for line in exchange.replies if line != "HANGUP"]
    if not status:
        return ("hangup", None)  # Asterisk closed the socket (AGIEXITONHANGUP=yes)
    first = parse_response(status[0])
    if first.code == 200:
        return ("ok", status[0])
    if first.code == 511:
        return ("hangup", None)
    if first.code == 510:
        return ("invalid", None)
    assert first.code == 520
    return ("usage", "\n".join([first.text, *status[1:-1], status[-1][4:]]))


@pytest.mark.parametrize("letter", list("ABCDEF"))
async def test_recorded_session_replayed_through_command(sessions, letter: str) -> None:
    """Every command of every session, sent through AGISession.command, gets the recorded outcome."""
    recorded = sessions[letter]
    verbs = agi_verbs()
    outcomes: list[tuple[str, Any]] = []
    final: dict[str, bool] = {}

    async def handler(session: AGISession) -> None:
        for exchange in recorded.exchanges:
            verb, args = split_verb(asterisk_parse_args(exchange.command), verbs)
            try:
                reply = await session.command(verb, *args)
                outcomes.append(("ok", reply.line))
            except AGIInvalidCommand:
                outcomes.append(("invalid", None))
            except AGIUsageError as exc:
                outcomes.append(("usage", exc.usage))
            except AGIHangup:
                outcomes.append(("hangup", None))
        final["hung_up"] = session.hung_up

    script = recorded.env["agi_network_script"]
    async with serving({script: handler}) as server:
        fake = await FakeAsterisk.connect(server.port, recorded.env_lines)
        # Same words for Asterisk; the recorder quoted a few words that need no quotes.
        await fake.play(((x.command, x.replies) for x in recorded.exchanges), exact=False)
        if recorded.asterisk_closed:
            fake.close()
        else:
            await fake.expect_closed()
            fake.close()
        await server.wait_idle()
    assert outcomes == [_expected_outcome(x) for x in recorded.exchanges]
    saw_hangup = any(
        line == "HANGUP" or line.startswith("511") for x in recorded.exchanges for line in x.replies
    )
    assert final["hung_up"] is (saw_hangup or recorded.asterisk_closed)


# --------------------------------------------------------------------------- connections that say nothing


async def test_silent_connection_is_closed_after_header_timeout() -> None:
    async with serving({"ivr": nothing}, header_timeout=0.2) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        await wait_until(lambda: server.active_sessions == 1)
        started, cpu = time.monotonic(), time.process_time()
        data = await asyncio.wait_for(reader.read(), 2.0)
        wall, cpu = time.monotonic() - started, time.process_time() - cpu
        writer.close()
        assert data == b""
        assert 0.1 <= wall < 1.0
        assert cpu < 0.5 * wall, f"busy loop? {cpu:.3f}s CPU in {wall:.3f}s"
        await wait_until(lambda: server.active_sessions == 0)


@pytest.mark.parametrize(
    "sent",
    [
        b"",
        b"agi_network: yes\nagi_network_script: ivr\n",
        b"agi_network: yes\nagi_network_scr",  # EOF in the middle of a line
    ],
)
async def test_early_eof_in_the_environment_ends_the_session(sent: bytes) -> None:
    # The header timeout is long: the session must end because of EOF, at once and without spinning.
    async with serving({"ivr": nothing}, header_timeout=5.0) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(sent)
        await writer.drain()
        started, cpu = time.monotonic(), time.process_time()
        writer.write_eof()
        data = await asyncio.wait_for(reader.read(), 1.0)
        writer.close()
        assert data == b""
        await wait_until(lambda: server.active_sessions == 0, timeout=0.5)
        assert time.process_time() - cpu < 0.25 + 0.5 * (time.monotonic() - started)


async def test_peer_vanishing_mid_environment_frees_the_session() -> None:
    async with serving({"ivr": nothing}, header_timeout=5.0) as server:
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"agi_network: yes\n")
        await writer.drain()
        await wait_until(lambda: server.active_sessions == 1)
        writer.transport.abort()  # RST, no goodbye
        await wait_until(lambda: server.active_sessions == 0, timeout=0.5)


async def test_non_agi_client_is_closed_without_reply() -> None:
    async with serving({"ivr": nothing}) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 1.0) == b""
        writer.close()


async def test_unknown_script_is_closed_without_command() -> None:
    async with serving({"ivr": nothing}) as server:
        fake = await FakeAsterisk.connect(server.port, make_env("nosuchscript"))
        await fake.expect_closed(timeout=1.0)
        fake.close()
        assert fake.received == []


# --------------------------------------------------------------------------- untrusted values


@pytest.mark.parametrize(
    "callerid",
    [
        '"Evil" <5550123>',
        "5550123\\",
        'x" ANSWER "y',
        '\\" EXEC System "touch /tmp/x',
        "a\tb c",
        "$(rm -rf /); EXEC System x",
        "",
    ],
)
async def test_hostile_caller_id_is_always_one_quoted_argument(callerid: str) -> None:
    async def ivr(session: AGISession) -> None:
        await session.set_variable("CALLER", session.callerid)
        await session.verbose(f"call from {session.callerid}")
        await session.stream_file(session.callerid)

    async with serving({"ivr": ivr}) as server:
        fake = await FakeAsterisk.connect(server.port, make_env(callerid=callerid))
        lines = []
        for _ in range(3):
            line = await fake.read_command()
            assert line is not None
            lines.append(line)
            await fake.send(["200 result=1"])
        await fake.expect_closed()
        fake.close()
    assert [asterisk_parse_args(line) for line in lines] == [
        ["SET", "VARIABLE", "CALLER", callerid],
        ["VERBOSE", f"call from {callerid}", "1"],
        ["STREAM", "FILE", callerid, ""],
    ]


# --------------------------------------------------------------------------- handlers


def _sync_handler(session: AGISession) -> None:
    pass


async def _async_handler(session: AGISession) -> None:
    pass


class _SyncCallable:
    def __call__(self, session: AGISession) -> None:
        pass


class _AsyncCallable:
    async def __call__(self, session: AGISession) -> None:
        pass


@pytest.mark.parametrize(
    "handler",
    [lambda session: None, _sync_handler, functools.partial(_sync_handler), _SyncCallable(), "ivr", None],
)
def test_non_async_handlers_are_rejected(handler: Any) -> None:
    with pytest.raises(TypeError, match="must be an async function"):
        FastAGIServer({"ivr": handler})


def test_async_handlers_are_accepted() -> None:
    FastAGIServer(
        {
            "a": _async_handler,
            "b": functools.partial(_async_handler),
            "c": _AsyncCallable(),
        }
    )
    with pytest.raises(TypeError):
        FastAGIServer({"": _async_handler})


async def test_failing_handler_costs_one_call_only() -> None:
    async def broken(session: AGISession) -> None:
        await session.answer()
        raise RuntimeError("bug")

    async with serving({"ivr": broken}) as server:
        for _ in range(2):
            fake = await FakeAsterisk.connect(server.port, make_env())
            await fake.play([("ANSWER", ["200 result=0"])])
            await fake.expect_closed()
            fake.close()


async def test_command_timeout_closes_the_session() -> None:
    seen: list[str] = []

    async def ivr(session: AGISession) -> None:
        try:
            await session.answer()
        except AGITimeout:
            seen.append("timeout")
        try:
            await session.noop()
        except AGIHangup:  # the connection is gone: nothing more can be said
            seen.append("closed")

    async with serving({"ivr": ivr}, command_timeout=0.1) as server:
        fake = await FakeAsterisk.connect(server.port, make_env())
        assert await fake.read_command() == "ANSWER"
        await fake.expect_closed(timeout=1.0)
        fake.close()
        await server.wait_idle()
    assert seen == ["timeout", "closed"]


async def test_eof_while_waiting_for_a_reply_is_a_hangup() -> None:
    seen: list[Any] = []

    async def ivr(session: AGISession) -> None:
        try:
            await session.get_data("hotline/main-menu", 5000, 1)
        except AGIHangup:
            seen.append((session.hung_up, session.closed))

    async with serving({"ivr": ivr}) as server:
        fake = await FakeAsterisk.connect(server.port, make_env())
        assert await fake.read_command() == "GET DATA hotline/main-menu 5000 1"
        await fake.send(["HANGUP", "HANGUP"])  # AGIEXITONHANGUP=yes, as in session D
        fake.close()
        await server.wait_idle()
    assert seen == [(True, True)]


# --------------------------------------------------------------------------- load and lifecycle


async def _short_session(port: int, index: int) -> None:
    fake = await FakeAsterisk.connect(port, make_env(uniqueid=f"1700000000.{index}"))
    await fake.play(
        [
            ("ANSWER", ["200 result=0"]),
            ("GET VARIABLE N", [f"200 result=1 ({index})"]),
            (f"SET VARIABLE ECHO {index}", ["200 result=1"]),
        ]
    )
    await fake.expect_closed()
    fake.close()


async def _echo(session: AGISession) -> None:
    await session.answer()
    value = await session.get_variable("N")
    await session.set_variable("ECHO", value)


async def test_many_concurrent_sessions_all_complete() -> None:
    async with serving({"ivr": _echo}) as server:
        await asyncio.wait_for(asyncio.gather(*(_short_session(server.port, i) for i in range(200))), 5.0)
        await server.wait_idle()
        assert server.active_sessions == 0


def test_runs_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> None:
        async with serving({"ivr": _echo}) as server:
            await asyncio.gather(*(_short_session(server.port, i) for i in range(20)))

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


async def test_sessions_over_max_are_refused() -> None:
    release = asyncio.Event()
    started = 0

    async def ivr(session: AGISession) -> None:
        nonlocal started
        started += 1
        await release.wait()

    async with serving({"ivr": ivr}, max_sessions=2) as server:
        held = [await FakeAsterisk.connect(server.port, make_env()) for _ in range(2)]
        await wait_until(lambda: started == 2)
        # Refused at once: the server may close before Asterisk's environment arrives.
        extra = await FakeAsterisk.connect(server.port)
        with contextlib.suppress(ConnectionResetError):
            await extra.expect_closed(timeout=1.0)
        extra.close()
        release.set()
        for fake in held:
            await fake.expect_closed()
            fake.close()
    assert started == 2


async def test_stop_cancels_running_sessions() -> None:
    cancelled = asyncio.Event()

    async def ivr(session: AGISession) -> None:
        try:
            await session.get_data("hotline/main-menu", 5000, 1)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    server = FastAGIServer({"ivr": ivr}, "127.0.0.1", 0)
    await server.start()
    port = server.port
    assert port != 0 and server.sockets
    fake = await FakeAsterisk.connect(port, make_env())
    assert await fake.read_command() == "GET DATA hotline/main-menu 5000 1"
    await asyncio.wait_for(server.stop(), 1.0)
    assert cancelled.is_set()
    await fake.expect_closed(timeout=1.0)
    fake.close()
    assert server.active_sessions == 0 and server.sockets == ()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
