"""ivr.agi: quoting commands for Asterisk's parser and parsing its replies."""
from __future__ import annotations

import random

import pytest

from ivr.agi import (
    AGI_MAX_LINE_BYTES,
    AGICommandError,
    AGIProtocolError,
    AGIResponse,
    format_command,
    parse_response,
    quote,
)
from tests.agi_transcripts import (
    FROM_ASTERISK,
    TO_ASTERISK,
    agi_verbs,
    asterisk_parse_args,
    require_sessions,
    split_verb,
)

HOSTILE = [
    "ANSWER\nEXEC System rm",
    "x\r\nEXEC System rm -rf /",
    "\nHANGUP",
    'Evil" <123>',
    '"IVR Test" <5551234>',
    "trailing backslash\\",
    "\\",
    '\\"',
    '" EXEC System "touch /tmp/pwned',
    "a\tb",
    "nul\x00byte",
    "  leading and trailing  ",
    "${SHELL(rm -rf /)}",
    "",
    "中文 呼叫",
]


def sanitized(value: str) -> str:
    """What Asterisk must end up with: the value with CR, LF and NUL turned into spaces."""
    return value.replace("\r", " ").replace("\n", " ").replace("\x00", " ")


# --------------------------------------------------------------------------- quote


@pytest.mark.parametrize(
    "value, expected",
    [
        ("demo-congrats", "demo-congrats"),
        ("hotline/welcome", "hotline/welcome"),
        (3000, "3000"),
        ("", '""'),
        ("hello from fastagi", '"hello from fastagi"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("a\nb", '"a b"'),
        ("a\r\nb", '"a  b"'),
        ("a\x00b", '"a b"'),
        ("tab\there", '"tab\there"'),
        ("${CALLERID(num)}-${EXTEN}", "${CALLERID(num)}-${EXTEN}"),
    ],
)
def test_quote(value: object, expected: str) -> None:
    assert quote(value) == expected


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_stay_one_argument(value: str) -> None:
    line = format_command("SET VARIABLE", "CALLER", value)
    assert "\n" not in line and "\r" not in line and "\x00" not in line
    assert asterisk_parse_args(line) == ["SET", "VARIABLE", "CALLER", sanitized(value)]


def test_newline_cannot_start_a_second_command() -> None:
    line = format_command("VERBOSE", "ANSWER\nEXEC System rm", 1)
    assert line == 'VERBOSE "ANSWER EXEC System rm" 1'
    assert line.count("\n") == 0


def test_random_strings_round_trip_through_asterisks_parser() -> None:
    rng = random.Random(12345)  # fixed seed: the same cases every run
    alphabet = ' \t"\\\r\n\x00abc$(){}<>;|&\'`中'
    for _ in range(3000):
        values = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(3)]
        line = format_command("EXEC", *values)
        assert asterisk_parse_args(line) == ["EXEC", *map(sanitized, values)], values


# --------------------------------------------------------------------------- format_command


def test_format_command_matches_asterisk_transcript_lines() -> None:
    assert format_command("ANSWER") == "ANSWER"
    assert format_command("STREAM FILE", "demo-congrats", "") == 'STREAM FILE demo-congrats ""'
    # The recorder quoted "#"; Asterisk reads the same word either way.
    assert format_command("STREAM FILE", "demo-congrats", "#") == "STREAM FILE demo-congrats #"
    assert format_command("GET DATA", "beep", 3000, 1) == "GET DATA beep 3000 1"
    assert format_command("SET VARIABLE", "FOO", "bar") == "SET VARIABLE FOO bar"
    assert format_command("verbose", "hello from fastagi", 1) == 'VERBOSE "hello from fastagi" 1'
    assert format_command("EXEC", "NoOp", "exec via agi") == 'EXEC NoOp "exec via agi"'


@pytest.mark.parametrize("verb", ["", "GET\nDATA", "ANSWER;", "STREAM  FILE", " ANSWER", "GET DATA 1", None])
def test_format_command_rejects_bad_verbs(verb: object) -> None:
    with pytest.raises(AGICommandError):
        format_command(verb, "x")  # type: ignore[arg-type]


def test_format_command_rejects_lines_asterisk_would_cut() -> None:
    # Asterisk reads 2047 bytes at most; the rest would run as another command.
    fits = "x" * (AGI_MAX_LINE_BYTES - len("VERBOSE ") - 2)
    assert len(format_command("VERBOSE", fits, 1).encode()) == AGI_MAX_LINE_BYTES
    with pytest.raises(AGICommandError):
        format_command("VERBOSE", fits + "x", 1)
    with pytest.raises(AGICommandError):  # counted in bytes, not characters
        format_command("VERBOSE", "中" * 700, 1)


# --------------------------------------------------------------------------- parse_response


@pytest.mark.parametrize(
    "line, code, result, data, endpos",
    [
        ("200 result=0", 200, "0", None, None),
        ("200 result=1 (bar)", 200, "1", "bar", None),
        ("200 result= (timeout)", 200, "", "timeout", None),
        ("200 result=12 (timeout)", 200, "12", "timeout", None),
        ("200 result=0 endpos=242214", 200, "0", None, 242214),
        ("200 result=-1 endpos=0", 200, "-1", None, 0),
        ("200 result=0 endpos=-1", 200, "0", None, -1),
        ("200 result=-2", 200, "-2", None, None),
        ("200 result=1 (Local/100@agi-test-0000000c;2)", 200, "1", "Local/100@agi-test-0000000c;2", None),
        ("200 result=1 (a (nested) value)", 200, "1", "a (nested) value", None),
        ("200 result=1 (x) endpos=5)", 200, "1", "x) endpos=5", None),
        ("200 result=0 (dtmf) endpos=1600", 200, "0", "dtmf", 1600),
        ("200 result=1 ()", 200, "1", "", None),
        ("200 result=0\r\n", 200, "0", None, None),
    ],
)
def test_parse_ok(line: str, code: int, result: str, data: str, endpos: int) -> None:
    reply = parse_response(line)
    assert (reply.code, reply.result, reply.data, reply.endpos) == (code, result, data, endpos)
    assert reply.ok


def test_parse_errors() -> None:
    r510 = parse_response("510 Invalid or unknown command")
    assert (r510.code, r510.text, r510.multiline) == (510, "Invalid or unknown command", False)
    r511 = parse_response("511 Command Not Permitted on a dead channel or intercept routine")
    assert r511.code == 511 and not r511.ok
    r520 = parse_response("520-Invalid command syntax.  Proper usage follows:")
    assert (r520.code, r520.multiline) == (520, True)
    assert r520.text == "Invalid command syntax.  Proper usage follows:"
    end = parse_response("520 End of proper usage.")
    assert (end.code, end.multiline, end.text) == (520, False, "End of proper usage.")


@pytest.mark.parametrize("line", ["HANGUP", "", "hello", "20 result=1", "2000 result=1", "    <value>SUCCESS</value>"])
def test_parse_rejects_non_status_lines(line: str) -> None:
    with pytest.raises(AGIProtocolError):
        parse_response(line)


def test_response_helpers() -> None:
    assert parse_response("200 result=49").digit == "1"
    assert parse_response("200 result=35 endpos=100").digit == "#"
    assert parse_response("200 result=0").digit is None
    assert parse_response("200 result=-1").int_result == -1
    assert parse_response("200 result=123").int_result == 123
    assert parse_response("200 result=").int_result is None
    assert AGIResponse(code=200).ok


def _render(reply: AGIResponse) -> str:
    text = f"200 result={reply.result}"
    if reply.data is not None:
        text += f" ({reply.data})"
    if reply.endpos is not None:
        text += f" endpos={reply.endpos}"
    return text


def test_every_reply_in_the_transcript_parses() -> None:
    sessions = require_sessions()
    seen = set()
    for session in sessions.values():
        in_usage = False
        for direction, text in session.lines[len(session.env_lines):]:
            if direction != FROM_ASTERISK:
                continue
            if in_usage:  # usage text lines until "520 End of proper usage."
                in_usage = not text.startswith("520 ")
                continue
            if text == "HANGUP":
                continue
            reply = parse_response(text)
            seen.add(reply.code)
            if reply.code == 200:
                # Nothing lost: the parsed fields give the line back.
                assert _render(reply) == text
            else:
                assert reply.code in (510, 511, 520), text
                in_usage = reply.multiline
        assert not in_usage
    assert seen == {200, 510, 511, 520}


def test_transcript_commands_are_reproduced_by_format_command() -> None:
    """Every command of the recorded sessions, rebuilt by format_command, means the same to Asterisk."""
    sessions = require_sessions()
    verbs = agi_verbs()
    count = 0
    # The recorder quoted these words although they need no quotes; same words for Asterisk.
    needless_quotes = {'GET OPTION beep "123" 500', 'STREAM FILE demo-congrats "#"'}
    for session in sessions.values():
        for direction, text in session.lines:
            if direction != TO_ASTERISK:
                continue
            tokens = asterisk_parse_args(text)
            verb, args = split_verb(tokens, verbs)
            rebuilt = format_command(verb, *args)
            assert asterisk_parse_args(rebuilt) == tokens
            if text not in needless_quotes:
                assert rebuilt == text
            count += 1
    assert count > 50
