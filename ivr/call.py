"""One call in the IVR: the call object the menus and the services drive, the path it keeps,
and the route it leaves with.

:class:`Call` is what a service (``ivr/progress.py``, ``ivr/after_hours.py``) gets: it plays
prompts, reads keys and notes each step in the call's :class:`IvrPath`, the JSON the ACD
reads back from Redis (``hotline:ivr:{uniqueid}``, for a day). :class:`Route` is where a
caller goes when a person is to serve them: the channel variables the dialplan and the ACD read.
The call flow that walks the menus is ``ivr/app.py``.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from hotline.keys import Keys
from hotline.model import SKILL_SEPARATOR, valid_name

from .menu_model import LANGUAGES, LinePlan, Target, prompt_sound
from .session import AGISession, check_alive

__all__ = [
    "IVR_PATH_TTL",
    "Route",
    "IvrPath",
    "Call",
    "Service",
    "ivr_path_key",
]

IVR_PATH_TTL = 86400  # seconds: the path is for the ACD and today's reports


def _is_name(text: str) -> bool:
    # The core's names; its check lets a final newline through ('$'), which a route never had.
    return valid_name(text) and not text.endswith("\n")


def _is_skills(text: str) -> bool:
    """``skill:level[+skill:level...]`` as :func:`hotline.model.format_skills` writes them ('+', not
    ',': Asterisk would split a comma inside UserEvent() arguments)."""
    parts = [part.partition(":") for part in text.split(SKILL_SEPARATOR)]
    return all(sep and _is_name(name) and level.isdecimal() for name, sep, level in parts)


@dataclass(frozen=True)
class Route:
    """Where a caller goes: the channel variables the dialplan and the ACD read."""

    queue: str
    skills: str
    priority: int = 0
    lang: str = "zh"

    def __post_init__(self) -> None:
        if not _is_name(self.queue):
            raise ValueError(f"queue {self.queue!r}: letters, digits, '-' or '_' only")
        if not _is_skills(self.skills):
            raise ValueError(f"skills {self.skills!r}: expected skill:level[+skill:level...]")
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise ValueError(f"priority {self.priority!r}: must be an integer")
        if self.lang not in LANGUAGES:
            raise ValueError(f"lang {self.lang!r}: one of {sorted(LANGUAGES)}")


def ivr_path_key(uniqueid: str) -> str:
    """Where a call's path is kept: the core's key (:meth:`hotline.keys.Keys.ivr_path`)."""
    return Keys.ivr_path(uniqueid)


# --------------------------------------------------------------------------- the caller's path


@dataclass
class IvrPath:
    """The steps of one call through the IVR, as stored in Redis.

    A step is one prompt played (or one decision taken) in a node: ``{node,
    prompt, digits, result, started_at, ended_at}`` with result ``ok``,
    ``invalid``, ``timeout``, ``hangup``, ``error`` or a decision (``match``,
    ``open``, ``closed``, ``found``...).
    """

    uniqueid: str
    line: str
    channel: str
    clock: Callable[[], float]
    started_at: float = 0.0
    ended_at: Optional[float] = None
    node: str = "answer"  # where the call is now, for hang-ups between prompts
    steps: list[dict[str, Any]] = field(default_factory=list)
    hangup_node: Optional[str] = None
    result: Optional[str] = None
    route: Optional[Route] = None
    transfer: Optional[str] = None
    extra: dict[str, Any] = field(default_factory=dict)
    _open: Optional[dict[str, Any]] = None

    def __post_init__(self) -> None:
        self.started_at = self.clock()

    def begin(self, node: str, prompt: Optional[str], label: Optional[Mapping[str, str]] = None) -> None:
        self.node = node
        self._open = {
            "node": node,
            "prompt": prompt,
            "digits": None,
            "result": None,
            "started_at": self.clock(),
            "ended_at": None,
        }
        if label:
            self._open["label"] = dict(label)       # the node in words (the agent's screen pop)
        self.steps.append(self._open)

    def end(self, result: str, digits: Optional[str] = None, choice: Optional[Mapping[str, str]] = None) -> None:
        step, self._open = self._open, None
        if step is None:
            return
        step["result"] = result
        step["digits"] = digits
        step["ended_at"] = self.clock()
        if choice:
            step["choice"] = dict(choice)           # what the caller chose, in words

    def note(self, node: str, result: str, label: Optional[Mapping[str, str]] = None,
             choice: Optional[Mapping[str, str]] = None) -> None:
        """A decision without a prompt (a caller list, business hours)."""
        self.begin(node, None, label)
        self.end(result, choice=choice)

    def hangup(self) -> None:
        """The caller hung up: close the running step, or add one for the current node."""
        if self.hangup_node is not None:
            return
        if self._open is None:
            self.begin(self.node, None)
        self.hangup_node = self.node
        self.end("hangup")
        self.result = "hangup"

    def fail(self) -> None:
        if self._open is not None:
            self.end("error")
        self.result = "error"

    def finish(self, route: Optional[Route]) -> None:
        if self.result is None:
            self.result = "queued"
        self.route = route if self.result != "hangup" else None
        self.ended_at = self.clock()

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "uniqueid": self.uniqueid,
            "line": self.line,
            "channel": self.channel,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "result": self.result,
            "queue": self.route.queue if self.route else None,
            "skills": self.route.skills if self.route else None,
            "priority": self.route.priority if self.route else None,
            "lang": self.route.lang if self.route else None,
            "steps": self.steps,
        }
        if self.transfer is not None:
            doc["transfer"] = self.transfer
        if self.hangup_node is not None:
            doc["hangup_node"] = self.hangup_node
        doc.update(self.extra)
        return doc


# --------------------------------------------------------------------------- the call


@dataclass
class Call:
    """One call in the IVR: what services get to play prompts and read keys."""

    session: AGISession
    plan: LinePlan
    path: IvrPath
    language: str
    caller: str  # national digits of the caller ID (untrusted, digits only)
    clock: Callable[[], float]  # the IVR's clock, for the times a service notes

    async def play(self, node: str, prompt: str) -> None:
        await self.play_sound(node, prompt_sound(prompt))

    async def play_sound(self, node: str, sound: str) -> None:
        """Play a sound by its name below the sounds directory (a prompt, the broadcast)."""
        session, path = self.session, self.path
        path.begin(node, sound)
        reply = await session.stream_file(sound)
        if reply.result == "-1":
            # -1 is a missing file or a hang-up during playback: a NOOP tells which
            # (after a hang-up Asterisk sends the HANGUP line before its reply).
            await session.noop()
            if not session.hung_up:
                session.log.warning("prompt %s could not be played", sound)
        check_alive(session)
        path.end("ok")

    async def ask(self, node: str, prompt: str, timeout_ms: int, max_digits: int) -> Optional[str]:
        """Play ``prompt`` and collect keys: the digits ('' for only '#'), None on timeout."""
        sound = prompt_sound(prompt)
        self.path.begin(node, sound)
        digits = await self.session.get_data(sound, timeout_ms, max_digits)
        check_alive(self.session)
        self.path.end("timeout" if digits is None else "ok", digits)
        return digits


# A service (progress query...) takes the call and says where it goes next.
Service = Callable[[Call], Awaitable[Target]]
