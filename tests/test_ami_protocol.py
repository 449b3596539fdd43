"""AMI framing: every recorded message parses exactly, chunking anywhere, safe encoding."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotline.ami import AMIParser, AMIProtocolError, Message, encode_action, encode_message
from tests.transcripts import (
    AMI_TRANSCRIPT_PREFIXES,
    TRANSCRIPTS,
    TranscriptMessage,
    ami_wire_bytes,
    load_ami_transcript,
    received,
    section,
    transcript_path,
)

needs_transcripts = pytest.mark.skipif(
    not TRANSCRIPTS.is_dir(),
    reason=f"recorded Asterisk transcripts not found at {TRANSCRIPTS}",
)

BANNER = "Asterisk Call Manager/11.0.0"


def connections(messages: list[TranscriptMessage]) -> list[list[TranscriptMessage]]:
    """Split a transcript into TCP connections: each starts with a banner."""
    groups: list[list[TranscriptMessage]] = []
    for m in messages:
        if m.banner or not groups:
            groups.append([])
        groups[-1].append(m)
    return groups


def feed_all(parser: AMIParser, data: bytes, chunk: int) -> list[Message]:
    out: list[Message] = []
    for i in range(0, len(data), chunk):
        out.extend(parser.feed(data[i : i + chunk]))
    return out


def first_values(headers: list[tuple[str, str]]) -> dict[str, str]:
    d: dict[str, str] = {}
    for k, v in headers:
        d.setdefault(k, v)
    return d


# -- the recorded traffic ------------------------------------------------------------------
@needs_transcripts
@pytest.mark.parametrize("prefix", AMI_TRANSCRIPT_PREFIXES)
def test_every_received_message_parses_exactly(prefix: str) -> None:
    messages = load_ami_transcript(transcript_path(prefix))
    total = 0
    for conn in connections(messages):
        expected = received(conn)
        wire = ami_wire_bytes(conn)
        parser = AMIParser()
        parsed = parser.feed(wire)
        if conn[0].banner:
            assert parser.banner == conn[0].text == BANNER
        # Header order, exact case and values, repeated headers included.
        assert [m.headers for m in parsed] == [t.headers for t in expected]
        # The lazy lookups agree with the full parse (fresh messages: still unparsed).
        for msg, t in zip(AMIParser().feed(wire), expected):
            for name, value in first_values(t.headers).items():
                assert msg.get(name) == value, (t.line, name)
                assert msg.get(name.upper()) == value, (t.line, name)
        total += len(parsed)
    assert total == len(received(messages)) > 0


@needs_transcripts
@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1000, 65536])
def test_transcript_01_in_chunks(chunk: int) -> None:
    messages = load_ami_transcript(transcript_path("01"))
    wire = ami_wire_bytes(messages)
    parser = AMIParser()
    parsed = feed_all(parser, wire, chunk)
    assert parser.banner == BANNER
    assert [m.headers for m in parsed] == [t.headers for t in received(messages)]


@needs_transcripts
def test_every_split_point_of_a_sample() -> None:
    # Banner, Login reply, FullyBooted, SuccessfulAuth: every kind of boundary, with the
    # banner's lone CRLF and every message's CRLF CRLF.
    messages = load_ami_transcript(transcript_path("02b"))
    sample = [m for m in messages if m.direction == "in"][:4]
    wire = ami_wire_bytes(sample)
    expected = [t.headers for t in received(sample)]
    assert len(expected) == 3
    for i in range(len(wire) + 1):
        parser = AMIParser()
        parsed = parser.feed(wire[:i]) + parser.feed(wire[i:])
        assert parser.banner == BANNER, i
        assert [m.headers for m in parsed] == expected, i


@needs_transcripts
@settings(max_examples=15, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=83_000), max_size=40))
def test_random_chunking_of_a_whole_stream(cuts: list[int]) -> None:
    messages = load_ami_transcript(transcript_path("01"))
    wire = ami_wire_bytes(messages)
    points = sorted({c % (len(wire) + 1) for c in cuts})
    parser = AMIParser()
    parsed: list[Message] = []
    last = 0
    for p in points + [len(wire)]:
        parsed.extend(parser.feed(wire[last:p]))
        last = p
    assert [m.headers for m in parsed] == [t.headers for t in received(messages)]


@needs_transcripts
def test_bare_lf_is_accepted() -> None:
    messages = load_ami_transcript(transcript_path("02b"))
    wire = ami_wire_bytes(messages[:40]).replace(b"\r\n", b"\n")
    parser = AMIParser()
    parsed = feed_all(parser, wire, 100)
    assert parser.banner == BANNER
    assert [m.headers for m in parsed] == [t.headers for t in received(messages[:40])]


@needs_transcripts
def test_command_output_lines_are_all_kept() -> None:
    reply = received(section(load_ami_transcript(transcript_path("02")), "Command (queue show test)"))
    (msg,) = AMIParser(expect_banner=False).feed(ami_wire_bytes(reply))
    outputs = [v for k, v in reply[0].headers if k == "Output"]
    assert len(outputs) == 6
    assert msg.getall("Output") == outputs
    assert msg["Output"] == outputs[0]  # first value
    assert msg.getall("output") == outputs  # case-insensitive
    assert [k for k, _ in msg.headers].count("Output") == 6
    assert list(msg) == ["Response", "ActionID", "Message", "Output"]  # unique names


@needs_transcripts
def test_header_case_is_kept_and_lookup_ignores_it() -> None:
    events = [m for m in load_ami_transcript(transcript_path("01")) if m.event == "Cdr"]
    (msg,) = AMIParser(expect_banner=False).feed(ami_wire_bytes(events[:1]))
    assert "UniqueID" in list(msg)
    assert "Uniqueid" not in list(msg)
    assert msg.get("Uniqueid") == msg["UniqueID"] == events[0].get("UniqueID")
    assert "uniqueid" in msg


# -- framing details -----------------------------------------------------------------------
def test_banner_split_across_reads_including_the_crlf() -> None:
    parser = AMIParser()
    assert parser.feed(b"Asterisk Call") == []
    assert parser.feed(b" Manager/11.0.0\r") == []
    assert parser.banner is None
    assert parser.feed(b"\nResponse: Success\r\nActionID: 1\r") == []
    assert parser.banner == BANNER
    (msg,) = parser.feed(b"\n\r\n")
    assert msg.headers == [("Response", "Success"), ("ActionID", "1")]


def test_no_banner_is_fine() -> None:
    parser = AMIParser()
    (msg,) = parser.feed(b"Event: FullyBooted\r\nStatus: Fully Booted\r\n\r\n")
    assert parser.banner is None
    assert msg.event == "FullyBooted"


def test_extra_blank_lines_between_messages() -> None:
    parser = AMIParser(expect_banner=False)
    msgs = parser.feed(b"\r\nEvent: A\r\n\r\n\r\n\r\nEvent: B\r\nX: 1\r\n\r\n\r\n")
    assert [m.headers for m in msgs] == [[("Event", "A")], [("Event", "B"), ("X", "1")]]


def test_utf8_split_anywhere() -> None:
    wire = "Event: Newchannel\r\nCallerIDName: 张三丰\r\nUniqueid: 1.1\r\n\r\n".encode()
    for i in range(len(wire) + 1):
        parser = AMIParser(expect_banner=False)
        (msg,) = parser.feed(wire[:i]) + parser.feed(wire[i:])
        assert msg["CallerIDName"] == "张三丰", i


def test_invalid_utf8_does_not_break_the_stream() -> None:
    parser = AMIParser(expect_banner=False)
    a, b = parser.feed(b"Event: A\r\nName: \xff\xfeX\r\n\r\nEvent: B\r\n\r\n")
    assert a["Name"] == "\ufffd\ufffdX"
    assert b.event == "B"


def test_odd_lines_are_kept() -> None:
    parser = AMIParser(expect_banner=False)
    (msg,) = parser.feed(b"Event: Odd\r\nNoSpace:value\r\nEmpty:\r\njust text\r\nA: b: c\r\n\r\n")
    assert msg.headers == [
        ("Event", "Odd"), ("NoSpace", "value"), ("Empty", ""), ("", "just text"), ("A", "b: c"),
    ]
    assert msg.get("NoSpace") == "value"
    assert msg.get("A") == "b: c"


def test_empty_values_and_trailing_spaces_are_exact() -> None:
    (msg,) = AMIParser(expect_banner=False).feed(b"Event: X\r\nAccountCode: \r\nOutput:    Members: \r\n\r\n")
    assert msg.get("AccountCode") == ""
    assert msg.get("Output") == "   Members: "
    assert msg.headers == [("Event", "X"), ("AccountCode", ""), ("Output", "   Members: ")]


def test_chan_variables() -> None:
    (msg,) = AMIParser(expect_banner=False).feed(
        b"Event: Hangup\r\nChanVariable: HOTLINE_QUEUE=general\r\nChanVariable: HOTLINE_SKILLS=a:1,b=2\r\n\r\n"
    )
    assert msg.getall("ChanVariable") == ["HOTLINE_QUEUE=general", "HOTLINE_SKILLS=a:1,b=2"]
    assert msg.getvars() == {"HOTLINE_QUEUE": "general", "HOTLINE_SKILLS": "a:1,b=2"}
    assert msg["ChanVariable"] == "HOTLINE_QUEUE=general"


LEGACY_COMMAND = (
    b"Response: Follows\r\nPrivilege: Command\r\nActionID: 5\r\n"
    b"line one\nName: x\n\nafter a blank line\n--END COMMAND--\r\n\r\n"
    b"Event: After\r\n\r\n"
)


def test_legacy_follows_command_output() -> None:
    for i in range(len(LEGACY_COMMAND) + 1):
        parser = AMIParser(expect_banner=False)
        msgs = parser.feed(LEGACY_COMMAND[:i]) + parser.feed(LEGACY_COMMAND[i:])
        assert len(msgs) == 2, i
        follows, after = msgs
        assert follows["Response"] == "Follows"
        assert follows["ActionID"] == "5"
        assert follows.getall("Output") == ["line one", "Name: x", "", "after a blank line"], i
        assert follows.get("Name") is None
        assert after.event == "After"


def test_goodbye_and_follows_without_raw_body_are_plain_messages() -> None:
    parser = AMIParser(expect_banner=False)
    a, b = parser.feed(
        b"Response: Follows\r\nActionID: 1\r\nOutput: x\r\n\r\n"
        b"Response: Goodbye\r\nActionID: 2\r\nMessage: Thanks for all the fish.\r\n\r\n"
    )
    assert a.getall("Output") == ["x"]
    assert b.response == "Goodbye"


# -- Message API ---------------------------------------------------------------------------
def test_message_mapping_api() -> None:
    msg = Message([("Event", "Hangup"), ("Uniqueid", "1.2"), ("ChanVariable", "A=1"), ("ChanVariable", "B=2")])
    assert msg["Event"] == "Hangup"
    assert msg.get("missing", "d") == "d"
    with pytest.raises(KeyError):
        msg["missing"]
    assert len(msg) == 3
    assert list(msg.keys()) == ["Event", "Uniqueid", "ChanVariable"]
    assert msg.getall("ChanVariable") == ["A=1", "B=2"]
    assert msg == Message({"Event": "Hangup", "Uniqueid": "1.2", "ChanVariable": ["A=1", "B=2"]})
    assert msg != Message({"Event": "Hangup"})
    assert Message({"Event": "X"}) == {"Event": "X"}
    assert "Hangup" in repr(msg)
    (parsed,) = AMIParser(expect_banner=False).feed(encode_message(msg))
    assert parsed == msg


# -- encoding ------------------------------------------------------------------------------
def test_encode_action_exact_bytes() -> None:
    assert encode_action({"Action": "Login", "ActionID": "a-1", "Username": "hotline", "Secret": "s", "Events": "on"}) == (
        b"Action: Login\r\nActionID: a-1\r\nUsername: hotline\r\nSecret: s\r\nEvents: on\r\n\r\n"
    )


def test_repeated_headers_can_be_sent() -> None:
    as_pairs = encode_action([("Action", "Originate"), ("Variable", "A=1"), ("Variable", "B=2")])
    as_list = encode_action({"Action": "Originate", "Variable": ["A=1", "B=2"]})
    assert as_pairs == as_list == b"Action: Originate\r\nVariable: A=1\r\nVariable: B=2\r\n\r\n"


def test_value_types() -> None:
    assert encode_action({"Action": "Originate", "Async": True, "Timeout": 5000, "Account": None}) == (
        b"Action: Originate\r\nAsync: true\r\nTimeout: 5000\r\n\r\n"
    )


@pytest.mark.parametrize(
    "value",
    [
        "x\r\nAction: Originate",
        "x\nAction: Originate\n\nAction: Hangup",
        "x\r\n\r\nAction: Command\r\nCommand: core stop now\r\n\r\n",
        "x\rAction: Originate",
        "x\0Action: Originate",
    ],
)
def test_injection_through_a_value_is_impossible(value: str) -> None:
    wire = encode_action({"Action": "Setvar", "Variable": "CALLERID(name)", "Value": value})
    assert wire.count(b"\r\n\r\n") == 1 and wire.endswith(b"\r\n\r\n")
    assert b"\0" not in wire
    msgs = AMIParser(expect_banner=False).feed(wire)
    assert len(msgs) == 1
    assert msgs[0].getall("Action") == ["Setvar"]
    assert msgs[0]["Value"] == value.replace("\r", " ").replace("\n", " ").replace("\0", " ")


@pytest.mark.parametrize(
    "name", ["", "Bad Name", "X:Y", "Ação", "A\r\nB", "Action\r\nAction", "名字", "a\tb", "A\0", None, 5]
)
def test_bad_header_names_are_refused(name: object) -> None:
    with pytest.raises(AMIProtocolError):
        encode_action([("Action", "Ping"), (name, "x")])


def test_an_action_needs_an_action_header() -> None:
    with pytest.raises(AMIProtocolError):
        encode_action({"ActionID": "1"})
    with pytest.raises(AMIProtocolError):
        encode_message({})
    with pytest.raises(AMIProtocolError):
        encode_action(["not a pair"])  # type: ignore[list-item]


def test_lone_surrogate_is_replaced_not_raised() -> None:
    assert encode_action({"Action": "Ping", "X": "a\ud800b"}) == b"Action: Ping\r\nX: a?b\r\n\r\n"


NAMES = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=12)
VALUES = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40)


@settings(max_examples=100, deadline=None)
@given(headers=st.lists(st.tuples(NAMES, VALUES), max_size=8))
def test_encode_then_parse_round_trip(headers: list[tuple[str, str]]) -> None:
    pairs = [("Action", "Test")] + headers
    wire = encode_action(pairs)
    parser = AMIParser(expect_banner=False)
    msgs = parser.feed(wire)
    assert len(msgs) == 1  # no value ever ends the message early
    sanitized = [(k, v.replace("\r", " ").replace("\n", " ").replace("\0", " ")) for k, v in pairs]
    assert msgs[0].headers == sanitized
    fresh = AMIParser(expect_banner=False).feed(wire)[0]
    for k, v in first_values(sanitized).items():
        assert fresh.get(k) == v
