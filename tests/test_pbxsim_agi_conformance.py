"""The simulated PBX's FastAGI client against the sessions recorded from a real Asterisk 22.10.1.

A scripted FastAGI server here plays the server side of sessions B, C, D and F of
``03-fastagi-sessions.txt`` (the same commands, in the same order) against a Simulator running
the configuration Asterisk ran (context ``agi-test``), and compares what the simulator answers
with what Asterisk answered: the environment block, every reply line (``endpos=`` numbers and
channel ids aside), where the ``HANGUP`` line comes, 511 after the hang-up, and whether the
socket stays open. The channels are originated and hung up over a raw AMI connection with the
very actions the recording harness sent (``03b-agi-ami-events.txt``).
"""
from __future__ import annotations

import asyncio
import re
import socket
from contextlib import asynccontextmanager
from typing import Optional

import pytest

from tests.agi_transcripts import TRANSCRIPT, Exchange, TranscriptSession, load_sessions
from tests.transcripts import TranscriptMessage, load_ami_transcript, transcript_path

if not TRANSCRIPT.is_file():
    pytest.skip(f"FastAGI transcript not found: {TRANSCRIPT}", allow_module_level=True)

from tests.test_pbxsim_ami_conformance import (  # noqa: E402  (skips the module too if /work/shared is missing)
    REFERENCE_CONFIG, RawAMI, assert_conforms, channel_shape, check_events, value)
from pbxsim.scenario import Scenario  # noqa: E402
from pbxsim.simulator import Simulator, SimulatorConfig  # noqa: E402

SESSIONS = load_sessions()
AGI_EVENTS = load_ami_transcript(transcript_path("03b"))

# demo-congrats (30.28 s) plays in 0.15 s. The timeouts the AGI server gives (GET DATA 3000,
# WAIT FOR DIGIT 500) are not scaled: they run in real time, as Asterisk runs them.
SPEED = 200.0
# The originated ";1" half runs Wait(<Data>), which the simulator scales by SPEED: the recording's
# 120 s would be 0.6 s here, less than a session lasts, and would hang up ";2" under it.
ORIGINATE_WAIT = "3600"
LINE_TIMEOUT = 5.0
# How long a socket that Asterisk leaves open is watched for an unexpected close or line.
STAYS_OPEN_FOR = 0.3
NOBODY_PORT = 4574   # session G: AGI(agi://127.0.0.1:4574/nobody), fixed in the reference dialplan


def recorded_action(action: str, channel_prefix: str) -> TranscriptMessage:
    """The AMI action the recording harness sent (03b) for ``channel_prefix``."""
    for message in AGI_EVENTS:
        if (message.direction == "out" and message.get("Action") == action
                and message.get("Channel", "").startswith(channel_prefix)):
            return message
    raise KeyError(f"no recorded {action} for {channel_prefix}")


def normalise(line: str) -> str:
    """A reply line without what differs between runs: endpos sample counts, channel sequence numbers."""
    line = re.sub(r"endpos=[1-9]\d*", "endpos=<samples>", line)
    return re.sub(r"-[0-9a-f]{8}(;[12])", r"-<seq>\1", line)


# --------------------------------------------------------------------------- the scripted server


class AGIConnection:
    """The AGI server's end of one FastAGI session: sends commands, reads Asterisk's lines."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def read_line(self, timeout: float = LINE_TIMEOUT) -> Optional[str]:
        """One line from Asterisk, without its LF; None at EOF."""
        raw = await asyncio.wait_for(self.reader.readline(), timeout)
        if not raw:
            return None
        assert raw.endswith(b"\n") and not raw.endswith(b"\r\n"), f"FastAGI lines end with a bare LF: {raw!r}"
        return raw[:-1].decode("utf-8")

    async def read_env(self) -> list[str]:
        lines = []
        while True:
            line = await self.read_line()
            assert line is not None, f"connection closed inside the environment block: {lines}"
            lines.append(line)
            if line == "":
                return lines

    async def send(self, command: str) -> None:
        self.writer.write(command.encode("utf-8") + b"\n")
        await self.writer.drain()

    async def expect_open(self) -> None:
        try:
            line = await self.read_line(STAYS_OPEN_FOR)
        except TimeoutError:
            return
        raise AssertionError(f"Asterisk leaves the socket open here; the simulator sent {line!r}"
                             if line is not None else "Asterisk leaves the socket open; the simulator closed it")

    async def expect_closed(self) -> None:
        line = await self.read_line()
        assert line is None, f"Asterisk closes the socket here; the simulator sent {line!r}"

    def close(self) -> None:
        self.writer.close()


class AGIServer:
    def __init__(self) -> None:
        self.connections: asyncio.Queue[AGIConnection] = asyncio.Queue()
        self.server: Optional[asyncio.base_events.Server] = None
        self.port = 0

    async def start(self) -> None:
        async def accept(reader, writer) -> None:
            self.connections.put_nowait(AGIConnection(reader, writer))
        self.server = await asyncio.start_server(accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def accept(self) -> AGIConnection:
        return await asyncio.wait_for(self.connections.get(), LINE_TIMEOUT)

    async def stop(self) -> None:
        self.server.close()
        while not self.connections.empty():
            self.connections.get_nowait().close()


@asynccontextmanager
async def agi_test_bed():
    """The simulator on the reference config, FASTAGI pointing at our scripted server, and a raw
    AMI connection that reads all events."""
    server = AGIServer()
    await server.start()
    sim = Simulator(SimulatorConfig(config_dir=REFERENCE_CONFIG, ami_port=0, speed=SPEED, auth_fail_delay=0.02),
                    Scenario(agents=0))
    sim.pbx.globals["FASTAGI"] = f"agi://127.0.0.1:{server.port}"
    await sim.start()
    ami = await RawAMI.connect(sim.ami_port)
    await ami.login("on")
    try:
        yield server, ami
        # Every event of the session (AGIExecStart/End, VarSet, NewCallerid, hang-ups...) has
        # the header names of a recorded one.
        check_events(ami.received)
    finally:
        ami.close()
        await server.stop()
        await sim.stop()


async def originate(ami: RawAMI, exten: str) -> tuple[str, str]:
    """Originate Local/<exten>@agi-test as the recording harness did; returns ";1" and ";2"."""
    recorded = recorded_action("Originate", f"Local/{exten}@agi-test")
    action = [(k, ORIGINATE_WAIT if k == "Data" else v) for k, v in recorded.headers]
    response, event = await ami.action(action, 2)
    assert value(response, "Response") == "Success", response
    assert value(event, "Event") == "OriginateResponse" and value(event, "Response") == "Success", event
    one = value(event, "Channel")
    return one, one[:-2] + ";2"


async def start_session(server: AGIServer, ami: RawAMI, letter: str, exten: str) -> tuple[AGIConnection, str, str]:
    """Originate the session's channel, accept its FastAGI connection and check the environment."""
    session = SESSIONS[letter]
    one, two = await originate(ami, exten)
    connection = await server.accept()
    env = await connection.read_env()
    assert_env(env, session, two)
    return connection, one, two


def assert_env(env: list[str], session: TranscriptSession, channel: str) -> None:
    recorded = session.env_lines
    keys = [line.partition(": ")[0] for line in env]
    recorded_keys = [line.partition(": ")[0] for line in recorded]
    assert keys == recorded_keys, (f"session {session.letter}: environment keys differ\n"
                                   f"  simulator: {keys}\n  Asterisk:  {recorded_keys}")
    script = session.env["agi_network_script"]
    shapes = {
        "agi_request": rf"agi://127\.0\.0\.1:\d+/{re.escape(script)}",
        "agi_channel": channel_shape(session.env["agi_channel"]),
        "agi_uniqueid": r"\d+\.\d+",
        "agi_threadid": r"\d+",
    }
    wrong = []
    for line, recorded_line in zip(env, recorded):
        key, _, got = line.partition(": ")
        want = recorded_line.partition(": ")[2]
        if key in shapes:
            if not re.fullmatch(shapes[key], got):
                wrong.append(f"{key}: {got!r} is not like {want!r}")
        elif got != want:
            wrong.append(f"{key}: simulator {got!r}, Asterisk {want!r}")
    assert not wrong, f"session {session.letter}: environment values differ:\n  " + "\n  ".join(wrong)
    assert env[3] == f"agi_channel: {channel}", (env[3], channel)


async def play_exchange(connection: AGIConnection, exchange: Exchange, letter: str, *,
                        while_running=None) -> None:
    """Send the recorded command and read as many lines as Asterisk answered; compare them.
    ``while_running``: a coroutine function run after sending (the AMI Hangup of C and D)."""
    await connection.send(exchange.command)
    if while_running is not None:
        await while_running()
    got = []
    for _ in exchange.replies:
        line = await connection.read_line()
        if line is None:
            break
        got.append(line)
    expected = [normalise(line) for line in exchange.replies]
    assert [normalise(line) for line in got] == expected, (
        f"session {letter}, {exchange.command!r}:\n  simulator: {got}\n  Asterisk:  {exchange.replies}")


async def hang_up_during(ami: RawAMI, exten: str, channel: str, command: str) -> None:
    """What the harness did in C and D: once the command runs, AMI Hangup of the AGI channel."""
    await ami.event("AGIExecStart", Channel=channel, Command=command)
    recorded = recorded_action("Hangup", f"Local/{exten}@agi-test")
    response, = await ami.action([(k, channel if k == "Channel" else v) for k, v in recorded.headers], 1)
    assert value(response, "Response") == "Success", response


async def assert_agistatus(ami: RawAMI, channel: str, recorded_channel_prefix: str) -> None:
    """The VarSet of AGISTATUS after the session is the one Asterisk sent (03b), ids aside."""
    got = await ami.event("VarSet", Channel=channel, Variable="AGISTATUS")
    recorded = next(m for m in AGI_EVENTS if m.event == "VarSet" and m.get("Variable") == "AGISTATUS"
                    and m.get("Channel", "").startswith(recorded_channel_prefix))
    # Our SET CALLERID / caller ids are those of the recording; the channel state fields too.
    assert_conforms(got, recorded, where=f"VarSet AGISTATUS on {channel}")


def assert_exec_results(ami: RawAMI, channel: str, exten: str) -> None:
    """The AGIExecEnd events of the session (read by now: they precede the channel's Hangup)
    say what Asterisk's said: the command, ResultCode and Result, in order (03b)."""
    def results(messages, channel_test):
        return [(value(m, "Command"), value(m, "ResultCode"), value(m, "Result")) for m in messages
                if value(m, "Event") == "AGIExecEnd" and channel_test(value(m, "Channel") or "")]
    got = results(ami.received, lambda name: name == channel)
    recorded = results([m.headers for m in AGI_EVENTS if m.direction == "in"],
                       lambda name: name.startswith(f"Local/{exten}@agi-test-"))
    assert got == recorded, "AGIExecEnd (Command, ResultCode, Result) differ\n  simulator: " + \
        "\n             ".join(map(str, got)) + "\n  Asterisk:  " + "\n             ".join(map(str, recorded))


HANGUP_EVENTS = ("HangupRequest", "SoftHangupRequest", "Hangup")


async def assert_hangup_sequence(ami: RawAMI, one: str, two: str, exten: str) -> None:
    """How the Local pair ends, as in 03b: which half gets which hang-up event, with which Cause,
    in which order (e.g. SoftHangupRequest ;2 32 for AGI HANGUP, then 16 when the dialplan ends,
    HangupRequest ;1 with ;2's cause, Hangup ;2, Hangup ;1)."""
    await ami.event("Hangup", Channel=one)
    def sequence(messages, halves):
        return [(value(m, "Event"), halves[value(m, "Channel")], value(m, "Cause")) for m in messages
                if value(m, "Event") in HANGUP_EVENTS and value(m, "Channel") in halves]
    got = sequence(ami.received, {one: ";1", two: ";2"})
    recorded_names = {m.get("Channel") for m in AGI_EVENTS
                      if m.get("Channel", "").startswith(f"Local/{exten}@agi-test-")}
    recorded = sequence([m.headers for m in AGI_EVENTS if m.direction == "in"],
                        {name: name[-2:] for name in recorded_names})
    # The two halves' Hangup events come last, in either order (threads in Asterisk: B has
    # ;1 first, F has ;2 first).
    def comparable(events):
        return events[:-2], sorted(events[-2:])
    assert [e[0] for e in recorded[-2:]] == ["Hangup", "Hangup"], recorded
    assert comparable(got) == comparable(recorded), (
        f"hang-up events differ\n  simulator: {got}\n  Asterisk:  {recorded}")


# --------------------------------------------------------------------------- the sessions


async def test_session_b_commands_errors_and_agi_hangup():
    """B: the broad command set, 510, 520, the HANGUP command, then HANGUP line and 511; the
    socket stays open until the server closes it."""
    session = SESSIONS["B"]
    async with agi_test_bed() as (server, ami):
        connection, one, two = await start_session(server, ami, "B", "100")
        for exchange in session.exchanges:
            await play_exchange(connection, exchange, "B")
        await connection.expect_open()
        connection.close()
        # A file that did not exist made a command fail on the live channel: AGISTATUS=FAILURE.
        await assert_agistatus(ami, two, "Local/100@agi-test")
        await ami.event("Hangup", Channel=two)
        assert_exec_results(ami, two, "100")
        await assert_hangup_sequence(ami, one, two, "100")


async def test_session_c_hangup_during_a_command_socket_left_open():
    session = SESSIONS["C"]
    assert not session.asterisk_closed
    async with agi_test_bed() as (server, ami):
        connection, one, two = await start_session(server, ami, "C", "102")
        for exchange in session.exchanges:
            running = None
            if exchange.command == "WAIT FOR DIGIT 30000":
                async def running(command=exchange.command):
                    await hang_up_during(ami, "102", two, command)
            await play_exchange(connection, exchange, "C", while_running=running)
        await connection.expect_open()
        connection.close()
        await assert_agistatus(ami, two, "Local/102@agi-test")
        await ami.event("Hangup", Channel=two)
        assert_exec_results(ami, two, "102")
        await assert_hangup_sequence(ami, one, two, "102")


async def test_session_d_agiexitonhangup_closes_the_socket():
    session = SESSIONS["D"]
    assert session.asterisk_closed
    async with agi_test_bed() as (server, ami):
        connection, one, two = await start_session(server, ami, "D", "105")
        exchanges = session.exchanges
        # Asterisk closed the socket after the lines answering STREAM FILE; the harness sent nothing more.
        last = next(i for i, e in enumerate(exchanges) if e.command.startswith("STREAM FILE"))
        for exchange in exchanges[:last]:
            running = None
            if exchange.command == "WAIT FOR DIGIT 30000":
                async def running(command=exchange.command):
                    await hang_up_during(ami, "105", two, command)
            await play_exchange(connection, exchange, "D", while_running=running)
        assert all(not e.replies for e in exchanges[last + 1:]), "nothing was answered after the close"
        # Let the simulator's lines and its close arrive before writing to a socket it may have
        # closed (a write there could reset the connection before the lines are read).
        await asyncio.sleep(0.05)
        await play_exchange(connection, exchanges[last], "D")
        await connection.expect_closed()
        await assert_agistatus(ami, two, "Local/105@agi-test")
        await ami.event("Hangup", Channel=two)
        assert_exec_results(ami, two, "105")
        await assert_hangup_sequence(ami, one, two, "105")


async def test_session_f_literal_sequence_with_agi_hangup():
    session = SESSIONS["F"]
    async with agi_test_bed() as (server, ami):
        connection, one, two = await start_session(server, ami, "F", "103")
        for exchange in session.exchanges:
            await play_exchange(connection, exchange, "F")
        connection.close()
        await assert_agistatus(ami, two, "Local/103@agi-test")
        # AGI HANGUP is a soft hang-up without a cause: Asterisk's Hangup says Cause 0.
        hangup = await ami.event("Hangup", Channel=two)
        recorded = next(m for m in AGI_EVENTS if m.event == "Hangup"
                        and m.get("Channel", "").startswith("Local/103@agi-test") and m.get("Channel").endswith(";2"))
        assert_conforms(hangup, recorded, where="Hangup after AGI HANGUP")
        assert_exec_results(ami, two, "103")
        await assert_hangup_sequence(ami, one, two, "103")


async def test_session_g_nobody_listening_gives_agistatus_failure():
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", NOBODY_PORT)) == 0:
            pytest.skip(f"something listens on 127.0.0.1:{NOBODY_PORT}, which session G needs closed")
    async with agi_test_bed() as (server, ami):
        one, two = await originate(ami, "104")
        noop = await ami.event("Newexten", Channel=two, Application="NoOp")
        recorded = next(m for m in AGI_EVENTS if m.event == "Newexten" and m.get("Application") == "NoOp"
                        and m.get("Channel", "").startswith("Local/104@agi-test"))
        assert value(noop, "AppData") == "AGISTATUS=FAILURE"
        assert_conforms(noop, recorded, where="NoOp after AGI with nobody listening")
        await assert_hangup_sequence(ami, one, two, "104")
        assert server.connections.empty()
