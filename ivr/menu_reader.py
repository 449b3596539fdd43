"""Reading a menu file (YAML, the format of ``ivr/menu.py``) into a :class:`LinePlan`.

Every problem becomes one line (``<file>: <where>: <what>``) and reading goes on, so
``hotline ivr check`` lists them all at once. What holds across the whole plan (targets
that exist, reachable nodes, loops, audio) is checked afterwards by ``ivr/menu_check.py``.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Optional

import yaml

from hotline.model import valid_name

from .menu_model import (
    LANGUAGES,
    NODE_KINDS,
    SERVICES,
    TARGET_KINDS,
    Hours,
    LinePlan,
    Node,
    Target,
    Transfer,
    normalize_number,
)

__all__ = ["read_menu"]

# Prompt names are sound files (ivr/sounds/<lang>/hotline/<name>.wav): lower case only, so not
# hotline.model.valid_name, which checks the node, queue, skill and transfer names.
_PROMPT = re.compile(r"[a-z0-9][a-z0-9_-]*")
_DIGITS = re.compile(r"[0-9*#]{1,8}")
_NUMBER = re.compile(r"[0-9]{2,20}")
_HHMM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
MAX_LABEL = 40
_DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps dates as text: a wrong date becomes a problem line, not a traceback."""


_Loader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class _Reader:
    """Reads typed values out of the YAML document, collecting problems instead of stopping at the first."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def problem(self, where: str, message: str) -> None:
        self.problems.append(f"{self.source}: {where}: {message}" if where else f"{self.source}: {message}")

    def mapping(self, value: Any, where: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(where, "must be a mapping")
            return {}
        return {str(k): v for k, v in value.items()}

    def unknown(self, data: Mapping[str, Any], known: Iterable[str], where: str) -> None:
        for key in sorted(set(data) - set(known)):
            self.problem(where, f"unknown key '{key}'")

    def integer(self, value: Any, where: str, default: int, low: int, high: int) -> int:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.problem(where, f"must be an integer from {low} to {high} (got {value!r})")
            return default
        return value

    def prompt(self, value: Any, where: str) -> Optional[str]:
        if value is None:
            return None
        if not isinstance(value, str) or not _PROMPT.fullmatch(value):
            self.problem(where, f"prompt {value!r}: lower-case letters, digits, '-' or '_'")
            return None
        return value

    def label(self, value: Any, where: str) -> Mapping[str, str]:
        """Words for the agent's screen: ``label: 咨询`` or ``label: {zh: 咨询, en: consultation}``."""
        if value is None:
            return MappingProxyType({})
        if isinstance(value, str):
            value = {"zh": value}
        if not isinstance(value, dict) or not value:
            self.problem(where, "label: a text, or a mapping of language: text")
            return MappingProxyType({})
        words: dict[str, str] = {}
        for lang, text in value.items():
            if lang not in LANGUAGES:
                self.problem(where, f"label language {lang!r}: one of {', '.join(LANGUAGES)}")
            elif not isinstance(text, str) or not text.strip() or len(text) > MAX_LABEL or not text.isprintable():
                self.problem(where, f"label {lang}: 1 to {MAX_LABEL} printable characters")
            else:
                words[lang] = text.strip()
        return MappingProxyType(words)

    def language(self, value: Any, where: str) -> Optional[str]:
        if value is None:
            return None
        if value not in LANGUAGES:
            self.problem(where, f"language {value!r}: one of {', '.join(LANGUAGES)}")
            return None
        return str(value)

    def dates(self, item: Any, where: str) -> list[dt.date]:
        text = item.isoformat() if isinstance(item, dt.date) else str(item)
        first, sep, last = text.partition("..")
        try:
            start = dt.date.fromisoformat(first.strip())
            end = dt.date.fromisoformat(last.strip()) if sep else start
        except ValueError:
            self.problem(where, f"{text!r}: YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD")
            return []
        if end < start or (end - start).days > 31:
            self.problem(where, f"{text!r}: a range of at most 31 days, first day first")
            return []
        return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


class _MenuReader(_Reader):
    """The grammar of a menu file: the line, its nodes, targets, transfers, caller lists and hours."""

    def target(self, value: Any, where: str) -> Optional[Target]:
        data = self.mapping(value, where)
        if not data:
            if value is not None and isinstance(value, dict):
                self.problem(where, "empty target")
            elif value is None:
                self.problem(where, "missing target")
            return None
        kinds = [k for k in TARGET_KINDS if k in data]
        if len(kinds) != 1:
            self.problem(where, f"a target needs exactly one of {', '.join(TARGET_KINDS)}")
            return None
        kind = kinds[0]
        extra = {"queue": ("skills", "priority")}.get(kind, ())
        self.unknown(data, (kind, "language", "prompt", "label", *extra), where)
        language = self.language(data.get("language"), where)
        prompt = self.prompt(data.get("prompt"), where)
        label = self.label(data.get("label"), f"{where} label")
        value = data[kind]
        if kind == "hangup":
            if value is not True:
                self.problem(where, "hangup: must be true")
            return Target("hangup", language=language, prompt=prompt, label=label)
        if not isinstance(value, str) or not valid_name(value):
            self.problem(where, f"{kind} {value!r}: letters, digits, '-' or '_'")
            return None
        if kind == "goto":
            return Target("goto", node=value, language=language, prompt=prompt, label=label)
        if kind == "transfer":
            return Target("transfer", transfer=value, language=language, prompt=prompt, label=label)
        if kind == "service":
            if value not in SERVICES:
                self.problem(where, f"unknown service '{value}' (known: {', '.join(sorted(SERVICES))})")
            return Target("service", service=value, language=language, prompt=prompt, label=label)
        skills: dict[str, int] = {}
        for name, level in self.mapping(data.get("skills"), f"{where} skills").items():
            if not valid_name(name):
                self.problem(where, f"skill {name!r}: letters, digits, '-' or '_'")
                continue
            skills[name] = self.integer(level, f"{where} skill '{name}'", 1, 1, 10)
        priority = self.integer(data.get("priority"), f"{where} priority", 0, 0, 100)
        return Target("queue", queue=value, skills=MappingProxyType(skills), priority=priority,
                      language=language, prompt=prompt, label=label)

    def node(self, name: str, value: Any) -> Optional[Node]:
        node = self._node(name, value)
        if node is None:
            return None
        return dataclasses.replace(node, label=self.label(self.mapping(value, f"node '{name}'").get("label"),
                                                          f"node '{name}' label"))

    def _node(self, name: str, value: Any) -> Optional[Node]:
        where = f"node '{name}'"
        if not valid_name(name):
            self.problem(where, "node names: letters, digits, '-' or '_'")
        data = self.mapping(value, where)
        kind = data.get("type")
        if kind not in NODE_KINDS:
            self.problem(where, f"type {kind!r}: one of {', '.join(NODE_KINDS)}")
            return None
        common = ("type", "label")
        if kind == "play":
            self.unknown(data, (*common, "prompt", "next"), where)
            prompt = self.prompt(data.get("prompt"), where)
            if prompt is None and "prompt" not in data:
                self.problem(where, "a play node needs a prompt")
            return Node(name, kind, prompt=prompt, next=self.target(data.get("next"), f"{where} next"),
                        invalid_prompt=None)
        if kind == "broadcast":
            self.unknown(data, (*common, "next"), where)
            return Node(name, kind, next=self.target(data.get("next"), f"{where} next"), invalid_prompt=None)
        if kind == "caller-list":
            self.unknown(data, (*common, "list", "match", "next"), where)
            return Node(name, kind, caller_list=str(data.get("list")), invalid_prompt=None,
                        match=self.target(data.get("match"), f"{where} match"),
                        next=self.target(data.get("next"), f"{where} next"))
        if kind == "hours":
            self.unknown(data, (*common, "hours", "next", "closed"), where)
            return Node(name, kind, hours=str(data.get("hours")), invalid_prompt=None,
                        next=self.target(data.get("next"), f"{where} next"),
                        closed=self.target(data.get("closed"), f"{where} closed"))
        self.unknown(data, (*common, "prompt", "options", "default", "timeout_ms", "max_digits", "tries",
                            "invalid_prompt"), where)
        prompt = self.prompt(data.get("prompt"), where)
        if prompt is None and "prompt" not in data:
            self.problem(where, "a menu node needs a prompt")
        options: dict[str, Target] = {}
        max_digits = self.integer(data.get("max_digits"), f"{where} max_digits", 1, 1, 8)
        raw_options = self.mapping(data.get("options"), f"{where} options")
        for digits, target_value in raw_options.items():
            if not _DIGITS.fullmatch(digits) or len(digits) > max_digits:
                self.problem(where, f"option {digits!r}: 1 to max_digits ({max_digits}) keys 0-9, * or #")
                continue
            target = self.target(target_value, f"{where} option '{digits}'")
            if target is not None:
                options[digits] = target
        if not raw_options and "options" in data:
            self.problem(where, "a menu needs at least one option")
        elif "options" not in data:
            self.problem(where, "a menu needs options")
        default = self.target(data["default"], f"{where} default") if "default" in data else None
        invalid = self.prompt(data.get("invalid_prompt", "invalid"), f"{where} invalid_prompt")
        return Node(name, kind, prompt=prompt, options=MappingProxyType(options), default=default,
                    timeout_ms=self.integer(data.get("timeout_ms"), f"{where} timeout_ms", 5000, 500, 60000),
                    max_digits=max_digits, tries=self.integer(data.get("tries"), f"{where} tries", 3, 1, 10),
                    invalid_prompt=invalid)

    def hours(self, name: str, value: Any, calendar: Mapping[str, Any]) -> Optional[Hours]:
        where = f"hours '{name}'"
        data = self.mapping(value, where)
        self.unknown(data, ("days", "open", "holidays"), where)
        days: set[int] = set()
        for day in data.get("days") or ["mon", "tue", "wed", "thu", "fri"]:
            if str(day).lower() not in _DAYS:
                self.problem(where, f"day {day!r}: one of {', '.join(_DAYS)}")
            else:
                days.add(_DAYS[str(day).lower()])
        ranges: list[tuple[dt.time, dt.time]] = []
        for text in data.get("open") or []:
            start, sep, end = str(text).partition("-")
            if not sep or not _HHMM.fullmatch(start.strip()) or not _HHMM.fullmatch(end.strip()):
                self.problem(where, f"open {text!r}: HH:MM-HH:MM")
                continue
            begin, finish = dt.time.fromisoformat(start.strip()), dt.time.fromisoformat(end.strip())
            if begin >= finish:
                self.problem(where, f"open {text!r}: ends before it starts")
                continue
            ranges.append((begin, finish))
        if not ranges:
            self.problem(where, "needs at least one 'open' range such as 09:00-12:00")
        use_calendar = data.get("holidays", True)
        holidays: set[dt.date] = set()
        workdays: set[dt.date] = set()
        if use_calendar is True:
            holidays, workdays = self.calendar(calendar)
        elif use_calendar is not False:
            self.problem(where, "holidays: true (follow the calendar) or false")
        return Hours(name, frozenset(days), tuple(ranges), frozenset(holidays), frozenset(workdays))

    def calendar(self, calendar: Mapping[str, Any]) -> tuple[set[dt.date], set[dt.date]]:
        holidays: set[dt.date] = set()
        workdays: set[dt.date] = set()
        for year, entry in calendar.items():
            where = f"calendar {year}"
            data = self.mapping(entry, where)
            self.unknown(data, ("holidays", "workdays"), where)
            for label, into in (("holidays", holidays), ("workdays", workdays)):
                for item in data.get(label) or []:
                    for day in self.dates(item, f"{where} {label}"):
                        if str(day.year) != str(year):
                            self.problem(where, f"{day} is not in {year}")
                        into.add(day)
        return holidays, workdays

    def plan(self, doc: Any) -> Optional[LinePlan]:
        data = self.mapping(doc, "")
        if not data:
            if not self.problems:
                self.problem("", "empty menu file")
            return None
        self.unknown(data, ("line", "start", "languages", "default_language", "fallback", "transfer_prompt",
                            "transfers", "caller_lists", "hours", "calendar", "nodes"), "")
        line = data.get("line")
        if not isinstance(line, str) or not valid_name(line):
            self.problem("line", f"{line!r}: the line's name (main, enterprise), letters, digits, '-' or '_'")
            line = "?"
        languages = data.get("languages", list(LANGUAGES))
        if not isinstance(languages, list) or not languages:
            self.problem("languages", "a list such as [zh, yue, en]")
            languages = list(LANGUAGES)
        languages = [lang for lang in languages if self.language(lang, "languages")]
        default_language = self.language(data.get("default_language", "zh"), "default_language") or "zh"
        if languages and default_language not in languages:
            self.problem("default_language", f"'{default_language}' is not among the line's languages")
        fallback = self.target(data.get("fallback"), "fallback")
        if fallback is not None and fallback.kind != "queue":
            self.problem("fallback", "must be a queue (callers who cannot choose get a person)")
            fallback = None
        transfers: dict[str, Transfer] = {}
        for name, value in self.mapping(data.get("transfers"), "transfers").items():
            where = f"transfer '{name}'"
            entry = self.mapping(value, where)
            self.unknown(entry, ("number", "hours"), where)
            number = str(entry.get("number", ""))
            if not valid_name(name):
                self.problem(where, "names: letters, digits, '-' or '_'")
            if not _NUMBER.fullmatch(number):
                self.problem(where, f"number {number!r}: 2 to 20 digits")
                continue
            hours = entry.get("hours")
            transfers[name] = Transfer(name, number, str(hours) if hours is not None else None)
        lists: dict[str, frozenset[str]] = {}
        for name, numbers in self.mapping(data.get("caller_lists"), "caller_lists").items():
            if not isinstance(numbers, list):
                self.problem(f"caller list '{name}'", "must be a list of numbers")
                continue
            normalized = {normalize_number(str(n)) for n in numbers}
            if "" in normalized or any(len(n) < 3 for n in normalized):
                self.problem(f"caller list '{name}'", "every entry must be a phone number")
            lists[name] = frozenset(n for n in normalized if n)
        calendar = self.mapping(data.get("calendar"), "calendar")
        hours = {name: h for name, value in self.mapping(data.get("hours"), "hours").items()
                 if (h := self.hours(name, value, calendar)) is not None}
        nodes = {name: n for name, value in self.mapping(data.get("nodes"), "nodes").items()
                 if (n := self.node(name, value)) is not None}
        if "nodes" not in data:
            self.problem("nodes", "missing")
        start = data.get("start")
        if not isinstance(start, str):
            self.problem("start", "missing: the node every call starts in")
            start = ""
        elif start not in nodes and nodes:
            self.problem("start", f"unknown node '{start}'")
        if fallback is None:
            if "fallback" not in data:
                self.problem("fallback", "missing: the queue for callers who cannot choose")
            return None
        return LinePlan(
            name=line, start=start, nodes=MappingProxyType(nodes), fallback=fallback,
            languages=tuple(languages), default_language=default_language,
            transfer_prompt=self.prompt(data.get("transfer_prompt"), "transfer_prompt"),
            transfers=MappingProxyType(transfers), caller_lists=MappingProxyType(lists),
            hours=MappingProxyType(hours), source=self.source,
        )


def read_menu(path: Path) -> tuple[Optional[LinePlan], list[str]]:
    """The plan of one menu file (None if it has none) and the problems met reading it."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return None, [f"{source}: cannot read ({exc.strerror})"]
    try:
        doc = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        return None, [f"{source}:{where}: not valid YAML"]
    reader = _MenuReader(source)
    plan = reader.plan(doc)
    return plan, reader.problems
