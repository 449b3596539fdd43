"""The AGI wire protocol: building command lines and parsing Asterisk's replies.

Protocol only: no I/O and no business rules, so it can be tested line by line
against the transcripts recorded from a real Asterisk 22
(``shared/asterisk/transcripts/03-fastagi-sessions.txt``).

How Asterisk reads a command (``res_agi.c``): it reads one line of at most
``AGI_BUF_LEN - 1`` bytes (2048 - 1, the newline included; a longer line is cut
and the rest runs as the *next* command) and splits it with ``parse_args()``:
words are separated by spaces or tabs, a double quote toggles grouping (so
``""`` is an empty argument) and a backslash makes the next character literal,
inside or outside quotes. :func:`quote` produces exactly what that parser turns
back into the original value, and :func:`format_command` refuses lines that
would be cut, so no value, however hostile (a caller ID, a variable read back
from the channel), can add a word or a command.

How Asterisk replies:

* ``200 result=<r>[ (<data>)][ endpos=<n>]``: the command ran;
* ``510 Invalid or unknown command``;
* ``511 Command Not Permitted on a dead channel or intercept routine``: the
  channel hung up and the command needs a live one;
* ``520-Invalid command syntax.  Proper usage follows:`` then the usage text
  then ``520 End of proper usage.`` (or one line ``520 ...``);
* a bare ``HANGUP`` line, once, before the next reply after the channel hung up.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Optional

__all__ = [
    "AGI_MAX_LINE_BYTES",
    "HANGUP_LINE",
    "AGIResponse",
    "AGIError",
    "AGICommandError",
    "AGIProtocolError",
    "AGIHangup",
    "AGIInvalidCommand",
    "AGIUsageError",
    "AGITimeout",
    "quote",
    "format_command",
    "parse_response",
]

# Asterisk's AGI_BUF_LEN is 2048: fgets() keeps 2047 bytes, the newline included.
AGI_MAX_LINE_BYTES = 2046

# Sent by Asterisk, alone on a line, once after the channel hung up.
HANGUP_LINE = "HANGUP"


# --------------------------------------------------------------------------- errors


class AGIError(Exception):
    """Base of every AGI failure. ``command`` is the line sent, ``response`` the reply."""

    def __init__(
        self,
        message: str,
        *,
        command: Optional[str] = None,
        response: Optional["AGIResponse"] = None,
    ) -> None:
        super().__init__(message)
        self.command = command
        self.response = response


class AGICommandError(AGIError, ValueError):
    """We were asked to send something that is not a safe AGI command (bad verb, too long)."""


class AGIProtocolError(AGIError):
    """Asterisk (or whatever is on the other end) sent a line that is not AGI."""


class AGIHangup(AGIError):
    """The channel hung up (``HANGUP`` line, 511 reply) or the connection was closed."""


class AGIInvalidCommand(AGIError):
    """510: Asterisk does not know the command."""


class AGIUsageError(AGIError):
    """520: wrong arguments. ``usage`` keeps Asterisk's usage text (may span lines)."""

    def __init__(
        self,
        message: str,
        *,
        usage: str = "",
        command: Optional[str] = None,
        response: Optional["AGIResponse"] = None,
    ) -> None:
        super().__init__(message, command=command, response=response)
        self.usage = usage


class AGITimeout(AGIError):
    """No reply within the command timeout; the session is closed (replies would be out of step)."""


# --------------------------------------------------------------------------- commands

# What must be sent as one line: CR and LF would end the command early (the rest
# would run as another command) and NUL would cut the C string.
_LINE_BREAKERS = str.maketrans({"\r": " ", "\n": " ", "\x00": " "})
# Characters that parse_args() treats specially (any whitespace is quoted, to be safe).
_NEEDS_QUOTING = re.compile(r'[\s"\\]')
# Verbs are fixed words like "GET DATA"; never built from data.
_VERB = re.compile(r"[A-Za-z]+(?: [A-Za-z]+)*")


def quote(arg: object) -> str:
    """Make one argument safe for Asterisk's AGI parser.

    CR, LF and NUL become spaces. The value is wrapped in double quotes, with
    ``"`` and ``\\`` backslash-escaped, when it is empty or holds whitespace, a
    quote or a backslash; otherwise it is sent as is (``demo-congrats``, ``3000``).
    """
    text = str(arg).translate(_LINE_BREAKERS)
    if text and not _NEEDS_QUOTING.search(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@functools.lru_cache(maxsize=256)
def _verb(verb: str) -> Optional[str]:
    return verb.upper() if _VERB.fullmatch(verb) else None


def _checked_verb(verb: object) -> str:
    # Verbs are a handful of fixed words: checked once each, then from the cache.
    upper = _verb(verb) if isinstance(verb, str) else None
    if upper is None:
        raise AGICommandError(f"not an AGI verb: {verb!r}")
    return upper


def format_command(verb: str, *args: object) -> str:
    """Build one command line (without the newline): ``verb`` then the quoted ``args``.

    ``verb`` is the command's fixed words (``"STREAM FILE"``); it is checked, not
    quoted, and sent upper-case. Raises :class:`AGICommandError` for a verb that is
    not plain words or a line Asterisk would cut in two.
    """
    upper = _checked_verb(verb)
    line = " ".join([upper, *(quote(arg) for arg in args)])
    size = len(line.encode("utf-8"))
    if size > AGI_MAX_LINE_BYTES:
        raise AGICommandError(
            f"{verb.upper()} command is {size} bytes; Asterisk reads at most {AGI_MAX_LINE_BYTES}"
        )
    return line


# --------------------------------------------------------------------------- replies


@dataclass(frozen=True, slots=True)
class AGIResponse:
    """One reply status line.

    ``result`` is the text after ``result=`` (``"1"``, ``"-1"``, ``""``, or the
    digits of GET DATA), ``data`` the text in parentheses (a variable's value,
    ``timeout``), ``endpos`` the sample offset of STREAM FILE and friends. For
    5xx codes ``text`` is the message and ``multiline`` tells a ``520-`` start.
    """

    code: int
    result: str = ""
    data: Optional[str] = None
    endpos: Optional[int] = None
    text: str = ""
    multiline: bool = False
    line: str = ""

    @property
    def ok(self) -> bool:
        return self.code == 200

    @property
    def int_result(self) -> Optional[int]:
        """``result`` as an integer, or None when it is not one (empty, digits with ``#``...)."""
        try:
            return int(self.result)
        except ValueError:
            return None

    @property
    def digit(self) -> Optional[str]:
        """For commands answering the ASCII code of a key (STREAM FILE, WAIT FOR DIGIT): the key."""
        value = self.int_result
        if value is None or value <= 0 or value > 0x10FFFF:
            return None
        return chr(value)


# 200 result=<r>[ (<data>)][ endpos=<n>]; data is greedy so a value holding ')' stays whole.
_OK = re.compile(r"200 result=(?P<result>\S*)(?: \((?P<data>.*)\))?(?: endpos=(?P<endpos>-?\d+))?")
_STATUS = re.compile(r"(?P<code>\d{3})(?P<sep>[ -]|$)(?P<text>.*)")
_RESULT = re.compile(r"result=(?P<result>\S*)")
_ENDPOS = re.compile(r"endpos=(?P<endpos>-?\d+)")


def parse_response(line: str) -> AGIResponse:
    """Parse one status line (``200 ...``, ``510 ...``, ``520-...``).

    The bare ``HANGUP`` line and the text lines inside a 520 usage block are not
    status lines: the session handles them before calling this. Anything else
    that is not ``NNN`` followed by a space, ``-`` or the end raises
    :class:`AGIProtocolError`.
    """
    line = line.rstrip("\r\n")
    match = _OK.fullmatch(line)
    if match:
        endpos = match.group("endpos")
        return AGIResponse(
            code=200,
            result=match.group("result"),
            data=match.group("data"),
            endpos=int(endpos) if endpos is not None else None,
            line=line,
        )
    status = _STATUS.fullmatch(line)
    if not status:
        raise AGIProtocolError(f"not an AGI reply: {line[:200]!r}")
    code = int(status.group("code"))
    text = status.group("text")
    if code == 200:
        # A 200 line in a shape we do not know (a future field): keep what we can read.
        result = _RESULT.search(text)
        endpos_match = _ENDPOS.search(text)
        return AGIResponse(
            code=200,
            result=result.group("result") if result else "",
            endpos=int(endpos_match.group("endpos")) if endpos_match else None,
            text=text,
            line=line,
        )
    return AGIResponse(code=code, text=text, multiline=status.group("sep") == "-", line=line)
