"""Queue rules of the ACD: agent-selection strategy, skill expansion, teams' wrap-up, from a YAML file.

``acd/queues.yaml`` (or the file named by the setting ``acd_queues_file``) looks like::

    default:                       # every queue not listed below
      strategy: longest_idle
    queues:
      cantonese:
        strategy: best_skill
        expand:                    # after a wait, accept agents the call would not take before
          - after_s: 20
            lower: {cantonese: 1}          # minimum level lowered to 1
          - after_s: 45
            replace: {cantonese: "mandarin:4"}   # or served in Mandarin by a strong agent
          - after_s: 90
            drop: [enterprise]             # requirement removed

Expansion steps apply in order, each to the result of the one before; after ``after_s``
seconds of waiting, an agent may take the call if it meets the requirement of any step
reached. A bad file is refused with one line naming the place, e.g.
``acd/queues.yaml: queues.cantonese.expand[1].after_s: must be greater than 20``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from hotline.model import SkillError, parse_skills, valid_name

__all__ = ["DEFAULT_QUEUES_FILE", "ExpansionStep", "QueueBook", "QueueConfig", "QueueConfigError", "STRATEGIES"]

# When a call arrives and several ready agents can take it, the queue's strategy picks one;
# ties go to the agent idle longest, then to the lowest agent id.
STRATEGIES = ("longest_idle", "least_occupied", "best_skill")
DEFAULT_QUEUES_FILE = Path(__file__).with_name("queues.yaml")


class QueueConfigError(ValueError):
    """The queue file is wrong; the message is one line naming the file and the place."""


@dataclass(frozen=True)
class ExpansionStep:
    after_s: float
    lower: tuple[tuple[str, int], ...] = ()
    replace: tuple[tuple[str, tuple[tuple[str, int], ...]], ...] = ()
    drop: tuple[str, ...] = ()

    def apply(self, required: dict[str, int]) -> dict[str, int]:
        result = dict(required)
        for skill, level in self.lower:
            if skill in result:
                result[skill] = min(result[skill], level)
        for skill, instead in self.replace:
            if skill in result:
                del result[skill]
                for other, level in instead:
                    result[other] = max(result.get(other, 0), level)
        for skill in self.drop:
            result.pop(skill, None)
        return result


@dataclass(frozen=True)
class QueueConfig:
    name: str
    strategy: str = "longest_idle"
    expand: tuple[ExpansionStep, ...] = ()

    def stages(self, required: dict[str, int]) -> list[tuple[float, dict[str, int]]]:
        """(seconds of waiting, requirement) for the call as it arrives and after each step."""
        stages = [(0.0, dict(required))]
        current = dict(required)
        for step in self.expand:
            current = step.apply(current)
            stages.append((step.after_s, current))
        return stages


@dataclass
class QueueBook:
    default: QueueConfig = field(default_factory=lambda: QueueConfig("default"))
    queues: dict[str, QueueConfig] = field(default_factory=dict)
    wrapup_s: dict[str, float] = field(default_factory=dict)      # per team; others: setting wrapup_s
    source: Optional[Path] = None
    mtime: float = 0.0

    @property
    def digest(self) -> str:
        """Short fingerprint of the rules: routing plans made under other rules are not reused."""
        import hashlib

        text = repr((self.default, sorted(self.queues.items())))     # teams' wrap-up does not route
        return hashlib.sha1(text.encode()).hexdigest()[:10]

    def get(self, name: str) -> QueueConfig:
        return self.queues.get(name) or self.default

    @classmethod
    def from_file(cls, path: Path) -> "QueueBook":
        try:
            text = path.read_text(encoding="utf-8")
            mtime = path.stat().st_mtime
        except OSError as exc:
            raise QueueConfigError(f"{path}: cannot read ({exc.strerror})") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise QueueConfigError(f"{path}:{f' line {mark.line + 1}' if mark else ''} is not valid YAML") from None
        book = cls.from_dict(data or {}, str(path))
        book.source, book.mtime = path, mtime
        return book

    @classmethod
    def from_dict(cls, data: Any, source: str = "queues") -> "QueueBook":
        def fail(where: str, message: str) -> None:
            raise QueueConfigError(f"{source}: {where}: {message}")

        if not isinstance(data, dict):
            fail("top level", "must be a mapping with 'default' and 'queues'")
        for key in data:
            if key not in ("default", "queues", "teams"):
                fail(str(key), "unknown key (expected 'default', 'queues' or 'teams')")
        default = _queue("default", data.get("default") or {}, "default", fail)
        queues = {}
        raw_queues = data.get("queues") or {}
        if not isinstance(raw_queues, dict):
            fail("queues", "must be a mapping of queue name: rules")
        for name, raw in raw_queues.items():
            if not isinstance(name, str) or not valid_name(name):
                fail(f"queues.{name}", "queue names are letters, digits, '-' or '_'")
            queues[name] = _queue(name, raw or {}, f"queues.{name}", fail)
        wrapup = {}
        teams = data.get("teams") or {}
        if not isinstance(teams, dict):
            fail("teams", "must be a mapping of team name: {wrapup_s: seconds}")
        for team, raw in teams.items():
            if not isinstance(team, str) or not valid_name(team):
                fail(f"teams.{team}", "team names are letters, digits, '-' or '_'")
            if not isinstance(raw, dict) or set(raw) - {"wrapup_s"}:
                fail(f"teams.{team}", "must be a mapping with wrapup_s")
            seconds = raw.get("wrapup_s")
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= 3600:
                fail(f"teams.{team}.wrapup_s", "must be a number of seconds, 0..3600")
            wrapup[team] = float(seconds)
        return cls(default, queues, wrapup)

    def reload_if_changed(self) -> Optional["QueueBook"]:
        """A new book if the file changed on disk (a bad file keeps the old rules, raising)."""
        if self.source is None:
            return None
        try:
            mtime = self.source.stat().st_mtime
        except OSError:
            return None
        if mtime == self.mtime:
            return None
        return QueueBook.from_file(self.source)


def _queue(name: str, raw: Any, where: str, fail) -> QueueConfig:
    if not isinstance(raw, dict):
        fail(where, "must be a mapping (strategy, expand)")
    for key in raw:
        if key not in ("strategy", "expand"):
            fail(f"{where}.{key}", "unknown key (expected 'strategy' or 'expand')")
    strategy = raw.get("strategy", "longest_idle")
    if strategy not in STRATEGIES:
        fail(f"{where}.strategy", f"must be one of {', '.join(STRATEGIES)} (got {strategy!r})")
    steps = []
    raw_steps = raw.get("expand") or []
    if not isinstance(raw_steps, list):
        fail(f"{where}.expand", "must be a list of steps")
    previous = 0.0
    for i, step in enumerate(raw_steps):
        here = f"{where}.expand[{i}]"
        if not isinstance(step, dict):
            fail(here, "must be a mapping (after_s, lower, replace, drop)")
        for key in step:
            if key not in ("after_s", "lower", "replace", "drop"):
                fail(f"{here}.{key}", "unknown key (expected after_s, lower, replace or drop)")
        after = step.get("after_s")
        if isinstance(after, bool) or not isinstance(after, (int, float)):
            fail(f"{here}.after_s", "required, a number of seconds")
        if after <= previous:
            fail(f"{here}.after_s", f"must be greater than {previous:g}")
        previous = float(after)
        lower = []
        for skill, level in (step.get("lower") or {}).items():
            if not valid_name(str(skill)) or isinstance(level, bool) or not isinstance(level, int) \
                    or not 1 <= level <= 10:
                fail(f"{here}.lower.{skill}", "must be skill: level (1..10)")
            lower.append((str(skill), level))
        replace = []
        for skill, instead in (step.get("replace") or {}).items():
            try:
                parsed = parse_skills(str(instead))
            except SkillError as exc:
                fail(f"{here}.replace.{skill}", str(exc))
            if not valid_name(str(skill)) or not parsed:
                fail(f"{here}.replace.{skill}", "must be skill: \"other:level+...\"")
            replace.append((str(skill), tuple(sorted(parsed.items()))))
        drop = step.get("drop") or []
        if not isinstance(drop, list) or not all(isinstance(s, str) and valid_name(s) for s in drop):
            fail(f"{here}.drop", "must be a list of skill names")
        if not (lower or replace or drop):
            fail(here, "changes nothing (give lower, replace or drop)")
        steps.append(ExpansionStep(float(after), tuple(lower), tuple(replace), tuple(drop)))
    return QueueConfig(name, strategy, tuple(steps))
