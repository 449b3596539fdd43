"""The 12345 IVR: walks the menus of ``ivr/menus/*.yaml`` for each call and hands it on.

The contract with the dialplan (docs/ARCHITECTURE.md, "A call's path"): before
the session closes, the IVR sets ``HOTLINE_QUEUE``, ``HOTLINE_SKILLS``,
``HOTLINE_PRIORITY`` and ``HOTLINE_LANG`` on the channel (a person will serve
the caller), and for the other endings ``HOTLINE_IVR_RESULT``: ``completed``
(the IVR served the caller; the call ends) or ``transfer`` with
``HOTLINE_TRANSFER`` (an external number the dialplan dials; the queue
variables are set too, so a failed transfer still reaches a person). The path
the caller took (nodes, prompts, keys, timings) is kept in Redis under
``hotline:ivr:{uniqueid}`` for a day.

The menus are data (:mod:`ivr.menu`) and the call they drive is :mod:`ivr.call`; this module
knows the call flow, not the AGI wire format (``ivr/agi.py``, ``ivr/session.py``).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, Optional

from hotline.keys import Keys

from .after_hours import Callback, LeaveMessage
from .agi import AGIError, AGIHangup
from .announce import Announce
# Route, IvrPath, Call... are re-exported: code that imported them from ivr.app keeps working.
from .call import IVR_PATH_TTL, Call, IvrPath, Route, Service, ivr_path_key
from .fastagi import AGIHandler
from .menu import load_lines
from .menu_model import LinePlan, Node, Target, normalize_number, prompt_sound
from .progress import ProgressQuery
from .session import AGISession, check_alive
from .survey import Survey

__all__ = [
    "IVR_PATH_TTL",
    "MAX_HOPS",
    "Route",
    "IvrPath",
    "Call",
    "Service",
    "HotlineIvr",
    "ivr_path_key",
    "build_handlers",
    "default_services",
]

MAX_HOPS = 64  # nodes one call may visit before the IVR gives up and finds a person

# A sound name read back from Redis (the broadcast): a path below the sounds directory, names
# joined by '/', so not hotline.model.valid_name (one name, which a '/' would fail).
_SOUND = re.compile(r"[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*")


class HotlineIvr:
    """Walks the :class:`LinePlan` of the dialled line over an :class:`AGISession`."""

    def __init__(
        self,
        lines: Mapping[str, LinePlan],
        redis: Any = None,
        *,
        clock: Callable[[], float] = time.time,
        local_time: Callable[[], dt.datetime] = dt.datetime.now,
        services: Optional[Mapping[str, Service]] = None,
        default_line: str = "main",
        store_timeout: float = 2.0,
        broadcast_timeout: float = 0.3,
    ) -> None:
        if default_line not in lines:
            raise ValueError(f"default line {default_line!r} is not among {sorted(lines)}")
        self.redis = redis
        self.clock = clock
        self.local_time = local_time
        self.lines = lines
        self.default_line = default_line
        self.services = dict(services or {})
        self.store_timeout = store_timeout
        self.broadcast_timeout = broadcast_timeout
        for plan in lines.values():
            for node in plan.nodes.values():
                for _, target in node.targets():
                    if target.kind == "service" and target.service not in self.services:
                        raise ValueError(f"{plan.source}: node '{node.name}': service "
                                         f"'{target.service}' is not available in this IVR")

    def pick_line(self, args: list[str]) -> LinePlan:
        """The first AGI argument names the line (``main`` / ``enterprise``); anything else is main."""
        name = args[0].strip().lower() if args else ""
        return self.lines.get(name) or self.lines[self.default_line]

    async def handle(self, session: AGISession) -> None:
        """FastAGI handler: never raises for a hang-up or a failure (the call must go on)."""
        plan = self.pick_line(session.args)
        path = IvrPath(session.uniqueid, plan.name, session.channel, self.clock)
        call = Call(session, plan, path, plan.default_language, normalize_number(session.callerid),
                    self.clock)
        route: Optional[Route] = None
        try:
            await session.answer()
            check_alive(session)
            await self._set_language(call, plan.default_language)
            target = await self._walk(call, Target("goto", node=plan.start))
            route = await self._hand_over(call, target)
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
            session.log.exception("IVR failed in node %s; using the fallback queue", path.node)
            path.fail()
            route = await self._fallback_route(call)
        finally:
            path.finish(route)
            # Let the dialplan go on first; the caller should not wait for Redis.
            await session.close()
            await self._store(session, path)

    # ------------------------------------------------------------------ walking the nodes

    async def _walk(self, call: Call, target: Target) -> Target:
        """Follow targets through nodes and services until one leaves the IVR (queue, transfer, hang-up)."""
        plan = call.plan
        for _ in range(MAX_HOPS):
            if target.language and target.language != call.language:
                await self._set_language(call, target.language)
            if target.prompt and target.kind != "hangup":
                await call.play(call.path.node, target.prompt)
            if target.kind == "service":
                assert target.service is not None
                target = await self.services[target.service](call)
                continue
            if target.kind == "transfer":
                assert target.transfer is not None
                transfer = plan.transfers[target.transfer]
                if transfer.hours is not None and not plan.hours[transfer.hours].open_at(self.local_time()):
                    # The group's own hours, even when no hours node guards the way to it.
                    call.path.note(call.path.node, f"closed:{transfer.name}")
                    return plan.fallback
            if target.kind != "goto":
                return target
            assert target.node is not None
            node = plan.nodes[target.node]
            call.path.node = node.name
            target = await self._run_node(call, node)
        call.session.log.warning("more than %d nodes in one call: fallback queue", MAX_HOPS)
        return plan.fallback

    async def _run_node(self, call: Call, node: Node) -> Target:
        if node.kind == "play":
            assert node.prompt is not None and node.next is not None
            await call.play(node.name, node.prompt)
            return node.next
        if node.kind == "menu":
            return await self._menu(call, node)
        if node.kind == "broadcast":
            await self._broadcast(call, node.name)
            assert node.next is not None
            return node.next
        if node.kind == "caller-list":
            listed = call.caller in call.plan.caller_lists.get(node.caller_list or "", frozenset())
            target = node.match if listed else node.next
            assert target is not None
            call.path.note(node.name, "match" if listed else "no-match", node.label, target.label)
            return target
        if node.kind == "hours":
            assert node.hours is not None
            hours = call.plan.hours[node.hours]
            is_open = hours.open_at(self.local_time())
            target = node.next if is_open else node.closed
            assert target is not None
            call.path.note(node.name, "open" if is_open else "closed", node.label, target.label)
            return target
        raise ValueError(f"unknown node type {node.kind!r}")

    async def _menu(self, call: Call, menu: Node) -> Target:
        session, path = call.session, call.path
        assert menu.prompt is not None
        sound = prompt_sound(menu.prompt)
        for _ in range(menu.tries):
            path.begin(menu.name, sound, menu.label)
            digits = await session.get_data(sound, menu.timeout_ms, menu.max_digits)
            check_alive(session)
            if digits is None:
                path.end("timeout")
                continue
            target = menu.options.get(digits)
            if target is not None:
                path.end("ok", digits, target.label)
                return target
            path.end("invalid", digits)
            if menu.invalid_prompt:
                await call.play(menu.name, menu.invalid_prompt)
        session.log.info("no choice in %s after %d tries", menu.name, menu.tries)
        return menu.default or call.plan.fallback

    async def _broadcast(self, call: Call, node: str) -> None:
        """Play the emergency broadcast supervisors set in Redis, if any (read on every call)."""
        if self.redis is None:
            return
        try:
            async with asyncio.timeout(self.broadcast_timeout):
                value = await self.redis.get(Keys.broadcast)
        except Exception as exc:  # Redis down: the caller goes on without the broadcast
            call.session.log.warning("could not read the broadcast from Redis: %r", exc)
            return
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if not value:
            return
        sound = value.strip()
        if not _SOUND.fullmatch(sound):
            call.session.log.warning("broadcast %r is not a sound name; not played", sound[:80])
            return
        await call.play_sound(node, sound)


    async def _set_language(self, call: Call, language: str) -> None:
        # Asterisk plays "hotline/x" from sounds/<CHANNEL(language)>/hotline/x.
        await call.session.set_variable("CHANNEL(language)", language)
        call.language = language

    # ------------------------------------------------------------------ leaving the IVR

    def _route(self, call: Call, target: Target) -> Route:
        queue = target.queue or call.plan.fallback.queue
        assert queue is not None  # a plan's fallback is always a queue (the menu reader insists)
        return Route(queue, call.plan.skills_for(target, call.language), target.priority, call.language)

    async def _hand_over(self, call: Call, target: Target) -> Optional[Route]:
        session, path, plan = call.session, call.path, call.plan
        if target.kind == "hangup":
            path.node = "goodbye"
            if target.prompt:
                await call.play("goodbye", target.prompt)
            path.result = "completed"
            await session.set_variable("HOTLINE_IVR_RESULT", "completed")
            return None
        if target.kind == "transfer":
            assert target.transfer is not None
            transfer = plan.transfers[target.transfer]
            route = self._route(call, plan.fallback)
            path.node = "transfer"
            await self._set_route(session, route)  # if the number fails, a person still answers
            await session.set_variable("HOTLINE_TRANSFER", transfer.number)
            await session.set_variable("HOTLINE_IVR_RESULT", "transfer")
            path.result, path.transfer = "transfer", transfer.number
            return route
        route = self._route(call, target)
        path.node = "transfer"
        if target.label:
            path.extra["route_label"] = dict(target.label)      # why this queue (and priority), in words
        if plan.transfer_prompt:
            await call.play("transfer", plan.transfer_prompt)
        await self._set_route(session, route)
        return route

    @staticmethod
    async def _set_route(session: AGISession, route: Route) -> None:
        await session.set_variable("HOTLINE_QUEUE", route.queue)
        await session.set_variable("HOTLINE_SKILLS", route.skills)
        await session.set_variable("HOTLINE_PRIORITY", route.priority)
        await session.set_variable("HOTLINE_LANG", route.lang)

    async def _fallback_route(self, call: Call) -> Optional[Route]:
        session = call.session
        if session.hung_up or session.closed:
            return None
        route = self._route(call, call.plan.fallback)
        try:
            await self._set_route(session, route)
        except AGIError as exc:
            session.log.warning("could not set the fallback route: %s", exc)
            return None
        return route

    async def _store(self, session: AGISession, path: IvrPath) -> None:
        if self.redis is None:
            return
        if not path.uniqueid:
            session.log.warning("no agi_uniqueid: IVR path not stored")
            return
        document = json.dumps(path.to_dict(), ensure_ascii=False, separators=(",", ":"))
        try:
            async with asyncio.timeout(self.store_timeout):
                await self.redis.set(Keys.ivr_path(path.uniqueid), document, ex=IVR_PATH_TTL)
        except Exception as exc:  # Redis down or slow: the call itself is already handed on
            session.log.warning("could not store the IVR path in Redis: %r", exc)


def default_services(tickets_url: Optional[str] = None, tickets_timeout: float = 1.5) -> dict[str, Service]:
    """Every service the menus may name (ivr.menu.SERVICES)."""
    return {"progress-query": ProgressQuery(tickets_url, timeout=tickets_timeout),
            "callback": Callback(), "message": LeaveMessage()}


def build_handlers(
    redis: Any = None,
    *,
    lines: Optional[Mapping[str, LinePlan]] = None,
    services: Optional[Mapping[str, Service]] = None,
    clock: Callable[[], float] = time.time,
    local_time: Callable[[], dt.datetime] = dt.datetime.now,
    store_timeout: float = 2.0,
) -> dict[str, AGIHandler]:
    """The FastAGI handlers of the hotline: ``ivr`` (``agi://host:port/ivr``), ``survey`` and ``announce``.

    ``lines`` defaults to the shipped menus (``ivr/menus``; :class:`ivr.menu.MenuError`
    if they are wrong); ``redis`` is a ``redis.asyncio`` client (None: no paths stored,
    no broadcast); ``services`` replace the default IVR services by name (``progress-query``...).
    """
    if lines is None:
        lines = load_lines()
    services = {**default_services(), **(services or {})}
    ivr = HotlineIvr(lines, redis, clock=clock, local_time=local_time, services=services,
                     store_timeout=store_timeout)
    survey = Survey(redis, clock=clock, store_timeout=store_timeout)
    announce = Announce(redis, clock=clock, store_timeout=store_timeout)
    return {"ivr": ivr.handle, "survey": survey.handle, "announce": announce.handle}
