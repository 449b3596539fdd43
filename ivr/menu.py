"""Voice menus as data: the YAML files of ``ivr/menus/`` loaded into checked, frozen plans.

A menu file describes one hotline number (a *line*): the node the call starts in,
the nodes (``play``, ``menu``, ``broadcast``, ``caller-list``, ``hours``), and
where each choice leads: a *target*, a mapping with exactly one of

* ``goto: <node>``: another node of the file (a submenu);
* ``queue: <name>`` with ``skills: {skill: level}`` and ``priority``: hand the
  caller to the ACD; the language skill of the caller's language is added;
* ``transfer: <name>``: an external number from the file's ``transfers``;
* ``service: <name>``: an IVR service (``progress-query``, ``callback``, ``message``), which
  decides the next target;
* ``hangup: true``: the IVR served the caller and the call ends;

and, optionally, ``language: zh|yue|en`` (the caller's language from now on) and
``prompt: <name>`` (played first). Prompt names are sound files
``hotline/<name>`` that must exist as ``ivr/sounds/<lang>/hotline/<name>.wav``
in every language of the line.

:func:`check_file` lists every problem of a file, one line each (``hotline ivr
check``); :func:`load_line` returns the plan or raises :class:`MenuError` with
all of them, so the IVR refuses to start with a broken menu.
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Optional

import yaml

from hotline.model import format_skills, valid_name
from hotline.settings import SettingsError

__all__ = [
    "MENUS_DIR",
    "SOUNDS_DIR",
    "LANGUAGES",
    "LANGUAGE_SKILLS",
    "SERVICES",
    "MenuError",
    "Target",
    "Node",
    "Transfer",
    "Hours",
    "LinePlan",
    "check_file",
    "check_plan",
    "load_line",
    "load_lines",
    "normalize_number",
    "prompt_sound",
]

MENUS_DIR = Path(__file__).resolve().parent / "menus"
SOUNDS_DIR = Path(__file__).resolve().parent / "sounds"

# The caller's language: prompts are played from sounds/<lang>/, and the agent must speak it.
LANGUAGES = ("zh", "yue", "en")
LANGUAGE_SKILLS: Mapping[str, str] = MappingProxyType(
    {"zh": "mandarin", "yue": "cantonese", "en": "english"}
)
# Services the IVR itself provides (ivr/app.py registers their code).
SERVICES = frozenset({"progress-query", "callback", "message"})

NODE_KINDS = ("play", "menu", "broadcast", "caller-list", "hours")
TARGET_KINDS = ("goto", "queue", "transfer", "service", "hangup")
_PROMPT = re.compile(r"[a-z0-9][a-z0-9_-]*")
_DIGITS = re.compile(r"[0-9*#]{1,8}")
_NUMBER = re.compile(r"[0-9]{2,20}")
_HHMM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
_DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps dates as text: a wrong date becomes a problem line, not a traceback."""


_Loader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class MenuError(SettingsError, ValueError):
    """A menu file is wrong. ``problems`` holds one line per problem.

    A :class:`~hotline.settings.SettingsError`: the menus are configuration, so the
    ``hotline`` command ends with one ``hotline: error: ...`` line when they are wrong.
    """

    def __init__(self, problems: list[str]) -> None:
        more = f" (and {len(problems) - 1} more problem(s): see 'hotline ivr check')" if len(problems) > 1 else ""
        super().__init__(f"menu {problems[0]}{more}")
        self.problems = problems


def prompt_sound(name: str) -> str:
    """The sound name Asterisk plays for prompt ``name`` (looked up under sounds/<language>/)."""
    return f"hotline/{name}"


def normalize_number(raw: str) -> str:
    """A caller number reduced to its national digits (caller ID is untrusted: digits only).

    ``+86 139-0000-0000``, ``008613900000000`` and ``13900000000`` are the same number.
    """
    digits = "".join(ch for ch in str(raw)[:64] if ch.isdigit())
    for prefix in ("0086", "86"):
        if digits.startswith(prefix) and len(digits) - len(prefix) >= 10:
            return digits[len(prefix):]
    return digits


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Target:
    """Where a choice leads (see the module docstring)."""

    kind: str
    node: Optional[str] = None            # goto
    queue: Optional[str] = None           # queue
    skills: Mapping[str, int] = field(default_factory=dict)
    priority: int = 0
    transfer: Optional[str] = None        # transfer
    service: Optional[str] = None         # service
    language: Optional[str] = None
    prompt: Optional[str] = None


@dataclass(frozen=True)
class Node:
    name: str
    kind: str
    prompt: Optional[str] = None
    next: Optional[Target] = None         # play, broadcast; caller-list: no match; hours: open
    options: Mapping[str, Target] = field(default_factory=dict)   # menu
    default: Optional[Target] = None      # menu: no valid key after the tries
    timeout_ms: int = 5000
    max_digits: int = 1
    tries: int = 3
    invalid_prompt: Optional[str] = "invalid"
    caller_list: Optional[str] = None     # caller-list
    match: Optional[Target] = None        # caller-list: the number is on the list
    hours: Optional[str] = None           # hours: the business hours to check
    closed: Optional[Target] = None       # hours: outside them

    def targets(self) -> list[tuple[str, Target]]:
        """(where, target) pairs, ``where`` naming the field for problem lines."""
        found: list[tuple[str, Target]] = []
        for label, target in (("next", self.next), ("default", self.default), ("match", self.match),
                              ("closed", self.closed)):
            if target is not None:
                found.append((label, target))
        found += [(f"option '{digits}'", target) for digits, target in self.options.items()]
        return found


@dataclass(frozen=True)
class Transfer:
    """An external number the IVR can hand the caller to (dialled by the dialplan)."""

    name: str
    number: str
    hours: Optional[str] = None


@dataclass(frozen=True)
class Hours:
    """Opening hours of a group: week days and time ranges, on the holiday calendar."""

    name: str
    days: frozenset[int]                             # 0 = Monday
    ranges: tuple[tuple[dt.time, dt.time], ...]
    holidays: frozenset[dt.date] = frozenset()       # closed although a week day
    workdays: frozenset[dt.date] = frozenset()       # make-up working days: open although a weekend

    def open_at(self, when: dt.datetime) -> bool:
        day = when.date()
        if day in self.holidays:
            return False
        if day not in self.workdays and when.weekday() not in self.days:
            return False
        now = when.time()
        return any(start <= now < end for start, end in self.ranges)


@dataclass(frozen=True)
class LinePlan:
    """One hotline number: its nodes, where it starts, and what it may hand over to."""

    name: str
    start: str
    nodes: Mapping[str, Node]
    fallback: Target                                  # a person: after retries, on errors
    languages: tuple[str, ...] = LANGUAGES
    default_language: str = "zh"
    transfer_prompt: Optional[str] = None             # played before every hand-over to a queue
    transfers: Mapping[str, Transfer] = field(default_factory=dict)
    caller_lists: Mapping[str, frozenset[str]] = field(default_factory=dict)
    hours: Mapping[str, Hours] = field(default_factory=dict)
    source: str = "<memory>"

    def prompts(self) -> set[str]:
        names: set[str] = set()
        if self.transfer_prompt:
            names.add(self.transfer_prompt)
        for node in self.nodes.values():
            names.update(p for p in (node.prompt, node.invalid_prompt) if p)
            names.update(t.prompt for _, t in node.targets() if t.prompt)
        if self.fallback.prompt:
            names.add(self.fallback.prompt)
        return names

    def skills_for(self, target: Target, language: str) -> str:
        """``HOTLINE_SKILLS`` for a queue target in ``language``: the language skill first."""
        skills = dict(target.skills)
        lang_skill = LANGUAGE_SKILLS[language]
        skills[lang_skill] = max(skills.get(lang_skill, 1), 1)
        return format_skills(skills)


# --------------------------------------------------------------------------- parsing


class _Reader:
    """Turns the YAML document into a plan, collecting problems instead of stopping at the first."""

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

    def language(self, value: Any, where: str) -> Optional[str]:
        if value is None:
            return None
        if value not in LANGUAGES:
            self.problem(where, f"language {value!r}: one of {', '.join(LANGUAGES)}")
            return None
        return str(value)

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
        self.unknown(data, (kind, "language", "prompt", *extra), where)
        language = self.language(data.get("language"), where)
        prompt = self.prompt(data.get("prompt"), where)
        value = data[kind]
        if kind == "hangup":
            if value is not True:
                self.problem(where, "hangup: must be true")
            return Target("hangup", language=language, prompt=prompt)
        if not isinstance(value, str) or not valid_name(value):
            self.problem(where, f"{kind} {value!r}: letters, digits, '-' or '_'")
            return None
        if kind == "goto":
            return Target("goto", node=value, language=language, prompt=prompt)
        if kind == "transfer":
            return Target("transfer", transfer=value, language=language, prompt=prompt)
        if kind == "service":
            if value not in SERVICES:
                self.problem(where, f"unknown service '{value}' (known: {', '.join(sorted(SERVICES))})")
            return Target("service", service=value, language=language, prompt=prompt)
        skills: dict[str, int] = {}
        for name, level in self.mapping(data.get("skills"), f"{where} skills").items():
            if not valid_name(name):
                self.problem(where, f"skill {name!r}: letters, digits, '-' or '_'")
                continue
            skills[name] = self.integer(level, f"{where} skill '{name}'", 1, 1, 10)
        priority = self.integer(data.get("priority"), f"{where} priority", 0, 0, 100)
        return Target("queue", queue=value, skills=MappingProxyType(skills), priority=priority,
                      language=language, prompt=prompt)

    def node(self, name: str, value: Any) -> Optional[Node]:
        where = f"node '{name}'"
        if not valid_name(name):
            self.problem(where, "node names: letters, digits, '-' or '_'")
        data = self.mapping(value, where)
        kind = data.get("type")
        if kind not in NODE_KINDS:
            self.problem(where, f"type {kind!r}: one of {', '.join(NODE_KINDS)}")
            return None
        common = ("type",)
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


# --------------------------------------------------------------------------- checking


def check_plan(plan: LinePlan, sounds_dir: Optional[Path] = SOUNDS_DIR) -> list[str]:
    """Problems of a parsed plan: unknown targets, unreachable nodes, loops without exit, missing audio."""
    problems: list[str] = []
    src = plan.source

    def edges(node: Node) -> list[str]:
        return [t.node for _, t in node.targets() if t.kind == "goto" and t.node is not None and t.node in plan.nodes]

    for node in plan.nodes.values():
        for where, target in node.targets():
            label = f"{src}: node '{node.name}' {where}"
            if target.kind == "goto" and target.node not in plan.nodes:
                problems.append(f"{label}: unknown node '{target.node}'")
            if target.kind == "transfer" and target.transfer not in plan.transfers:
                problems.append(f"{label}: unknown transfer '{target.transfer}'")
        if node.kind == "caller-list" and node.caller_list not in plan.caller_lists:
            problems.append(f"{src}: node '{node.name}': unknown caller list '{node.caller_list}'")
        if node.kind == "hours" and node.hours not in plan.hours:
            problems.append(f"{src}: node '{node.name}': unknown hours '{node.hours}'")
    for transfer in plan.transfers.values():
        if transfer.hours is not None and transfer.hours not in plan.hours:
            problems.append(f"{src}: transfer '{transfer.name}': unknown hours '{transfer.hours}'")

    # Reachable from the start.
    reachable: set[str] = set()
    todo = [plan.start] if plan.start in plan.nodes else []
    while todo:
        name = todo.pop()
        if name in reachable:
            continue
        reachable.add(name)
        todo.extend(edges(plan.nodes[name]))
    for name in plan.nodes if reachable else ():  # an unknown start node is reported already
        if name not in reachable:
            problems.append(f"{src}: node '{name}': unreachable from the start node '{plan.start}'")

    # Nodes from which the caller can get out (a queue, transfer, service or hang-up). A menu
    # always has an exit: after its tries it goes to its default, or to the fallback queue.
    exits: set[str] = set()
    changed = True
    while changed:
        changed = False
        for node in plan.nodes.values():
            if node.name in exits:
                continue
            targets = [t for _, t in node.targets()]
            if node.kind == "menu" and node.default is None:
                targets.append(plan.fallback)
            if any(t.kind != "goto" or t.node in exits for t in targets):
                exits.add(node.name)
                changed = True
    for name in sorted(set(plan.nodes) - exits):
        problems.append(f"{src}: node '{name}': a loop with no exit (never reaches a queue, transfer, "
                        f"service or hang-up)")

    if sounds_dir is not None:
        for prompt in sorted(plan.prompts()):
            for lang in plan.languages:
                path = sounds_dir / lang / "hotline" / f"{prompt}.wav"
                if not path.is_file():
                    problems.append(f"{src}: prompt '{prompt}': no audio for {lang} ({path})")
    return problems


def _parse(path: Path) -> tuple[Optional[LinePlan], list[str]]:
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
    reader = _Reader(source)
    plan = reader.plan(doc)
    return plan, reader.problems


def check_file(path: Path, sounds_dir: Optional[Path] = SOUNDS_DIR) -> list[str]:
    """Every problem of one menu file, one line each; empty when the file is good."""
    plan, problems = _parse(Path(path))
    if plan is not None:
        problems += check_plan(plan, sounds_dir)
    return problems


def load_line(path: Path, sounds_dir: Optional[Path] = SOUNDS_DIR) -> LinePlan:
    """The plan of one menu file; :class:`MenuError` listing every problem if it has any."""
    plan, problems = _parse(Path(path))
    if plan is not None:
        problems += check_plan(plan, sounds_dir)
    if problems or plan is None:
        raise MenuError(problems or [f"{path}: no plan"])
    return plan


def load_lines(directory: Path = MENUS_DIR, sounds_dir: Optional[Path] = SOUNDS_DIR) -> dict[str, LinePlan]:
    """Every ``*.yaml`` menu of ``directory``, by line name; all problems of all files at once."""
    files = sorted(Path(directory).glob("*.yaml"))
    if not files:
        raise MenuError([f"{directory}: no menu files (*.yaml)"])
    lines: dict[str, LinePlan] = {}
    problems: list[str] = []
    for path in files:
        try:
            plan = load_line(path, sounds_dir)
        except MenuError as exc:
            problems += exc.problems
            continue
        if plan.name in lines:
            problems.append(f"{path}: line '{plan.name}' is also defined in {lines[plan.name].source}")
            continue
        lines[plan.name] = plan
    if problems:
        raise MenuError(problems)
    return lines
