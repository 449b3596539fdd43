"""AMI framing: parse the byte stream from Asterisk into messages, encode actions.

The Asterisk Manager Interface is line based: every line is ``Name: value`` and ends with
CRLF, every message ends with an empty line. The first line of a connection is a banner
(``Asterisk Call Manager/11.0.0``) that is *not* followed by an empty line.

The parser is written for throughput (an Asterisk under load sends tens of thousands of
events a second): each chunk from the socket is decoded, CRLF-normalised and split into
messages by three C-level string operations, with no per-line Python code. A message is
parsed lazily: ``msg.get(name)`` is a substring search in its text, and the full dict is
built (one list comprehension and ``dict()``) only when something needs every header.
Unusual messages (repeated headers, lines without ``": "``, legacy ``Response: Follows``)
take a slower, line-by-line path.

The encoder is written for safety: header names are checked and CR, LF and NUL in values
are replaced by spaces, so data from callers (caller ID, IVR input) can never inject
another header or another action.
"""
from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Optional, Union

from .errors import AMIProtocolError

__all__ = [
    "Message",
    "AMIParser",
    "encode_action",
    "encode_message",
    "HeadersInput",
]

#: What :func:`encode_action` and :class:`Message` accept: a mapping (a list or tuple value
#: means the header is repeated) or an iterable of ``(name, value)`` pairs.
HeadersInput = Union[Mapping[str, Any], Iterable[tuple[str, Any]]]

_MISSING: Any = object()

# Legacy (Asterisk <= 13) ``Action: Command`` reply: raw output lines follow the headers,
# terminated by this marker. Newer Asterisk sends ``Output:`` headers instead.
_END_COMMAND = "--END COMMAND--"
_FOLLOWS = "Response: Follows"
_FOLLOWS_HEADERS = frozenset({"Response", "Privilege", "ActionID", "Message"})
# A legacy command reply may contain blank lines; stop waiting for its end marker after
# this many characters so a peer that never sends one cannot make us buffer forever.
_FOLLOWS_MAX = 4 * 1024 * 1024

# The banner is a single line; anything longer is not a banner.
_BANNER_MAX = 1024

_HEADER_NAME = re.compile(r"[A-Za-z0-9_-]+")
# CR and LF end an AMI line; NUL ends a C string inside Asterisk. Replace all three.
_VALUE_SANITIZE = {0: " ", 10: " ", 13: " "}


class Message(Mapping[str, str]):
    """One AMI message (response or event): header name -> value.

    * Header order and the exact case of names are kept (``list(msg)``, ``msg.headers``).
    * Lookups (``msg['Uniqueid']``, ``msg.get(...)``, ``in``) try the exact name first and
      then ignore case, because Asterisk is not consistent (``Uniqueid`` in most events,
      ``UniqueID`` in Cdr/CEL).
    * Repeated headers (``Output:`` lines of a Command reply, ``ChanVariable``) are kept:
      ``msg[name]`` gives the first value, ``msg.getall(name)`` all of them, in order.
    * A line without ``": "`` (never sent by Asterisk 22) is kept under the empty name.

    Messages made by the parser are parsed lazily: they keep the received text and
    ``get`` finds one header with a C-level substring search, so the many events nobody
    looks at (VarSet, Newexten, RTCP...) cost almost nothing. The full dict is built the
    first time something needs every header (iteration, ``headers``, ``getall``, ``==``).
    Both ways give the same answers.
    """

    __slots__ = ("_raw", "_d", "_pairs", "_lower")

    def __init__(self, headers: HeadersInput = ()) -> None:
        pairs = [(str(k), str(v)) for k, v in _iter_pairs(headers) if v is not None]
        d: dict[str, str] = {}
        for k, v in pairs:
            d.setdefault(k, v)  # first value wins, like email.message
        self._raw: Optional[str] = None
        self._d: Optional[dict[str, str]] = d
        self._pairs: Optional[list[tuple[str, str]]] = pairs if len(pairs) != len(d) else None
        self._lower: Optional[dict[str, str]] = None

    # -- lookups ------------------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        d = self._d
        if d is None:
            # Hot path of every event handler: find "\n<key>: " in the received text.
            # Lines never contain "\n", so a match is always a whole header line; the
            # first match is the first value, as in the parsed dict.
            raw: str = self._raw  # type: ignore[assignment]
            if key and ":" not in key and "\n" not in key:
                if raw.startswith(key) and raw.startswith(": ", len(key)):
                    start = len(key) + 2
                else:
                    start = raw.find("\n" + key + ": ")
                    if start < 0:
                        return self._raw_get_ci(raw, key, default)
                    start += len(key) + 3
                end = raw.find("\n", start)
                return raw[start:] if end < 0 else raw[start:end]
            d = self._parsed()
        value = d.get(key, _MISSING)
        if value is _MISSING:
            value = self._get_ci(key)
            if value is _MISSING:
                return default
        return value

    def __getitem__(self, key: str) -> str:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key, _MISSING) is not _MISSING

    def __iter__(self) -> Iterator[str]:
        return iter(self._parsed())

    def __len__(self) -> int:
        return len(self._parsed())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Message):
            return self.headers == other.headers
        if isinstance(other, Mapping):
            return self._parsed() == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equality is by content

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self.headers)
        return f"<Message {body}>"

    # -- AMI specifics ------------------------------------------------------------------
    @property
    def headers(self) -> list[tuple[str, str]]:
        """Every ``(name, value)`` pair in wire order, repeated headers included."""
        d = self._parsed()
        if self._pairs is not None:
            return list(self._pairs)
        return list(d.items())

    def getall(self, key: str) -> list[str]:
        """All values of a (possibly repeated) header, in order; case-insensitive."""
        lk = key.lower()
        return [v for k, v in self.headers if k == key or k.lower() == lk]

    def getvars(self, key: str = "ChanVariable") -> dict[str, str]:
        """Repeated ``NAME=value`` headers (``ChanVariable``, ``Variable``) as a dict."""
        out: dict[str, str] = {}
        for item in self.getall(key):
            name, _, value = item.partition("=")
            out[name] = value
        return out

    @property
    def event(self) -> Optional[str]:
        """The ``Event`` header, or None for a response."""
        return self.get("Event")

    @property
    def response(self) -> Optional[str]:
        """The ``Response`` header (``Success``, ``Error``, ``Follows``, ``Goodbye``)."""
        return self.get("Response")

    @property
    def action_id(self) -> Optional[str]:
        return self.get("ActionID")

    # -- internals ----------------------------------------------------------------------
    def _parsed(self) -> dict[str, str]:
        d = self._d
        if d is None:
            d, self._pairs = _parse_lines(self._raw.split("\n"))  # type: ignore[union-attr]
            self._d = d
        return d

    def _raw_get_ci(self, raw: str, key: str, default: Any) -> Any:
        """Case-insensitive lookup in the received text, without parsing it."""
        low = raw.lower()
        if len(low) != len(raw):  # a rare character changed length when lowered
            value = self._get_ci(key)
            return default if value is _MISSING else value
        lk = key.lower()
        if low.startswith(lk) and low.startswith(": ", len(lk)):
            start = len(lk) + 2
        else:
            start = low.find("\n" + lk + ": ")
            if start < 0:
                return default
            start += len(lk) + 3
        end = raw.find("\n", start)
        return raw[start:] if end < 0 else raw[start:end]

    def _get_ci(self, key: str) -> Any:
        lower = self._lower
        if lower is None:
            # Built once per message, only when a lookup misses by case.
            lower = {}
            for k, v in self._parsed().items():
                lower.setdefault(k.lower(), v)
            self._lower = lower
        return lower.get(key.lower(), _MISSING)


_new_message = object.__new__


def _from_raw(raw: str) -> Message:
    """A lazily parsed Message over one received message (lines joined by LF)."""
    m = _new_message(Message)
    m._raw = raw
    m._d = None
    m._pairs = None
    m._lower = None
    return m


def _from_dict(d: dict[str, str], pairs: Optional[list[tuple[str, str]]]) -> Message:
    m = _new_message(Message)
    m._raw = None
    m._d = d
    m._pairs = pairs
    m._lower = None
    return m


def _iter_pairs(headers: HeadersInput) -> Iterator[tuple[Any, Any]]:
    """Yield ``(name, value)``; list/tuple values become repeated headers."""
    if isinstance(headers, Message):
        items: Iterable[Any] = headers.headers
    elif isinstance(headers, Mapping):
        items = headers.items()
    else:
        items = headers
    for item in items:
        try:
            name, value = item
        except (TypeError, ValueError):
            raise AMIProtocolError(f"header must be a (name, value) pair, got {item!r}") from None
        if isinstance(value, (list, tuple)):
            for v in value:
                yield name, v
        else:
            yield name, value


def _parse_lines(lines: list[str]) -> tuple[dict[str, str], Optional[list[tuple[str, str]]]]:
    """Parse one message's lines into (first-value dict, all pairs if any repeat)."""
    start = 0
    while start < len(lines) and not lines[start]:
        start += 1  # blank lines before the message
    if start < len(lines) and lines[start] == _FOLLOWS and lines[-1].endswith(_END_COMMAND):
        return _parse_follows(lines[start:])
    try:
        # Fast path: every line is "Name: value". A line without ": " splits into one
        # item and makes dict() raise, which sends the message to the careful path.
        d = dict([line.split(": ", 1) for line in lines])
    except ValueError:
        pass
    else:
        if len(d) == len(lines):
            return d, None
    # Careful path: repeated headers, blank lines, lines without ": ", legacy Follows.
    pairs: list[tuple[str, str]] = []
    for line in lines:
        if not line:
            continue
        name, sep, value = line.partition(": ")
        if not sep:
            # ``Name:value`` or ``Name:`` (no space): accept; a line without any colon is
            # kept whole under the empty name so that nothing received is ever dropped.
            name, sep, value = line.partition(":")
            if sep and _HEADER_NAME.fullmatch(name):
                value = value[1:] if value.startswith(" ") else value
            else:
                name, value = "", line
        pairs.append((name, value))
    return _pairs_to_dict(pairs)


def _pairs_to_dict(pairs: list[tuple[str, str]]) -> tuple[dict[str, str], Optional[list[tuple[str, str]]]]:
    d: dict[str, str] = {}
    for k, v in pairs:
        d.setdefault(k, v)
    return d, (pairs if len(pairs) != len(d) else None)


def _parse_follows(lines: list[str]) -> tuple[dict[str, str], Optional[list[tuple[str, str]]]]:
    """Legacy ``Response: Follows``: headers, raw output lines, ``--END COMMAND--``.

    The raw lines (blank ones included) become ``Output`` headers so callers read command
    output the same way for every Asterisk version: ``msg.getall('Output')``.
    """
    pairs: list[tuple[str, str]] = []
    body = False
    for line in lines:
        if not body:
            name, sep, value = line.partition(": ")
            if sep and name in _FOLLOWS_HEADERS:
                pairs.append((name, value))
                continue
            body = True
        if line.endswith(_END_COMMAND):
            line = line[: -len(_END_COMMAND)]
            if line:
                pairs.append(("Output", line))
            break
        pairs.append(("Output", line))
    return _pairs_to_dict(pairs)


def _follows_incomplete(part: str) -> bool:
    """True if ``part`` is a legacy Follows reply whose raw body was cut by a blank line."""
    if not part.startswith(_FOLLOWS) or _END_COMMAND in part:
        return False
    # Only a raw body (lines that are not ``Name: value``) can contain blank lines; a
    # Follows reply made only of headers (``Output: ...``) is complete as it is.
    for line in part.split("\n")[1:]:
        name, sep, _ = line.partition(": ")
        if not sep or not _HEADER_NAME.fullmatch(name):
            return len(part) < _FOLLOWS_MAX
    return False


class AMIParser:
    """Incremental AMI parser: feed it bytes as they arrive, get complete messages back.

    Accepts CRLF (the standard) and bare LF line ends, a chunk boundary anywhere (inside
    a CRLF or inside a multi-byte UTF-8 character), extra blank lines, and the banner line
    that opens a connection (kept in :attr:`banner`, not returned as a message).
    """

    __slots__ = ("_decode", "_buf", "_banner_pending", "banner")

    def __init__(self, expect_banner: bool = True) -> None:
        # Incremental decoder: a UTF-8 character split between two reads is joined, not
        # replaced. Undecodable bytes become U+FFFD rather than killing the connection.
        self._decode = codecs.getincrementaldecoder("utf-8")("replace").decode
        self._buf = ""
        self._banner_pending = expect_banner
        #: The banner line (``Asterisk Call Manager/11.0.0``) once received, else None.
        self.banner: Optional[str] = None

    def feed(self, data: bytes) -> list[Message]:
        """Consume ``data``; return the messages it completes (possibly none)."""
        text = self._decode(data)
        if self._buf:
            text = self._buf + text
        # One C-level pass turns CRLF into LF; a CR left at the very end (a CRLF split
        # between reads) stays in the buffer and is joined with its LF next time.
        text = text.replace("\r\n", "\n")
        if self._banner_pending:
            text = self._take_banner(text)
            if self._banner_pending:
                self._buf = text
                return []
        parts = text.split("\n\n")
        self._buf = parts.pop()
        if _FOLLOWS in text:
            return self._messages_with_follows(parts)
        # One lazily parsed Message per non-empty part (empty = extra blank line).
        return [_from_raw(part) for part in parts if part]

    def _messages_with_follows(self, parts: list[str]) -> list[Message]:
        out: list[Message] = []
        for part in self._join_follows(parts):
            part = part.lstrip("\n")
            if not part:
                continue
            if part.startswith(_FOLLOWS) and part.endswith(_END_COMMAND):
                # Parsed now: its raw output lines must not be searched as headers.
                out.append(_from_dict(*_parse_lines(part.split("\n"))))
            else:
                out.append(_from_raw(part))
        return out

    def _take_banner(self, text: str) -> str:
        nl = text.find("\n")
        if nl < 0:
            if len(text) > _BANNER_MAX:
                self._banner_pending = False  # no banner: parse as messages
            return text
        self._banner_pending = False
        first = text[:nl]
        if first and ": " not in first:
            self.banner = first.rstrip("\r")
            return text[nl + 1 :]
        return text  # the peer sent no banner; the first line is a header

    def _join_follows(self, parts: list[str]) -> list[str]:
        """Re-join a legacy Follows reply whose output contained blank lines."""
        out: list[str] = []
        i = 0
        while i < len(parts):
            part = parts[i]
            i += 1
            if not _follows_incomplete(part):
                out.append(part)
                continue
            while i < len(parts) and _follows_incomplete(part):
                part = part + "\n\n" + parts[i]
                i += 1
            if _follows_incomplete(part):
                # Its end marker has not arrived yet: wait for more data.
                self._buf = part + "\n\n" + self._buf
                break
            out.append(part)
        return out


def _clean_value(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    s = value if isinstance(value, str) else str(value)
    if "\r" in s or "\n" in s or "\0" in s:
        s = s.translate(_VALUE_SANITIZE)
    return s


def encode_message(headers: HeadersInput) -> bytes:
    """Encode any AMI message (``Name: value`` CRLF lines and a final CRLF).

    Header names must match ``[A-Za-z0-9_-]+`` (else :class:`AMIProtocolError`). Values
    are converted with ``str`` (``True``/``False`` become ``true``/``false``; ``None``
    leaves the header out) and CR, LF and NUL in them are replaced by a space, so no value
    can start a new header or a new message.
    """
    lines: list[str] = []
    for name, value in _iter_pairs(headers):
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise AMIProtocolError(f"invalid AMI header name: {name!r}")
        if value is None:
            continue
        lines.append(f"{name}: {_clean_value(value)}\r\n")
    if not lines:
        raise AMIProtocolError("empty AMI message")
    lines.append("\r\n")
    # Lone surrogates cannot be sent as UTF-8; replace them rather than fail mid-call.
    return "".join(lines).encode("utf-8", "replace")


def encode_action(headers: HeadersInput) -> bytes:
    """Encode an action; like :func:`encode_message` but an ``Action`` header is required.

    >>> encode_action({'Action': 'Ping', 'ActionID': '1'})
    b'Action: Ping\\r\\nActionID: 1\\r\\n\\r\\n'
    >>> encode_action([('Action', 'Originate'), ('Variable', 'A=1'), ('Variable', 'B=2')])
    b'Action: Originate\\r\\nVariable: A=1\\r\\nVariable: B=2\\r\\n\\r\\n'
    """
    pairs = list(_iter_pairs(headers))
    if not any(isinstance(n, str) and n.lower() == "action" for n, _ in pairs):
        raise AMIProtocolError("an AMI action needs an 'Action' header")
    return encode_message(pairs)
