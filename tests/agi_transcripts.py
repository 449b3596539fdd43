"""Test helpers for FastAGI: the recorded Asterisk 22 transcripts and a fake Asterisk.

``03-fastagi-sessions.txt`` (recorded on a real Asterisk, kept in pbxsim/recorded) shows
each FastAGI session line by line as ``HH:MM:SS.mmm <<< 'repr'`` (Asterisk to
the AGI server) or ``>>> 'repr'`` (AGI server to Asterisk), with ``##`` notes.
:func:`load_sessions` turns it into :class:`TranscriptSession` objects;
:class:`FakeAsterisk` plays Asterisk's side over real TCP.
"""
from __future__ import annotations

import ast
import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable
from typing import Optional

import pytest

from pbxsim.recorded import RECORDED

__all__ = [
    "SHARED",
    "TRANSCRIPT",
    "AGI_COMMANDS_DOC",
    "TranscriptSession",
    "Exchange",
    "load_sessions",
    "require_sessions",
    "asterisk_parse_args",
    "agi_verbs",
    "split_verb",
    "make_env",
    "FakeAsterisk",
]

SHARED = RECORDED  # the recordings of a real Asterisk, kept in pbxsim/recorded
TRANSCRIPT = RECORDED / "transcripts" / "03-fastagi-sessions.txt"
AGI_COMMANDS_DOC = RECORDED / "reference" / "agi-commands.txt"

FROM_ASTERISK = "<<<"
TO_ASTERISK = ">>>"

_TITLE = re.compile(r"^## Session (?P<letter>[A-Z]): (?P<title>.*)$")
_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} (?P<dir><<<|>>>) (?P<repr>.*)$")
_NOTE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} ## (?P<note>.*)$")


@dataclass
class Exchange:
    """One command the AGI server sent and every line Asterisk answered before the next one."""

    command: str
    replies: list[str] = field(default_factory=list)


@dataclass
class TranscriptSession:
    letter: str
    title: str
    lines: list[tuple[str, str]] = field(default_factory=list)  # (direction, text)
    notes: list[str] = field(default_factory=list)

    @property
    def env_lines(self) -> list[str]:
        """Asterisk's environment block, the closing empty line included."""
        block: list[str] = []
        for direction, text in self.lines:
            if direction != FROM_ASTERISK:
                break
            block.append(text)
            if text == "":
                break
        return block

    @property
    def env(self) -> dict[str, str]:
        env = {}
        for text in self.env_lines:
            if text:
                name, _, value = text.partition(": ")
                env[name] = value
        return env

    @property
    def exchanges(self) -> list[Exchange]:
        found: list[Exchange] = []
        for direction, text in self.lines[len(self.env_lines):]:
            if direction == TO_ASTERISK:
                found.append(Exchange(text))
            elif found:
                found[-1].replies.append(text)
        return found

    @property
    def asterisk_closed(self) -> bool:
        """Asterisk closed the socket itself (AGIEXITONHANGUP=yes)."""
        return any("EOF from Asterisk" in note for note in self.notes)


def load_sessions(path: Path = TRANSCRIPT) -> dict[str, TranscriptSession]:
    """The sessions of the transcript by letter; only the FastAGI wire lines are kept."""
    sessions: dict[str, TranscriptSession] = {}
    current: Optional[TranscriptSession] = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        if m := _TITLE.match(raw):
            current = TranscriptSession(m["letter"], m["title"])
            sessions[current.letter] = current
        elif current is None:
            continue
        elif m := _LINE.match(raw):
            text = ast.literal_eval(m["repr"])
            assert isinstance(text, str), raw
            current.lines.append((m["dir"], text))
        elif m := _NOTE.match(raw):
            current.notes.append(m["note"])
    return sessions


def require_sessions() -> dict[str, TranscriptSession]:
    """The transcript sessions, or skip the test when the recordings are not there."""
    if not TRANSCRIPT.is_file():
        pytest.skip(f"FastAGI transcript not found: {TRANSCRIPT}")
    return load_sessions()


# --------------------------------------------------------------------------- Asterisk's side


def asterisk_parse_args(line: str) -> list[str]:
    """Python port of ``parse_args()`` in Asterisk's res_agi.c: how Asterisk splits a command.

    Like the C code it writes the words into one buffer, ending each with NUL on
    unquoted whitespace, and remembers where each word starts.
    """
    buf: list[str] = []
    starts: list[int] = []
    quoted = escaped = False
    whitespace = True
    for ch in line:
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and whitespace:  # an opening quote after whitespace starts a word
                starts.append(len(buf))
                whitespace = False
            continue
        if ch in " \t" and not quoted and not escaped:
            whitespace = True
            buf.append("\0")
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        if whitespace:  # "normal:" in the C code
            starts.append(len(buf))
            whitespace = False
        buf.append(ch)
        escaped = False
    text = "".join(buf) + "\0"
    return [text[start : text.index("\0", start)] for start in starts]


def agi_verbs(path: Path = AGI_COMMANDS_DOC) -> list[tuple[str, ...]]:
    """AGI command names from Asterisk's ``agi show commands``, longest first."""
    verbs: list[tuple[str, ...]] = []
    for raw in path.read_text(encoding="utf-8").splitlines()[1:]:
        m = re.match(r"^\s*(Yes|No)\s+(.+?)\s{2,}", raw)
        if m:
            verbs.append(tuple(m.group(2).upper().split()))
    return sorted(verbs, key=len, reverse=True)


def split_verb(tokens: list[str], verbs: Iterable[tuple[str, ...]]) -> tuple[str, list[str]]:
    """Split parsed words into the longest known verb and its arguments (unknown: first word)."""
    upper = tuple(t.upper() for t in tokens)
    for verb in verbs:
        if upper[: len(verb)] == verb:
            return " ".join(verb), tokens[len(verb):]
    return tokens[0], tokens[1:]


def make_env(
    script: str = "ivr",
    *,
    uniqueid: str = "1795319058.44",
    channel: str = "PJSIP/trunk-00000008",
    callerid: str = "+15551230001",
    args: Iterable[str] = (),
) -> list[str]:
    """An environment block shaped like Asterisk 22's (see session A), ending with ''."""
    lines = [
        "agi_network: yes",
        f"agi_network_script: {script}",
        f"agi_request: agi://127.0.0.1:4573/{script}",
        f"agi_channel: {channel}",
        "agi_language: en",
        "agi_type: PJSIP",
        f"agi_uniqueid: {uniqueid}",
        "agi_version: 22.10.1",
        f"agi_callerid: {callerid}",
        "agi_calleridname: Hotline Caller",
        "agi_callingpres: 0",
        "agi_callingani2: 0",
        "agi_callington: 0",
        "agi_callingtns: 0",
        "agi_dnid: 12345",
        "agi_rdnis: unknown",
        "agi_context: from-trunk",
        "agi_extension: 12345",
        "agi_priority: 4",
        "agi_enhanced: 0.0",
        "agi_accountcode: ",
        "agi_threadid: 139865327531712",
    ]
    lines += [f"agi_arg_{i}: {value}" for i, value in enumerate(args, start=1)]
    return lines + [""]


class FakeAsterisk:
    """Asterisk's side of a FastAGI connection, over real TCP, driven by the test."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.received: list[str] = []

    @classmethod
    async def connect(cls, port: int, env: Optional[list[str]] = None) -> "FakeAsterisk":
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        fake = cls(reader, writer)
        if env is not None:
            await fake.send(env)
        return fake

    async def send(self, lines: Iterable[str]) -> None:
        self.writer.write(b"".join(line.encode("utf-8") + b"\n" for line in lines))
        await self.writer.drain()

    async def read_command(self, timeout: float = 2.0) -> Optional[str]:
        """The next command line from the server, or None when it closed the connection."""
        raw = await asyncio.wait_for(self.reader.readline(), timeout)
        if not raw:
            return None
        assert raw.endswith(b"\n"), raw
        line = raw[:-1].decode("utf-8")
        self.received.append(line)
        return line

    async def expect_closed(self, timeout: float = 2.0) -> None:
        line = await self.read_command(timeout)
        assert line is None, f"server sent {line!r} instead of closing"

    async def play(self, script: Iterable[tuple[str, list[str]]], *, exact: bool = True) -> None:
        """For each (expected command, reply lines): read a command, check it, answer."""
        for expected, replies in script:
            line = await self.read_command()
            assert line is not None, f"server closed; expected {expected!r}"
            if exact:
                assert line == expected
            else:
                assert asterisk_parse_args(line) == asterisk_parse_args(expected), (line, expected)
            await self.send(replies)

    def close(self) -> None:
        self.writer.close()
