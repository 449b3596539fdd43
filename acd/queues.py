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
reached.

Queue experience (all optional, per queue or under ``default``)::

      general:
        max_wait_s: 300            # waited this long ...
        max_length: 50             # ... or this many calls already waiting when it arrives:
        overflow: backup           # move to the backup group's queue (keeps its place in time)
        overflow_skills: "mandarin:1"   # and require these skills there instead (optional)
        offer: [callback, message] # or offer the caller a callback that keeps the place, or a message
        callback_ring_s: 30        # a call back rings the caller this long ...
        callback_attempts: 3       # ... one the caller does not answer is tried again ...
        callback_retry_s: 120      # ... this long after, keeping the place (defaults shown)

and, for the whole hotline, returning callers (off unless enabled)::

    returning:
      enabled: true
      days: 7                      # a caller who called within 7 days ...
      wait_s: 5                    # ... waits up to 5 s for the agent who answered them last

A bad file is refused with one line naming the place, e.g.
``acd/queues.yaml: queues.cantonese.expand[1].after_s: must be greater than 20``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hotline.model import SkillError, parse_skills, valid_name
from hotline.yamlfile import YAMLFileError, read_yaml

__all__ = ["DEFAULT_QUEUES_FILE", "ExpansionStep", "OFFERS", "QueueBook", "QueueConfig", "QueueConfigError",
           "Returning", "STRATEGIES"]

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
    max_wait_s: Optional[float] = None
    max_length: Optional[int] = None
    overflow: Optional[str] = None
    overflow_skills: Optional[str] = None
    offer: tuple[str, ...] = ()
    callback_attempts: int = 3
    callback_retry_s: float = 120.0
    callback_ring_s: float = 30.0

    @property
    def limited(self) -> bool:
        return (self.max_wait_s is not None or self.max_length is not None) and bool(self.overflow or self.offer)

    def stages(self, required: dict[str, int]) -> list[tuple[float, dict[str, int]]]:
        """(seconds of waiting, requirement) for the call as it arrives and after each step."""
        stages = [(0.0, dict(required))]
        current = dict(required)
        for step in self.expand:
            current = step.apply(current)
            stages.append((step.after_s, current))
        return stages


OFFERS = ("callback", "message")


@dataclass(frozen=True)
class Returning:
    """A caller who called within ``days`` waits up to ``wait_s`` for the agent who answered them last."""
    enabled: bool = False
    days: float = 7.0
    wait_s: float = 5.0


@dataclass
class QueueBook:
    default: QueueConfig = field(default_factory=lambda: QueueConfig("default"))
    queues: dict[str, QueueConfig] = field(default_factory=dict)
    wrapup_s: dict[str, float] = field(default_factory=dict)      # per team; others: setting wrapup_s
    returning: "Returning" = field(default_factory=lambda: Returning())
    source: Optional[Path] = None
    mtime: float = 0.0

    def get(self, name: str) -> QueueConfig:
        return self.queues.get(name) or self.default

    @classmethod
    def from_file(cls, path: Path) -> "QueueBook":
        try:
            mtime = path.stat().st_mtime
            data = read_yaml(path)
        except OSError as exc:
            raise QueueConfigError(f"{path}: cannot read ({exc.strerror})") from None
        except YAMLFileError as exc:
            raise QueueConfigError(f"{path}: {exc}") from None
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
            if key not in ("default", "queues", "teams", "returning"):
                fail(str(key), "unknown key (expected 'default', 'queues', 'teams' or 'returning')")
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
        raw_ret = data.get("returning") or {}
        if not isinstance(raw_ret, dict) or set(raw_ret) - {"enabled", "days", "wait_s"}:
            fail("returning", "must be a mapping with enabled, days, wait_s")
        if not isinstance(raw_ret.get("enabled", False), bool):
            fail("returning.enabled", "must be true or false")
        for key, top in (("days", 366), ("wait_s", 60)):
            value = raw_ret.get(key, 1)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= top:
                fail(f"returning.{key}", f"must be a number, more than 0 and at most {top}")
        returning = Returning(raw_ret.get("enabled", False), float(raw_ret.get("days", 7)),
                              float(raw_ret.get("wait_s", 5)))
        for name, queue in queues.items():
            if queue.overflow and queue.overflow == name:
                fail(f"queues.{name}.overflow", "must name another queue")
        return cls(default, queues, wrapup, returning)

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
        if key not in ("strategy", "expand", "max_wait_s", "max_length", "overflow", "overflow_skills", "offer",
                       "callback_attempts", "callback_retry_s", "callback_ring_s"):
            fail(f"{where}.{key}", "unknown key (expected strategy, expand, max_wait_s, max_length, overflow, "
                                   "overflow_skills, offer, callback_attempts, callback_retry_s or callback_ring_s)")
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
    max_wait = raw.get("max_wait_s")
    if max_wait is not None and (isinstance(max_wait, bool) or not isinstance(max_wait, (int, float)) or max_wait <= 0):
        fail(f"{where}.max_wait_s", "must be a number of seconds, more than 0")
    max_length = raw.get("max_length")
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1):
        fail(f"{where}.max_length", "must be a whole number, 1 or more")
    overflow = raw.get("overflow")
    if overflow is not None and (not isinstance(overflow, str) or not valid_name(overflow)):
        fail(f"{where}.overflow", "must be a queue name")
    overflow_skills = raw.get("overflow_skills")
    if overflow_skills is not None:
        try:
            parse_skills(str(overflow_skills))
        except SkillError as exc:
            fail(f"{where}.overflow_skills", str(exc))
        overflow_skills = str(overflow_skills)
    offer = raw.get("offer") or []
    if not isinstance(offer, list) or not all(o in OFFERS for o in offer):
        fail(f"{where}.offer", "must be a list of: callback, message")
    if overflow and offer:
        fail(where, "give overflow or offer, not both")
    attempts = raw.get("callback_attempts", 3)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 10:
        fail(f"{where}.callback_attempts", "must be a whole number, 1..10")
    retry = raw.get("callback_retry_s", 120)
    if isinstance(retry, bool) or not isinstance(retry, (int, float)) or not 0 < retry <= 86400:
        fail(f"{where}.callback_retry_s", "must be a number of seconds, more than 0 and at most 86400")
    ring = raw.get("callback_ring_s", 30)
    if isinstance(ring, bool) or not isinstance(ring, (int, float)) or not 5 <= ring <= 300:
        fail(f"{where}.callback_ring_s", "must be a number of seconds, 5..300")
    return QueueConfig(name, strategy, tuple(steps), None if max_wait is None else float(max_wait), max_length,
                       overflow, overflow_skills, tuple(offer), attempts, float(retry), float(ring))
