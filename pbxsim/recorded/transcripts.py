"""Fixtures from the AMI traffic recorded on a real Asterisk 22 (``shared/asterisk/transcripts``).

Two layouts are read:

* stream files (01, 01b, 02b, 02c, 03b): ``### HH:MM:SS.mmm <<<`` (from Asterisk) or
  ``>>>`` (sent by the client), ``<<< banner``, ``<<< (connection closed by Asterisk)``,
  each followed by the message lines and an empty line;
* the per-action file (02): sections titled ``== ...``, with ``>>> sent`` and
  ``<<< received (HH:MM:SS.mmm)`` blocks, ``(banner on connect: '...')`` inside a sent
  block, and ``# connection closed by Asterisk afterwards: True`` notes.

This parser is deliberately independent of ``hotline.ami.protocol`` (plain line
handling, no shared code) so that it can serve as the oracle in protocol tests.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

__all__ = [
    "TRANSCRIPTS",
    "AMI_TRANSCRIPT_PREFIXES",
    "TranscriptMessage",
    "load_ami_transcript",
    "ami_wire_bytes",
    "transcript_path",
    "require_transcripts",
    "received",
    "section",
]

#: The recorded transcripts kept beside this module.
TRANSCRIPTS = Path(__file__).resolve().parent / "transcripts"

#: The files that hold AMI traffic (03 is FastAGI, 04 is SIP).
AMI_TRANSCRIPT_PREFIXES = ("01", "01b", "02", "02b", "02c", "03b")

_STREAM_MARK = re.compile(r"^### (\S+) (<<<|>>>)\s*(.*)$")
_RECEIVED_MARK = re.compile(r"^<<< received(?: \(([^)]*)\))?\s*$")
_BANNER_NOTE = re.compile(r"^\(banner on connect: '(.*)'\)$")


@dataclass(frozen=True)
class TranscriptMessage:
    """One message of a transcript.

    ``direction``: ``'in'`` = from Asterisk, ``'out'`` = sent by the client.
    ``time``: ``HH:MM:SS.mmm`` as recorded, or None. ``headers``: ``(name, value)`` pairs
    in order (empty for the banner). ``banner``: the greeting line, text in ``text``.
    ``section``: the ``== ...`` title in 02-ami-actions.txt, else None.
    ``closed_after``: Asterisk closed the connection after this message.
    ``text``: the message lines exactly as recorded, joined with LF. ``line``: 1-based
    line number in the file where the message body starts.
    """

    direction: str
    time: Optional[str]
    headers: list[tuple[str, str]] = field(default_factory=list)
    banner: bool = False
    section: Optional[str] = None
    closed_after: bool = False
    text: str = ""
    line: int = 0

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """First value of header ``name`` (exact case), or ``default``."""
        for key, value in self.headers:
            if key == name:
                return value
        return default

    @property
    def event(self) -> Optional[str]:
        return self.get("Event")

    @property
    def is_event(self) -> bool:
        return self.direction == "in" and not self.banner and bool(self.headers) and self.headers[0][0] == "Event"


def transcript_path(prefix: str) -> Path:
    """The transcript whose name starts with ``prefix + '-'`` (e.g. ``'02'``)."""
    matches = sorted(TRANSCRIPTS.glob(f"{prefix}-*.txt"))
    if not matches:
        raise FileNotFoundError(f"no transcript {prefix}-*.txt in {TRANSCRIPTS}")
    return matches[0]


def require_transcripts() -> None:
    """Skip the calling test (or module, at import time) if the transcripts are absent."""
    if not TRANSCRIPTS.is_dir():
        import pytest

        pytest.skip(
            f"recorded Asterisk transcripts not found at {TRANSCRIPTS} "
            "(expected the shared folder next to the repository)",
            allow_module_level=True,
        )


def _parse_headers(body: list[str], where: str) -> list[tuple[str, str]]:
    headers = []
    for line in body:
        name, sep, value = line.partition(": ")
        if not sep:
            raise ValueError(f"{where}: not a 'Name: value' line: {line!r}")
        headers.append((name, value))
    return headers


def load_ami_transcript(path: Path | str) -> list[TranscriptMessage]:
    """Every message of an AMI transcript, in file order (both layouts)."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").split("\n")
    out: list[TranscriptMessage] = []
    title: Optional[str] = None
    section_closes = False
    # The block being read: direction, time, banner flag, first body line number.
    block: Optional[tuple[str, Optional[str], bool, int]] = None
    body: list[str] = []

    def flush() -> None:
        nonlocal block, body
        if block is not None:
            direction, time, is_banner, start = block
            where = f"{path.name}:{start}"
            if is_banner:
                text = "\n".join(body)
                out.append(TranscriptMessage(direction, time, [], True, title, False, text, start))
            elif body:
                headers = _parse_headers(body, where)
                out.append(TranscriptMessage(direction, time, headers, False, title, False, "\n".join(body), start))
        block, body = None, []

    def mark_closed() -> None:
        # Flag the last message Asterisk sent in the current section / stream.
        for i in range(len(out) - 1, -1, -1):
            if out[i].direction == "in" and not out[i].banner:
                if out[i].section == title:
                    out[i] = replace(out[i], closed_after=True)
                return

    def end_section() -> None:
        nonlocal section_closes
        if section_closes:
            mark_closed()
        section_closes = False

    for number, line in enumerate(lines, start=1):
        if block is not None:
            if line == "":
                flush()
                continue
            banner_note = _BANNER_NOTE.match(line)
            if banner_note and block[0] == "out" and not body:
                # 02 layout: the banner Asterisk sent when the connection opened.
                out.append(TranscriptMessage("in", None, [], True, title, False, banner_note.group(1), number))
                continue
            body.append(line)
            continue
        mark = _STREAM_MARK.match(line)
        if mark:
            time, arrow, rest = mark.groups()
            direction = "in" if arrow == "<<<" else "out"
            if rest.startswith("(connection closed"):
                mark_closed()
            else:
                block = (direction, time, rest == "banner", number + 1)
            continue
        if line.startswith("== "):
            end_section()
            title = line[3:].strip()
            continue
        if line.startswith(">>> sent"):
            block = ("out", None, False, number + 1)
            continue
        received_mark = _RECEIVED_MARK.match(line)
        if received_mark:
            block = ("in", received_mark.group(1), False, number + 1)
            continue
        if line.startswith("# connection closed by Asterisk afterwards:"):
            section_closes = line.rsplit(":", 1)[1].strip() == "True"
        # anything else: comments, '=====' rules, blank lines
    flush()
    end_section()
    return out


def received(messages: Iterable[TranscriptMessage]) -> list[TranscriptMessage]:
    """The messages Asterisk sent, banner excluded."""
    return [m for m in messages if m.direction == "in" and not m.banner]


def section(messages: Iterable[TranscriptMessage], title: str) -> list[TranscriptMessage]:
    """Messages of the 02-ami-actions.txt section whose title is exactly ``title``
    (the first such section if the title repeats)."""
    found: list[TranscriptMessage] = []
    for m in messages:
        if m.section == title:
            found.append(m)
        elif found:
            break
    if not found:
        raise KeyError(f"no transcript section titled {title!r}")
    return found


def ami_wire_bytes(messages: Iterable[TranscriptMessage], direction: str = "in") -> bytes:
    """The exact bytes on the wire for the messages going one way (default: from
    Asterisk): CRLF line ends, an empty line after each message, the banner as one
    CRLF-terminated line."""
    chunks: list[str] = []
    for m in messages:
        if m.direction != direction:
            continue
        if m.banner:
            chunks.append(m.text + "\r\n")
        else:
            chunks.append("".join(f"{name}: {value}\r\n" for name, value in m.headers) + "\r\n")
    return "".join(chunks).encode("utf-8")
