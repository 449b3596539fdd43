"""The first IVR of the 12345 hotline: a welcome, one menu, and the hand-over to the ACD.

The contract with the dialplan (docs/ARCHITECTURE.md, "A call's path"): before
the session closes, the IVR sets ``HOTLINE_QUEUE``, ``HOTLINE_SKILLS``,
``HOTLINE_PRIORITY`` and ``HOTLINE_LANG`` on the channel; the dialplan then
raises ``HotlineWaiting`` for the ACD. The path the caller took (prompts, keys,
timings) is kept in Redis under ``hotline:ivr:{uniqueid}`` for a day.

The menus are plain data (:class:`Route`, :class:`Menu`, :class:`LinePlan`,
:data:`LINES`) walked by :class:`HotlineIvr`, so they can later be loaded from
files without touching the call flow, and the call flow knows nothing of the
AGI wire format (that is ``ivr/agi.py`` and ``ivr/fastagi.py``).
"""
from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Optional

from .agi import AGIError, AGIHangup
from .fastagi import AGIHandler, AGISession

__all__ = [
    "IVR_PATH_KEY",
    "IVR_PATH_TTL",
    "LANGUAGES",
    "Route",
    "Menu",
    "LinePlan",
    "GENERAL",
    "COMPLAINT",
    "ENTERPRISE",
    "ELDERLY",
    "MAIN_MENU",
    "LINES",
    "DEFAULT_LINE",
    "IvrPath",
    "HotlineIvr",
    "ivr_path_key",
    "build_handlers",
]

IVR_PATH_KEY = "hotline:ivr:{uniqueid}"
IVR_PATH_TTL = 86400  # seconds: the path is for the ACD and today's reports
LANGUAGES = frozenset({"zh", "yue", "en"})

_NAME = r"[A-Za-z0-9_-]+"
_QUEUE = re.compile(_NAME)
# "+" joins skills: Asterisk would split a comma inside UserEvent() arguments.
_SKILLS = re.compile(rf"{_NAME}:\d+(?:\+{_NAME}:\d+)*")


# --------------------------------------------------------------------------- menus as data


@dataclass(frozen=True)
class Route:
    """Where a caller goes: the channel variables the dialplan and the ACD read."""

    queue: str
    skills: str
    priority: int = 0
    lang: str = "zh"

    def __post_init__(self) -> None:
        # Checked here so that menus loaded from files fail at load time, not mid-call.
        if not _QUEUE.fullmatch(self.queue):
            raise ValueError(f"queue {self.queue!r}: letters, digits, '-' or '_' only")
        if not _SKILLS.fullmatch(self.skills):
            raise ValueError(f"skills {self.skills!r}: expected skill:level[+skill:level...]")
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise ValueError(f"priority {self.priority!r}: must be an integer")
        if self.lang not in LANGUAGES:
            raise ValueError(f"lang {self.lang!r}: one of {sorted(LANGUAGES)}")


@dataclass(frozen=True)
class Menu:
    """A DTMF menu: ``tries`` prompts; no valid key after them sends the caller to ``fallback``."""

    node: str
    prompt: str
    options: Mapping[str, Route]
    fallback: Route
    timeout_ms: int = 5000
    max_digits: int = 1
    tries: int = 3
    invalid_prompt: str = "hotline/invalid"

    def __post_init__(self) -> None:
        if self.tries < 1 or self.max_digits < 1 or self.timeout_ms < 0:
            raise ValueError(f"menu {self.node!r}: tries and max_digits >= 1, timeout_ms >= 0")
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))


@dataclass(frozen=True)
class LinePlan:
    """What one hotline number does: a welcome, then a menu or a fixed route."""

    name: str
    welcome_prompt: str
    menu: Optional[Menu] = None
    route: Optional[Route] = None
    transfer_prompt: Optional[str] = None

    def __post_init__(self) -> None:
        if (self.menu is None) == (self.route is None):
            raise ValueError(f"line {self.name!r}: give either a menu or a route")


GENERAL = Route("general", "mandarin:1", 0)
COMPLAINT = Route("complaint", "mandarin:1", 0)
ENTERPRISE = Route("enterprise", "mandarin:1+enterprise:1", 10)
ELDERLY = Route("elderly", "mandarin:1+elderly:1", 30)

MAIN_MENU = Menu(
    node="main-menu",
    prompt="hotline/main-menu",
    options={
        "1": GENERAL,  # consultation
        "2": COMPLAINT,  # complaint or report
        "3": ENTERPRISE,  # enterprise service
        "0": GENERAL,  # a person, please
        "9": ELDERLY,  # elderly assistance: served first
    },
    fallback=GENERAL,  # could not choose: a person will help
)

LINES: Mapping[str, LinePlan] = MappingProxyType(
    {
        "main": LinePlan(
            "main", "hotline/welcome", menu=MAIN_MENU, transfer_prompt="hotline/transfer-agent"
        ),
        # The enterprise line ("yi qi lai") has its own number and goes straight to its queue.
        "enterprise": LinePlan("enterprise", "hotline/enterprise-welcome", route=ENTERPRISE),
    }
)
DEFAULT_LINE = "main"


def ivr_path_key(uniqueid: str) -> str:
    return IVR_PATH_KEY.format(uniqueid=uniqueid)


# --------------------------------------------------------------------------- the caller's path


@dataclass
class IvrPath:
    """The steps of one call through the IVR, as stored in Redis.

    A step is one prompt played in a node: ``{node, prompt, digits, result,
    started_at, ended_at}`` with result ``ok``, ``invalid``, ``timeout``,
    ``hangup`` (or ``error`` when the IVR itself failed).
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
    _open: Optional[dict[str, Any]] = None

    def __post_init__(self) -> None:
        self.started_at = self.clock()

    def begin(self, node: str, prompt: Optional[str]) -> None:
        self.node = node
        self._open = {
            "node": node,
            "prompt": prompt,
            "digits": None,
            "result": None,
            "started_at": self.clock(),
            "ended_at": None,
        }
        self.steps.append(self._open)

    def end(self, result: str, digits: Optional[str] = None) -> None:
        step, self._open = self._open, None
        if step is None:
            return
        step["result"] = result
        step["digits"] = digits
        step["ended_at"] = self.clock()

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
        if self.hangup_node is not None:
            doc["hangup_node"] = self.hangup_node
        return doc


# --------------------------------------------------------------------------- the call flow


class HotlineIvr:
    """Walks a :class:`LinePlan` over an :class:`AGISession`."""

    def __init__(
        self,
        redis: Any = None,
        *,
        clock: Callable[[], float] = time.time,
        lines: Mapping[str, LinePlan] = LINES,
        default_line: str = DEFAULT_LINE,
        fallback: Route = GENERAL,
        store_timeout: float = 2.0,
    ) -> None:
        if default_line not in lines:
            raise ValueError(f"default line {default_line!r} is not among {sorted(lines)}")
        self.redis = redis
        self.clock = clock
        self.lines = lines
        self.default_line = default_line
        self.fallback = fallback
        self.store_timeout = store_timeout

    def pick_line(self, args: list[str]) -> LinePlan:
        """The first AGI argument names the line (``main`` / ``enterprise``); anything else is main."""
        name = args[0].strip().lower() if args else ""
        return self.lines.get(name) or self.lines[self.default_line]

    async def handle(self, session: AGISession) -> None:
        """FastAGI handler: never raises for a hang-up or a failure (the call must go on)."""
        plan = self.pick_line(session.args)
        path = IvrPath(session.uniqueid, plan.name, session.channel, self.clock)
        route: Optional[Route] = None
        try:
            await session.answer()
            _check_alive(session)
            await self._play(session, path, "welcome", plan.welcome_prompt)
            if plan.menu is not None:
                route = await self._menu(session, path, plan.menu)
            else:
                assert plan.route is not None  # LinePlan holds a menu or a route
                route = plan.route
            path.node = "transfer"
            if plan.transfer_prompt:
                await self._play(session, path, "transfer", plan.transfer_prompt)
            await self._set_route(session, route)
            if session.hung_up:  # the HANGUP line came with a SET VARIABLE reply
                path.hangup()
        except AGIHangup:
            path.hangup()
        except asyncio.CancelledError:  # the service is stopping under this call
            path.fail()
            route = None
            raise
        except Exception:
            # A bug or an unexpected reply must not drop the caller: send them to a person.
            session.log.exception("IVR failed in node %s; using the default queue", path.node)
            path.fail()
            route = await self._fallback_route(session)
        finally:
            path.finish(route)
            # Let the dialplan go on first; the caller should not wait for Redis.
            await session.close()
            await self._store(session, path)

    async def _play(self, session: AGISession, path: IvrPath, node: str, prompt: str) -> None:
        path.begin(node, prompt)
        reply = await session.stream_file(prompt)
        if reply.result == "-1":
            # -1 is a missing file or a hang-up during playback: a NOOP tells which
            # (after a hang-up Asterisk sends the HANGUP line before its reply).
            await session.noop()
            if not session.hung_up:
                session.log.warning("prompt %s could not be played", prompt)
        _check_alive(session)
        path.end("ok")

    async def _menu(self, session: AGISession, path: IvrPath, menu: Menu) -> Route:
        for _ in range(menu.tries):
            path.begin(menu.node, menu.prompt)
            digits = await session.get_data(menu.prompt, menu.timeout_ms, menu.max_digits)
            _check_alive(session)
            if digits is None:
                path.end("timeout")
                continue
            route = menu.options.get(digits)
            if route is not None:
                path.end("ok", digits)
                return route
            path.end("invalid", digits)
            await self._play(session, path, menu.node, menu.invalid_prompt)
        session.log.info("no choice in %s after %d tries: default route", menu.node, menu.tries)
        return menu.fallback

    @staticmethod
    async def _set_route(session: AGISession, route: Route) -> None:
        await session.set_variable("HOTLINE_QUEUE", route.queue)
        await session.set_variable("HOTLINE_SKILLS", route.skills)
        await session.set_variable("HOTLINE_PRIORITY", route.priority)
        await session.set_variable("HOTLINE_LANG", route.lang)

    async def _fallback_route(self, session: AGISession) -> Optional[Route]:
        if session.hung_up or session.closed:
            return None
        try:
            await self._set_route(session, self.fallback)
        except AGIError as exc:
            session.log.warning("could not set the default route: %s", exc)
            return None
        return self.fallback

    async def _store(self, session: AGISession, path: IvrPath) -> None:
        if self.redis is None:
            return
        if not path.uniqueid:
            session.log.warning("no agi_uniqueid: IVR path not stored")
            return
        document = json.dumps(path.to_dict(), ensure_ascii=False, separators=(",", ":"))
        try:
            async with asyncio.timeout(self.store_timeout):
                await self.redis.set(ivr_path_key(path.uniqueid), document, ex=IVR_PATH_TTL)
        except Exception as exc:  # Redis down or slow: the call itself is already handed on
            session.log.warning("could not store the IVR path in Redis: %r", exc)


def _check_alive(session: AGISession) -> None:
    if session.hung_up:
        raise AGIHangup("the caller hung up")


def build_handlers(
    redis: Any = None,
    *,
    clock: Callable[[], float] = time.time,
    lines: Mapping[str, LinePlan] = LINES,
    store_timeout: float = 2.0,
) -> dict[str, AGIHandler]:
    """The FastAGI handlers of the hotline: ``{'ivr': ...}`` for ``agi://host:port/ivr``.

    ``redis`` is a ``redis.asyncio`` client (None: paths are not stored).
    """
    ivr = HotlineIvr(redis, clock=clock, lines=lines, store_timeout=store_timeout)
    return {"ivr": ivr.handle}
