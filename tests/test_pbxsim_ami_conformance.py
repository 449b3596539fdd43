"""The simulated PBX's AMI against the recordings of a real Asterisk 22.10.1.

Part 1 replays sections of ``02-ami-actions.txt`` over a raw TCP connection to a Simulator
running the configuration that Asterisk ran (``config-reference``) and compares every reply and
list event with the recorded one: the header names in order, and the values exactly, except
the fields that differ from run to run (ids, clocks, the ``-%08x`` suffix of channel names),
which must only have the recorded shape.

Part 2 puts one call through our own dialplan, IVR and ACD (as ``test_call_end_to_end`` does),
records the raw event stream on a separate connection and checks every event against the same
event type in ``01-ami-queue-call-lifecycle.txt`` and ``03b-agi-ami-events.txt``, and the order
of a call's events against the order seen in transcript 01.

The reader here is deliberately tiny and independent of ``hotline.ami`` so that bytes are checked.
"""
from __future__ import annotations

import asyncio
import functools
import hashlib
import re
from collections.abc import Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Optional, Union

import pytest

from tests.transcripts import TRANSCRIPTS, TranscriptMessage, load_ami_transcript, section, transcript_path

ASTERISK_SHARED = TRANSCRIPTS.parent
REFERENCE_CONFIG = ASTERISK_SHARED / "config-reference"
EVENT_DOCS = ASTERISK_SHARED / "reference" / "ami-event-docs.txt"

if not TRANSCRIPTS.is_dir() or not REFERENCE_CONFIG.is_dir():
    pytest.skip(f"recorded Asterisk transcripts or config not found under {ASTERISK_SHARED} "
                "(they are kept in pbxsim/recorded)", allow_module_level=True)

from pbxsim.scenario import Scenario  # noqa: E402
from pbxsim.simulator import Simulator, SimulatorConfig  # noqa: E402

Headers = list[tuple[str, str]]

# Answer()'s 0.5 s media wait takes 25 ms; Wait(60) in agi-test,200 lasts 3 s: longer than a test.
SPEED = 20.0
TIMEOUT = 2.0

ACTIONS = load_ami_transcript(transcript_path("02"))
FULLSTREAM = load_ami_transcript(transcript_path("02b"))
LOGIN_FAILURE_STREAM = load_ami_transcript(transcript_path("02c"))

# The channel names the recording's sections refer to.
PARKED_1 = "Local/200@agi-test-00000003;1"
PARKED_2 = "Local/200@agi-test-00000003;2"
SECOND_1 = "Local/200@agi-test-00000004;1"
SECOND_2 = "Local/200@agi-test-00000004;2"


# --------------------------------------------------------------------------- raw AMI reader


def value(headers: Headers, name: str, default: Optional[str] = None) -> Optional[str]:
    for key, val in headers:
        if key == name:
            return val
    return default


class RawAMI:
    """A bare AMI connection: CRLF-checked lines, messages as ordered (name, value) lists."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, banner: str) -> None:
        self.reader, self.writer, self.banner = reader, writer, banner
        self.received: list[Headers] = []   # every message, in arrival order
        self.backlog: list[Headers] = []    # read while waiting for something else, not yet taken
        self._sync = 0

    @classmethod
    async def connect(cls, port: int) -> "RawAMI":
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        line = await asyncio.wait_for(reader.readline(), TIMEOUT)
        assert line.endswith(b"\r\n"), f"banner not ending with CRLF: {line!r}"
        return cls(reader, writer, line[:-2].decode("utf-8"))

    async def send(self, headers: Iterable[tuple[str, str]]) -> None:
        self.writer.write(("".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n").encode("utf-8"))
        await self.writer.drain()

    async def read(self, timeout: Optional[float] = TIMEOUT) -> Optional[Headers]:
        """The next message from the wire (None when Asterisk closed the connection)."""
        headers: Headers = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), timeout)
            if not line:
                assert not headers, f"connection closed in the middle of a message: {headers}"
                return None
            assert line.endswith(b"\r\n"), f"AMI line not ending with CRLF: {line!r}"
            text = line[:-2].decode("utf-8")
            if not text:
                assert headers, "an empty line outside a message"
                self.received.append(headers)
                return headers
            name, sep, val = text.partition(": ")
            assert sep, f"not a 'Name: value' line: {text!r}"
            headers.append((name, val))

    async def next(self, predicate: Callable[[Headers], bool], timeout: float = TIMEOUT,
                   what: str = "a message") -> Headers:
        """The first message (backlog first) that satisfies ``predicate``; others go to the backlog."""
        for i, msg in enumerate(self.backlog):
            if predicate(msg):
                return self.backlog.pop(i)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                msg = await self.read(max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise AssertionError(f"no {what} within {timeout} s; received meanwhile: "
                                     f"{[value(m, 'Event') or value(m, 'Response') for m in self.backlog]}") from None
            assert msg is not None, f"connection closed while waiting for {what}"
            if predicate(msg):
                return msg
            self.backlog.append(msg)

    async def event(self, name: str, timeout: float = TIMEOUT, **fields: str) -> Headers:
        def wanted(m: Headers) -> bool:
            return value(m, "Event") == name and all(value(m, k) == v for k, v in fields.items())
        return await self.next(wanted, timeout, f"{name} event {fields or ''}")

    async def action(self, headers: Headers, count: int) -> list[Headers]:
        """Send an action and take the ``count`` messages that carry its ActionID, then check,
        with a Ping behind it, that no further message with that ActionID follows."""
        action_id = value(headers, "ActionID")
        assert action_id, "actions are sent with an ActionID"
        await self.send(headers)
        got = [await self.next(lambda m: value(m, "ActionID") == action_id, what=f"reply #{i + 1} to {action_id}")
               for i in range(count)]
        self._sync += 1
        sync_id = f"sync-{self._sync}"
        await self.send([("Action", "Ping"), ("ActionID", sync_id)])
        await self.next(lambda m: value(m, "ActionID") == sync_id, what="the Ping reply")
        extra = [m for m in self.backlog if value(m, "ActionID") == action_id]
        assert not extra, f"more messages than Asterisk sent for {action_id}: {extra}"
        return got

    async def expect_closed(self, timeout: float = TIMEOUT) -> None:
        msg = await self.read(timeout)
        assert msg is None, f"expected Asterisk to close the connection, got {msg}"

    async def login(self, events: str = "on", username: str = "hotline", secret: str = "hotline") -> None:
        await self.send([("Action", "Login"), ("ActionID", "login"), ("Username", username),
                         ("Secret", secret), ("Events", events)])
        reply = await self.next(lambda m: value(m, "ActionID") == "login", what="the Login reply")
        assert value(reply, "Response") == "Success", reply

    def close(self) -> None:
        self.writer.close()


# --------------------------------------------------------------------------- comparing messages

UNIQUEID = r"\d+\.\d+"
# Fields that differ from run to run: only their shape is compared.
SHAPES: dict[str, str] = {
    "Uniqueid": UNIQUEID, "Linkedid": UNIQUEID, "DestUniqueid": UNIQUEID, "DestLinkedid": UNIQUEID,
    "Timestamp": r"\d+\.\d{6}", "Challenge": r"\d{1,20}", "Duration": r"\d\d:\d\d:\d\d", "Seconds": r"\d+",
    "Uptime": r"\d+", "LastReload": r"\d+", "CommandId": r"\d+",
    "BridgeUniqueid": r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
}
# Channel names: equal but for the -%08x sequence number Asterisk appends.
CHANNEL_HEADERS = {"Channel", "DestChannel", "BRIDGEPEER"}


def channel_shape(name: str) -> str:
    parts = re.split(r"-[0-9a-f]{8}(?=;[12]$|$)", name)
    return "-[0-9a-f]{8}".join(re.escape(part) for part in parts)


Expected = Union[TranscriptMessage, Headers]


def assert_conforms(got: Headers, expected: Expected, *, where: str = "",
                    shapes: Optional[dict[str, str]] = None, values: Optional[dict[str, str]] = None) -> None:
    """``got`` (from the simulator) against ``expected`` (from Asterisk): the same header names in
    the same order; each value equal to the recorded one, or for the variable fields (``SHAPES``,
    channel names, ``shapes``) matching the shape; ``values`` overrides what a value must be."""
    recorded = expected.headers if isinstance(expected, TranscriptMessage) else expected
    if isinstance(expected, TranscriptMessage):
        where = f"{where} (transcript line {expected.line})".strip()
    got_names = [name for name, _ in got]
    recorded_names = [name for name, _ in recorded]
    assert got_names == recorded_names, (
        f"{where}: header names differ\n  simulator: {got_names}\n  Asterisk:  {recorded_names}\n"
        f"  simulator sent: {got}")
    all_shapes = {**SHAPES, **(shapes or {})}
    wrong = []
    for (name, got_value), (_, recorded_value) in zip(got, recorded):
        if values is not None and name in values:
            ok = got_value == values[name]
            want = repr(values[name])
        elif got_value == recorded_value:
            continue
        elif name in all_shapes:
            ok = re.fullmatch(all_shapes[name], got_value) is not None
            want = f"shape {all_shapes[name]!r} (recorded {recorded_value!r})"
        elif name in CHANNEL_HEADERS:
            ok = re.fullmatch(channel_shape(recorded_value), got_value) is not None
            want = f"a channel like {recorded_value!r}"
        else:
            ok, want = False, repr(recorded_value)
        if not ok:
            wrong.append(f"{name}: simulator {got_value!r}, Asterisk {want}")
    assert not wrong, f"{where}: values differ:\n  " + "\n  ".join(wrong) + f"\n  simulator sent: {got}"


def substitute(text: str, names: dict[str, str]) -> str:
    for recorded, actual in names.items():
        text = text.replace(recorded, actual)
    return text


def sent_and_received(title: str) -> tuple[TranscriptMessage, list[TranscriptMessage]]:
    messages = section(ACTIONS, title)
    sent = [m for m in messages if m.direction == "out"]
    assert len(sent) == 1, f"section {title!r} has {len(sent)} actions"
    return sent[0], [m for m in messages if m.direction == "in" and not m.banner]


async def replay(ami: RawAMI, title: str, names: Optional[dict[str, str]] = None, *,
                 by_channel: bool = False, **compare) -> list[Headers]:
    """Send the action of section ``title`` (recorded channel names replaced by ours) and compare
    what comes back with what Asterisk sent. ``by_channel``: list events may come in any order
    (Asterisk walks a hash table), pair them by channel."""
    names = names or {}
    sent, expected = sent_and_received(title)
    action = [(k, substitute(v, names)) for k, v in sent.headers]
    got = await ami.action(action, len(expected))
    if by_channel:
        first, middle, last = got[0], got[1:-1], got[-1]
        actual = {value(m, "Channel"): m for m in middle}
        ordered = []
        for message in expected[1:-1]:
            channel = substitute(message.get("Channel"), names)
            assert channel in actual, f"{title}: no list event for {channel}; got {list(actual)}"
            ordered.append(actual.pop(channel))
        got = [first, *ordered, last]
    for i, (message, recorded) in enumerate(zip(got, expected)):
        assert_conforms(message, recorded, where=f"{title} [message {i + 1}]", **compare)
    return got


# --------------------------------------------------------------------------- the simulator


@asynccontextmanager
async def simulator(config_dir: Path = REFERENCE_CONFIG, **kw):
    sim = Simulator(SimulatorConfig(config_dir=config_dir, ami_port=0, speed=SPEED, auth_fail_delay=0.02, **kw),
                    Scenario(agents=0, answer_delay_s=(0.01, 0.02)))
    await sim.start()
    connections: list[RawAMI] = []

    async def connect(login: Optional[str] = "on") -> RawAMI:
        ami = await RawAMI.connect(sim.ami_port)
        connections.append(ami)
        if login is not None:
            await ami.login(login)
        return ami
    sim.connect = connect
    try:
        yield sim
        # Whatever else came on the way (events of the channels the test made) conforms too.
        for ami in connections:
            check_events(ami.received)
    finally:
        for ami in connections:
            ami.close()
        await sim.stop()


async def park_local_channel(ami: RawAMI, title: str, recorded_one: str, recorded_two: str) -> dict[str, str]:
    """Originate Local/200@agi-test as the section does; once ";2" is in Wait(60) (after
    Answer and Set(TESTVAR=initial)), return the recorded channel names mapped to ours."""
    _, response = await replay(ami, title)
    one = value(response, "Channel")
    two = one[:-2] + ";2"
    await ami.event("Newexten", Channel=two, Application="Wait")
    return {recorded_one: one, recorded_two: two}


# =========================================================================== part 1: actions


async def test_banner_and_failed_logins_close_the_connection():
    async with simulator() as sim:
        for title in ("Banner + Login (failure: wrong secret)", "Login (failure: unknown user)"):
            ami = await sim.connect(login=None)
            assert ami.banner == "Asterisk Call Manager/11.0.0"
            sent, expected = sent_and_received(title)
            assert expected[-1].closed_after
            await ami.send(sent.headers)
            reply = await ami.read()
            assert_conforms(reply, expected[0], where=title)
            await ami.expect_closed()


async def test_login_failure_stream_matches_02c():
    """The whole 02c stream: banner, failed login, close; MD5 challenge login; Logoff, close."""
    async with simulator() as sim:
        ami = None
        challenge = ""
        for message in LOGIN_FAILURE_STREAM:
            if message.banner:
                ami = await sim.connect(login=None)
                assert ami.banner == message.text
                continue
            if message.direction == "out":
                headers = list(message.headers)
                if value(headers, "AuthType") == "MD5" and value(headers, "Action") == "Login":
                    key = hashlib.md5((challenge + "hotline").encode()).hexdigest()
                    headers = [(k, key if k == "Key" else v) for k, v in headers]
                await ami.send(headers)
                continue
            reply = await ami.read()
            assert_conforms(reply, message, where="02c")
            challenge = value(reply, "Challenge", challenge)
            if message.closed_after:
                await ami.expect_closed()


async def test_md5_challenge_login_with_events_off_and_logoff():
    async with simulator() as sim:
        ami = await sim.connect(login=None)
        challenge_reply, = await replay(ami, "Challenge (AuthType MD5)")
        key = hashlib.md5((value(challenge_reply, "Challenge") + "hotline").encode()).hexdigest()
        sent, expected = sent_and_received("Login (success via MD5 challenge, Events: off)")
        await ami.send([(k, key if k == "Key" else v) for k, v in sent.headers])
        assert_conforms(await ami.read(), expected[0], where="MD5 login")
        # Events: off: nothing unasked-for comes, not even FullyBooted.
        sent, expected = sent_and_received("Logoff")
        await ami.send(sent.headers)
        assert_conforms(await ami.read(), expected[0], where="Logoff")
        assert expected[0].closed_after
        await ami.expect_closed()


async def test_login_with_events_on_then_fully_booted_and_ping():
    async with simulator() as sim:
        ami = await sim.connect(login=None)
        sent, expected = sent_and_received("Login (success, Events: on)")
        assert [m.get("Event") for m in expected] == [None, "FullyBooted"]
        await ami.send(sent.headers)
        reply, first_event = await ami.read(), await ami.read()
        assert_conforms(reply, expected[0], where="Login")
        assert_conforms(first_event, expected[1], where="first event after Login")
        await replay(ami, "Ping")


async def test_core_show_channels_without_channels():
    async with simulator() as sim:
        ami = await sim.connect()
        await replay(ami, "CoreShowChannels (no channels)")


async def test_originate_async_and_the_parked_channels_in_lists():
    async with simulator() as sim:
        ami = await sim.connect()
        names = await park_local_channel(
            ami, "Originate (async, success): Local/200@agi-test, Application Wait 60", PARKED_1, PARKED_2)
        await replay(ami, "CoreShowChannels (with channels)", names, by_channel=True)
        await replay(ami, "Status (all channels)", names, by_channel=True)
        await replay(ami, f"Status (Channel: {PARKED_2})", names)
        await replay(ami, "Status (failure: no such channel)", names)


async def test_getvar_and_setvar():
    async with simulator() as sim:
        ami = await sim.connect()
        names = await park_local_channel(
            ami, "Originate (async, success): Local/200@agi-test, Application Wait 60", PARKED_1, PARKED_2)
        for title in (f"Getvar (channel var TESTVAR on {PARKED_2})",
                      f"Getvar (function CALLERID(num) on {PARKED_2})",
                      f"Getvar (unset variable on {PARKED_2})",
                      "Getvar (global FASTAGI, no Channel header)",
                      "Getvar (failure: no such channel)",
                      f"Setvar (channel var on {PARKED_2})",
                      f"Getvar (after Setvar on {PARKED_2})",
                      "Setvar (global, no Channel header)",
                      "Setvar (failure: no such channel)"):
            await replay(ami, title, names)
        # A global set over AMI is reported like any variable, with "none" for the channel (02b).
        recorded = next(m for m in FULLSTREAM if m.event == "VarSet" and m.get("Channel") == "none")
        assert_conforms(await ami.event("VarSet", Channel="none"), recorded, where="VarSet of a global")


async def test_mixmonitor_and_stopmixmonitor():
    async with simulator() as sim:
        ami = await sim.connect()
        names = await park_local_channel(
            ami, "Originate (async, success): Local/200@agi-test, Application Wait 60", PARKED_1, PARKED_2)
        for title in (f"MixMonitor (start on {PARKED_2})",
                      f"MixMonitor (start, no options, on {PARKED_2})",
                      f"StopMixMonitor (on {PARKED_2})",
                      "StopMixMonitor (again)",
                      "StopMixMonitor (again, none left)",
                      "MixMonitor (failure: no such channel)",
                      "MixMonitor (failure: missing Channel header)"):
            await replay(ami, title, names)


async def test_redirect_command_and_hangup():
    async with simulator() as sim:
        ami = await sim.connect()
        names = await park_local_channel(
            ami, "Originate (async, success): Local/200@agi-test, Application Wait 60", PARKED_1, PARKED_2)
        await replay(ami, f"Redirect (success: {PARKED_2} -> agi-test,201,1)", names)
        await ami.event("Newexten", Channel=names[PARKED_2], Extension="201", Application="NoOp",
                        AppData="Redirected here")
        await replay(ami, "Redirect (failure: no such channel)", names)
        await replay(ami, "Command (core show version)", names, shapes={
            "Output": r"Asterisk 22\.10\.1 built by \S+ @ \S+ on a \S+ running \S+ on \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"})
        await replay(ami, "Command (invalid CLI command)", names)
        await replay(ami, f"Hangup (success: {PARKED_1})", names)
        # Hanging up one half of a Local channel ends the other half too (02b).
        hangups = {value(await ami.event("Hangup"), "Channel") for _ in range(2)}
        assert hangups == {names[PARKED_1], names[PARKED_2]}
        await replay(ami, "Hangup (failure: no such channel)", names)
        await replay(ami, "Hangup (regex form: /^Local\\//)", names)


async def test_redirect_to_a_nonexistent_extension_answers_success_then_hangs_up():
    async with simulator() as sim:
        ami = await sim.connect()
        names = await park_local_channel(
            ami, "Originate (async, success): Local/200@agi-test again, for the bad-Redirect test",
            SECOND_1, SECOND_2)
        await replay(ami, "CoreShowChannels", names, by_channel=True)
        await replay(ami, f"Redirect (to a NONEXISTENT extension agi-test,999,1 on {SECOND_2}): note the response",
                     names)
        # The redirected half finds no extension and is hung up; the other half follows (02b).
        await ami.event("Hangup", Channel=names[SECOND_2])
        await ami.event("Hangup", Channel=names[SECOND_1])
        await replay(ami, "CoreShowChannels (after bad Redirect)", names)


async def test_originate_failures_and_sync_success():
    async with simulator() as sim:
        ami = await sim.connect()
        for title in ("Originate (async, failure: unknown endpoint PJSIP/9999)",
                      "Originate (async, failure: invalid channel technology)",
                      "Originate (sync, failure: unknown endpoint PJSIP/9999)",
                      "Originate (async, failure: Local channel to nonexistent extension)",
                      "Originate (failure: missing Channel header)",
                      "Originate (sync, success: Local/300@agi-test Echo, Application Wait 2)"):
            await replay(ami, title)


async def test_originate_to_an_agent_phone():
    async with simulator() as sim:
        sim.register_phone("1001")
        ami = await sim.connect()
        _, response = await replay(ami, "Originate (async, success: PJSIP/1001 -> agi-test,200)")
        agent = value(response, "Channel")
        await ami.event("Newexten", Channel=agent, Application="Wait")
        await replay(ami, "CoreShowChannels (agent call up)", {"PJSIP/1001-00000005": agent})
        await replay(ami, "Hangup (PJSIP/1001-00000005)", {"PJSIP/1001-00000005": agent})
        # AMI Hangup itself is silent; the end of the channel's dialplan reports it (02b).
        soft = await ami.event("SoftHangupRequest", Channel=agent)
        recorded = next(m for m in FULLSTREAM if m.event == "SoftHangupRequest"
                        and m.get("Channel") == "PJSIP/1001-00000005")
        assert_conforms(soft, recorded, where="SoftHangupRequest after AMI Hangup")
        await ami.event("Hangup", Channel=agent)


# =========================================================================== part 2: events

PRIMARY_STREAMS = ("01", "03b")          # the call lifecycle and the AGI sessions
SECONDARY_STREAMS = ("01b", "02b")       # only for event types the primary ones lack


@functools.cache
def recorded_variants(union: bool = False) -> dict[str, dict[tuple[str, ...], TranscriptMessage]]:
    """Event type -> {header names: one recorded example}. By default the variants of 01 and
    03b, and those of 01b and 02b only for the event types 01 and 03b lack; ``union``: every
    variant of every recording."""
    variants: dict[str, dict[tuple[str, ...], TranscriptMessage]] = {}
    for streams in ((*PRIMARY_STREAMS, *SECONDARY_STREAMS),) if union else (PRIMARY_STREAMS, SECONDARY_STREAMS):
        found: dict[str, dict[tuple[str, ...], TranscriptMessage]] = {}
        for prefix in streams:
            for message in load_ami_transcript(transcript_path(prefix)):
                if message.is_event and message.event not in variants:
                    found.setdefault(message.event, {}).setdefault(
                        tuple(name for name, _ in message.headers), message)
        for event, shapes in found.items():
            variants.setdefault(event, shapes)
    return variants


def documented_syntax(event: str) -> list[str]:
    """Header names of ``event`` in Asterisk's own documentation ([Syntax] block)."""
    lines = EVENT_DOCS.read_text(encoding="utf-8").splitlines()
    start = lines.index(f"Event: {event}", lines.index(f"Event: {event}") + 1)
    names = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        names.append(line.split(":", 1)[0])
    return names


def check_events(messages: Iterable[Headers]) -> None:
    """Every event among ``messages`` (a test's whole AMI stream) against any recorded variant."""
    variants = recorded_variants(union=True)
    for message in messages:
        if value(message, "Event") and value(message, "ActionID") is None:
            check_event(message, variants, {})


def check_event(event: Headers, variants: dict[str, dict[tuple[str, ...], TranscriptMessage]],
                user_event_headers: dict[str, list[str]]) -> None:
    name = value(event, "Event")
    names = tuple(n for n, _ in event)
    if name == "UserEvent":
        # No recorded example: Asterisk's documented syntax, the Privilege every event carries,
        # then the dialplan's own "key: value" pairs.
        expected = ["Event", "Privilege", *documented_syntax("UserEvent")]
        user = value(event, "UserEvent")
        assert list(names[:len(expected)]) == expected, (
            f"UserEvent headers\n  simulator: {list(names)}\n  documented: {expected} + the event's own")
        assert value(event, "Privilege") == "user,all", event
        if user in user_event_headers:
            assert list(names[len(expected):]) == user_event_headers[user], (user, event)
        return
    assert name in variants, f"the simulator emits {name}, which no recording shows: {event}"
    if names not in variants[name]:
        shown = "\n  ".join(str(list(v)) for v in variants[name])
        raise AssertionError(f"{name}: header names differ from every recorded variant\n"
                             f"  simulator: {list(names)}\n  Asterisk:  {shown}\n  simulator sent: {event}")
    recorded = variants[name][names]
    assert value(event, "Privilege") == recorded.get("Privilege"), (
        f"{name}: Privilege {value(event, 'Privilege')!r}, Asterisk {recorded.get('Privilege')!r}")


def index_of(stream: list[Headers], what: str, predicate: Callable[[Headers], bool], after: int = -1) -> int:
    for i, message in enumerate(stream):
        if i > after and predicate(message):
            return i
    seen = [f"{value(m, 'Event')}({value(m, 'Channel') or value(m, 'DestChannel') or ''})" for m in stream]
    raise AssertionError(f"no {what} after position {after} in the stream: {seen}")


def is_event(name: str, **fields: str) -> Callable[[Headers], bool]:
    return lambda m: value(m, "Event") == name and all(value(m, k) == v for k, v in fields.items())


async def test_event_stream_of_a_call_through_our_dialplan(redis, pool, redis_url, pg_url, tmp_path):
    from pbxsim.ami_server import AMIUser
    from tests.test_call_end_to_end import hotline, plan

    stream: list[Headers] = []
    async with hotline(redis, pool, redis_url, pg_url, tmp_path) as (sim, acd):
        # Our manager.conf user may not read the agi and dtmf classes: listen as one who reads all.
        sim.pbx.ami.users["conformance"] = AMIUser("conformance", "conformance")
        ami = await RawAMI.connect(sim.ami_port)
        await ami.login("on", "conformance", "conformance")
        stream.extend(ami.received[1:])   # FullyBooted and whatever came with the login

        async def collect() -> None:
            while True:
                message = await ami.read(None)
                if message is None:
                    return
                stream.append(message)
        collector = asyncio.create_task(collect())
        try:
            caller = sim.place_call(plan(digits=("1",), talk=0.3))
            await asyncio.wait_for(caller.done.wait(), 10)
            await asyncio.sleep(0.2)   # the events that follow the caller's Hangup
        finally:
            collector.cancel()
            ami.close()
    caller_channel = caller.channel.name
    events = [m for m in stream if value(m, "Event")]
    assert value(events[0], "Event") == "FullyBooted", events[0]

    # 1. Every event the simulator sent has the header names Asterisk gives that event type.
    variants = recorded_variants()
    user_events = {"HotlineWaiting": ["Queue", "Skills", "CallPriority", "CallLanguage"]}
    emitted = {value(m, "Event") for m in events}
    for event in events:
        check_event(event, variants, user_events)
    wanted = {"Newchannel", "Newstate", "Newexten", "VarSet", "AGIExecStart", "AGIExecEnd", "DTMFBegin",
              "DTMFEnd", "UserEvent", "MusicOnHoldStart", "MusicOnHoldStop", "DialBegin", "DialState", "DialEnd",
              "NewConnectedLine", "BridgeCreate", "BridgeEnter", "BridgeLeave", "BridgeDestroy", "HangupRequest",
              "SoftHangupRequest", "Hangup", "DeviceStateChange", "MixMonitorStart", "FullyBooted"}
    assert wanted <= emitted, f"the call did not produce {sorted(wanted - emitted)}"

    # 2. The order of a call's events, as in transcript 01.
    agent_channel = value(events[index_of(events, "DialBegin", is_event("DialBegin", Channel=caller_channel))],
                          "DestChannel")
    assert agent_channel.startswith("PJSIP/1001-"), agent_channel
    channels = {value(m, "Channel") for m in events} - {None}
    assert {caller_channel, agent_channel} <= channels, channels
    for channel in channels:
        own = [m for m in events if channel in (value(m, "Channel"), value(m, "DestChannel"))]
        assert value(own[0], "Event") == "Newchannel", f"first event of {channel}: {own[0]}"
        assert value(own[-1], "Event") == "Hangup", f"last event of {channel}: {own[-1]}"
    dial_begin = index_of(events, "DialBegin", is_event("DialBegin", Channel=caller_channel, DestChannel=agent_channel))
    ringing = index_of(events, "agent Newstate Ringing",
                       is_event("Newstate", Channel=agent_channel, ChannelStateDesc="Ringing"), dial_begin)
    dial_state = index_of(events, "DialState", is_event("DialState", Channel=caller_channel,
                                                        DestChannel=agent_channel, DialStatus="RINGING"), ringing)
    dial_end = index_of(events, "DialEnd ANSWER", is_event("DialEnd", Channel=caller_channel,
                                                           DestChannel=agent_channel, DialStatus="ANSWER"), dial_state)
    created = index_of(events, "BridgeCreate", is_event("BridgeCreate"), dial_end)
    enter_agent = index_of(events, "BridgeEnter(agent)", is_event("BridgeEnter", Channel=agent_channel), created)
    index_of(events, "BridgeEnter(caller)", is_event("BridgeEnter", Channel=caller_channel), enter_agent)
    request = index_of(events, "HangupRequest(caller)", is_event("HangupRequest", Channel=caller_channel))
    leave_caller = index_of(events, "BridgeLeave(caller)", is_event("BridgeLeave", Channel=caller_channel), request)
    leave_agent = index_of(events, "BridgeLeave(agent)", is_event("BridgeLeave", Channel=agent_channel), leave_caller)
    destroyed = index_of(events, "BridgeDestroy", is_event("BridgeDestroy"), leave_agent)
    agent_gone = index_of(events, "Hangup(agent)", is_event("Hangup", Channel=agent_channel), destroyed)
    index_of(events, "Hangup(caller)", is_event("Hangup", Channel=caller_channel), agent_gone)
    # The end of the caller's dialplan is reported as in 01: SoftHangupRequest, Cause 16.
    soft = events[index_of(events, "SoftHangupRequest(caller)",
                           is_event("SoftHangupRequest", Channel=caller_channel), request)]
    assert value(soft, "Cause") == "16", soft
