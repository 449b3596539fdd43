"""What a menu file is once loaded: a :class:`LinePlan` of nodes and targets, frozen.

The languages a line may speak, the services the IVR provides, and where the shipped menus
and sounds live. Reading the YAML is ``ivr/menu_reader.py``, checking a whole plan
``ivr/menu_check.py``; the file format is described in ``ivr/menu.py``.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Optional

from hotline.model import format_skills

__all__ = [
    "MENUS_DIR",
    "SOUNDS_DIR",
    "LANGUAGES",
    "LANGUAGE_SKILLS",
    "SERVICES",
    "NODE_KINDS",
    "TARGET_KINDS",
    "Target",
    "Node",
    "Transfer",
    "Hours",
    "LinePlan",
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
    """Where a choice leads (the kinds and their fields: the format in ``ivr/menu.py``)."""

    kind: str
    node: Optional[str] = None            # goto
    queue: Optional[str] = None           # queue
    skills: Mapping[str, int] = field(default_factory=dict)
    priority: int = 0
    transfer: Optional[str] = None        # transfer
    service: Optional[str] = None         # service
    language: Optional[str] = None
    prompt: Optional[str] = None
    label: Mapping[str, str] = field(default_factory=dict)   # what the choice means, in words, by language


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
    label: Mapping[str, str] = field(default_factory=dict)   # what the node asks, in words, by language

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
