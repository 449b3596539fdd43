"""extensions.conf's dialplan, read the way Asterisk 22's ``pbx/pbx_config.c`` reads it.

On top of the ``.conf`` syntax of :mod:`pbxsim.asterisk_conf`: ``exten``/``same`` lines
with numbered, ``n``, ``s`` and ``hint`` priorities, labels, ``include``, ``switch`` and
``ignorepat``. Where Asterisk only logs a warning and drops the line (a duplicate
priority, an unknown dialplan keyword, ...), this raises :class:`ConfError`, as
:mod:`pbxsim.asterisk_conf` does. :class:`pbxsim.dialplan.Dialplan` is built from it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from .asterisk_conf import AsteriskConf, ConfError, Entry, Section

__all__ = ["DialplanLine", "parse_dialplan", "split_app"]


@dataclass(frozen=True)
class DialplanLine:
    """One dialplan line of a context.

    ``kind`` is ``"exten"`` (``app``/``args``: application and its raw, unsubstituted
    argument string), ``"hint"`` (``app``: the device string, as Asterisk stores it;
    ``priority`` None), ``"include"`` (``target``: the included context, ``args``: the raw
    value with any time spec), ``"switch"`` (``app``: the switch type, ``args``: its data) or
    ``"ignorepat"`` (``args``: the pattern). ``priority`` is the resolved number of ``n``,
    ``s``, ``label+1``... ``callerid`` is the caller-ID match of ``exten => 100/555,...``.
    """

    context: str
    kind: str
    exten: str = ""
    priority: Optional[int] = None
    label: Optional[str] = None
    app: str = ""
    args: str = ""
    target: Optional[str] = None
    callerid: Optional[str] = None
    line: int = 0
    filename: str = "<string>"

    @property
    def where(self) -> str:
        return f"{self.filename}:{self.line}"


_NOT_CONTEXTS = ("general", "globals")
_SWITCH_KEYS = ("switch", "eswitch", "lswitch")


def split_app(text: str) -> tuple[str, str]:
    """Split ``App(args)`` into ``("App", "args")`` as pbx_config does.

    The arguments run from the first ``(`` to the last ``)``, so they may hold parentheses
    and commas (``GotoIf($["${X}" = "1"]?yes:no)``). Raises ValueError without a closing
    parenthesis or with text after it.
    """
    text = text.strip()
    open_ = text.find("(")
    if open_ < 0:
        return text, ""
    close = text.rfind(")")
    if close < open_:
        raise ValueError(f"no closing parenthesis in {text!r}")
    if text[close + 1:].strip():
        raise ValueError(f"text after the closing parenthesis in {text!r}")
    return text[:open_].strip(), text[open_ + 1:close]


def parse_dialplan(conf: AsteriskConf) -> dict[str, list[DialplanLine]]:
    """The contexts of an extensions.conf, each with its lines in file order.

    Sections named like a context already seen add to it, as in Asterisk; ``[general]`` and
    ``[globals]`` are not contexts; templates are skipped (their entries reach the sections
    that inherit them).
    """
    contexts: dict[str, list[DialplanLine]] = {}
    for section in conf:
        if section.name.lower() in _NOT_CONTEXTS:
            continue
        lines = contexts.setdefault(section.name, [])
        _ContextReader(section, lines).read()
    return contexts


class _ContextReader:
    def __init__(self, section: Section, lines: list[DialplanLine]) -> None:
        self.section = section
        self.lines = lines
        # pbx_config resets these for every section, even one reopening a context.
        self.last_exten: Optional[str] = None
        self.last_cid: Optional[str] = None
        self.last_priority = -2

    def read(self) -> None:
        for entry in self.section.entries:
            key = entry.key.lower()
            try:
                if key in ("exten", "same"):
                    self._exten(entry, same=(key == "same"))
                elif key == "include":
                    target = re.split(r"[,|]", entry.value, maxsplit=1)[0].strip()
                    if not target:
                        raise ValueError("include without a context")
                    self._add(entry, "include", target=target, args=entry.value)
                elif key in _SWITCH_KEYS:
                    kind, _, data = entry.value.partition("/")
                    if not kind.strip():
                        raise ValueError(f"{entry.key} without a switch type")
                    self._add(entry, "switch", app=kind.strip(), args=data.strip())
                elif key == "ignorepat":
                    self._add(entry, "ignorepat", args=entry.value)
                else:
                    raise ValueError(f"unknown dialplan keyword '{entry.key}'")
            except ValueError as exc:
                raise ConfError(entry.filename, entry.line, f"[{self.section.name}] {exc}") from None

    def _add(self, entry: Entry, kind: str, **fields: object) -> DialplanLine:
        line = DialplanLine(self.section.name, kind, line=entry.line, filename=entry.filename, **fields)  # type: ignore[arg-type]
        self.lines.append(line)
        return line

    def _exten(self, entry: Entry, *, same: bool) -> None:
        rest = entry.value
        if same:
            if self.last_exten is None:
                raise ValueError("'same =>' with no 'exten =>' before it in this section")
            exten, cid = self.last_exten, self.last_cid
        else:
            exten_field, sep, rest = rest.partition(",")
            exten_field = exten_field.strip()
            if not sep or not exten_field:
                raise ValueError(f"expected 'exten => EXTEN,PRIORITY,App(args)', got {entry.value!r}")
            exten, _, cid_text = exten_field.partition("/")
            cid = cid_text or None
            self.last_exten, self.last_cid = exten, cid
        pri_field, _, app_text = rest.partition(",")
        pri_field = pri_field.strip()
        label: Optional[str] = None
        if "(" in pri_field:
            pri_field, _, label_text = pri_field.partition("(")
            if not label_text.endswith(")"):
                raise ValueError(f"label without closing ')' in priority {entry.value!r}")
            label = label_text[:-1].strip() or None
            pri_field = pri_field.strip()
        pri_name, plus, offset = pri_field.partition("+")
        if pri_name == "hint":
            priority: Optional[int] = None
            self.last_priority = -1
        else:
            number = self._priority(pri_name, exten, cid, entry.value)
            if plus:
                if not offset.strip().isdigit():
                    raise ValueError(f"bad priority offset in {pri_field!r}")
                number += int(offset)
            if number < 1:
                raise ValueError(f"priority {number} is not a valid priority (must be 1 or more)")
            priority = number
            self.last_priority = number
        if priority is None:
            if not app_text.strip():
                raise ValueError(f"hint without a device for extension '{exten}'")
            self._add(entry, "hint", exten=exten, callerid=cid, app=app_text.strip(), label=label)
            return
        if not app_text.strip():
            raise ValueError(f"no application for extension '{exten}' priority {priority}")
        app, args = split_app(app_text)
        if not app or "$" in app:
            raise ValueError(f"bad application name {app!r}")
        self._check_unique(exten, cid, priority, label)
        self._add(entry, "exten", exten=exten, callerid=cid, priority=priority, label=label, app=app, args=args)

    def _priority(self, name: str, exten: str, cid: Optional[str], value: str) -> int:
        if name in ("n", "next"):
            if self.last_priority == -2:
                raise ValueError("'n' priority on the first line of a section")
            return self.last_priority + 1
        if name in ("s", "same"):
            if self.last_priority == -2:
                raise ValueError("'s' priority on the first line of a section")
            return self.last_priority
        if re.fullmatch(r"-?\d+", name):
            return int(name)
        for line in self.lines:  # a label defined earlier in the same extension
            if line.kind == "exten" and line.exten == exten and line.callerid == cid and line.label == name:
                return line.priority or 0
        raise ValueError(f"invalid priority or unknown label {name!r} in {value!r}")

    def _check_unique(self, exten: str, cid: Optional[str], priority: int, label: Optional[str]) -> None:
        for line in self.lines:
            if line.kind != "exten" or line.exten != exten or line.callerid != cid:
                continue
            if line.priority == priority:
                raise ValueError(f"extension '{exten}' priority {priority} already defined at {line.where}")
            if label is not None and line.label == label:
                raise ValueError(f"extension '{exten}' label '{label}' already defined at {line.where}")
