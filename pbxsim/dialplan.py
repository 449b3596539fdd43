"""The dialplan as the simulated PBX runs it: contexts, extension patterns, priorities, labels."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Optional

__all__ = ["Dialplan", "Step", "DialplanError", "pattern_matches"]


class DialplanError(ValueError):
    pass


@dataclass(frozen=True)
class Step:
    app: str
    data: str
    label: Optional[str] = None
    line: int = 0


@dataclass
class Extension:
    pattern: str
    steps: dict[int, Step] = field(default_factory=dict)

    def label_priority(self, label: str) -> Optional[int]:
        for priority, step in self.steps.items():
            if step.label == label:
                return priority
        return None


@lru_cache(maxsize=256)
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    # Asterisk patterns: X=[0-9] Z=[1-9] N=[2-9] [..] ranges, '.' one or more, '!' zero or more.
    out = []
    i = 0
    body = pattern[1:]
    while i < len(body):
        ch = body[i]
        up = ch.upper()
        if up == "X":
            out.append("[0-9]")
        elif up == "Z":
            out.append("[1-9]")
        elif up == "N":
            out.append("[2-9]")
        elif ch == "[":
            end = body.find("]", i)
            if end < 0:
                raise DialplanError(f"unterminated [ in pattern {pattern}")
            out.append("[" + re.sub(r"([\\^])", r"\\\1", body[i + 1:end]) + "]")
            i = end
        elif ch == ".":
            out.append(".+")
        elif ch == "!":
            out.append(".*")
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("^" + "".join(out) + "$")


def pattern_matches(pattern: str, exten: str) -> bool:
    if not pattern.startswith("_"):
        return pattern == exten
    return bool(_pattern_regex(pattern).match(exten))


@dataclass
class Dialplan:
    contexts: dict[str, dict[str, Extension]] = field(default_factory=dict)
    includes: dict[str, list[str]] = field(default_factory=dict)
    globals: dict[str, str] = field(default_factory=dict)

    def find_extension(self, context: str, exten: str, _seen: Optional[set] = None) -> Optional[Extension]:
        """Exact match first, then patterns in file order, then included contexts."""
        extensions = self.contexts.get(context)
        if extensions is None:
            return None
        if exten in extensions:
            return extensions[exten]
        for pattern, extension in extensions.items():
            if pattern.startswith("_") and pattern_matches(pattern, exten):
                return extension
        seen = _seen or {context}
        for included in self.includes.get(context, []):
            if included not in seen:
                seen.add(included)
                found = self.find_extension(included, exten, seen)
                if found:
                    return found
        return None

    def step(self, context: str, exten: str, priority: int) -> Optional[Step]:
        extension = self.find_extension(context, exten)
        return extension.steps.get(priority) if extension else None

    def resolve_priority(self, context: str, exten: str, priority: str) -> Optional[int]:
        """A priority given as a number or a label, as Goto() accepts it."""
        priority = priority.strip()
        if priority.lstrip("-").isdigit():
            return int(priority)
        extension = self.find_extension(context, exten)
        return extension.label_priority(priority) if extension else None

    # ---- building -----------------------------------------------------------------------
    @classmethod
    def from_conf(cls, conf) -> "Dialplan":
        """Build from :mod:`pbxsim.asterisk_conf` output (see :func:`load`)."""
        from .extensions_conf import parse_dialplan

        plan = cls()
        for section in conf.sections:
            if section.name == "globals":
                for entry in section.entries:
                    plan.globals[entry.key] = entry.value
        parsed = parse_dialplan(conf)
        for context, lines in parsed.items():
            extensions = plan.contexts.setdefault(context, {})
            for line in lines:
                kind = getattr(line, "kind", "exten")
                if kind == "include":
                    if line.target is not None:      # an include always names its context
                        plan.includes.setdefault(context, []).append(line.target)
                    continue
                if kind != "exten" or line.priority is None:
                    continue  # hints have no steps
                extension = extensions.setdefault(line.exten, Extension(line.exten))
                extension.steps[line.priority] = Step(line.app, line.args, line.label, line.line)
        return plan

    @classmethod
    def load(cls, path: Path) -> "Dialplan":
        from .asterisk_conf import load_conf

        return cls.from_conf(load_conf(path))
