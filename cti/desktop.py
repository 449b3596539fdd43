"""The agent desktop's WebSocket: ``/api/v1/ws/agent/{agent_id}``.

Only a signed-in user (the session cookie, or a bearer token) may open it, from this site's own
pages (Origin): an agent for their own seat, a supervisor for their teams' agents, an admin for
any. Anonymous: closed with 4401; not allowed: 4403; a foreign Origin is refused before the
upgrade (403).

Server -> desktop, one JSON object per message, told apart by ``type``:

* ``state``: the agent as Redis holds it (``id, name, team, skills, state, state_since,
  reason, call``): at once on connect, and again after a ``resync``;
* ``agent``, ``call_ended``: the ACD's own events about this agent, forwarded as published;
* ``ticket``: a ticket this agent filed reached the ticketing system (``call``, ``ticket_id``,
  ``status``; cti/tickets/delivery.py);
* ``screen_pop``: when the agent is reserved for a call (and on connect if the agent already
  has one): ``call`` (caller, line, queue, priority, skills, wait), ``ivr`` (the caller's
  path through the menus, or null) and ``history`` (calls from this number in the last 30
  days, or null when unknown);
* ``pong``, ``error``: answers to the desktop's own messages.

Desktop -> server: ``{"type": "ping"}`` (answered ``pong``), ``{"type": "state"}`` (answered
``state``). Anything else gets an ``error`` message and is
otherwise ignored. A bad agent id closes the socket with code 4400, an unknown one with
4404, both with a readable reason; the server going away closes with 1001.
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any, Optional

import asyncpg
from aiohttp import WSCloseCode, WSMsgType, web
from redis.exceptions import RedisError

from hotline.keys import Keys
from hotline.model import AgentState

from hotline.auth.roles import Principal, Role
from hotline.web.api import PRINCIPAL
from hotline.web.security import same_origin

from .appkeys import ALLOWED_ORIGINS, HUB, POOL, REDIS, SESSION_CHECK, SESSIONS, SOCKETS
from .events import Subscription
from .live import call_view, read_agent, read_call, read_ivr_path
from .records import caller_history

__all__ = ["AgentDesk", "agent_socket", "close_all"]

log = logging.getLogger(__name__)

AGENT_ID = re.compile(r"[0-9]{1,16}")
CLOSE_BAD_ID = 4400
CLOSE_UNSIGNED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_UNKNOWN_AGENT = 4404
CLOSE_UNAVAILABLE = 4503
MAX_CLIENT_MESSAGE = 16 * 1024
HISTORY_TIMEOUT_S = 1.5
SESSION_CHECK_S = 15.0          # how soon a desktop closes after its session ended (signed out, disabled)
POP_STATES = {AgentState.RESERVED.value, AgentState.ON_CALL.value}
_AGENT_EVENT_FIELDS = ("type", "agent", "state", "reason", "call", "at")
_CALL_EVENT_FIELDS = ("type", "uniqueid", "outcome", "agent")
_TICKET_EVENT_FIELDS = ("type", "agent", "call", "ticket_id", "status")


def _clip(text: str, limit: int = 60) -> str:
    text = "".join(ch for ch in text if ch.isprintable())
    return text if len(text) <= limit else text[:limit] + "…"


class AgentDesk:
    """One open desktop: its socket, the agent it shows, the events it receives."""

    def __init__(self, ws: web.WebSocketResponse, agent_id: str, app: web.Application,
                 sub: Subscription) -> None:
        self.ws = ws
        self.agent_id = agent_id
        self.redis = app[REDIS]
        self.pool = app[POOL]
        self.sub = sub
        self.last_pop: Optional[str] = None
        self._send_lock = asyncio.Lock()

    async def send(self, message: dict[str, Any]) -> None:
        async with self._send_lock:
            await self.ws.send_str(json.dumps(message, ensure_ascii=False))

    # ---- server -> desktop --------------------------------------------------------------
    async def send_state(self) -> bool:
        """Send the agent as Redis holds it; False if the agent no longer exists."""
        agent = await read_agent(self.redis, self.agent_id)
        if agent is None:
            return False
        await self.send({"type": "state", "agent": agent})
        if agent["state"] in POP_STATES and agent["call"]:
            await self.screen_pop(agent["call"])
        return True

    async def forward_events(self) -> None:
        while True:
            event = await self.sub.get()
            if event is None:                     # the hub stopped: the server is going away
                await self.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
                return
            if self.ws.closed:
                return
            try:
                await self.on_event(event)
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                if self.ws.closed:
                    return
                log.warning("desktop %s: event not delivered: %s", self.agent_id, exc)
                try:
                    await self.send({"type": "error", "error": "live state unavailable"})
                except OSError:
                    return
            except Exception:  # noqa: BLE001 - one odd event must not silence the desktop
                log.exception("desktop %s: event %r not handled", self.agent_id, event.get("type"))

    async def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "resync":
            if not await self.send_state():
                await self.ws.close(code=CLOSE_UNKNOWN_AGENT, message=b"agent removed")
            return
        if kind == "agent" and event.get("agent") == self.agent_id:
            await self.send({key: event.get(key) for key in _AGENT_EVENT_FIELDS})
            if event.get("state") not in POP_STATES:
                self.last_pop = None              # the next reservation pops again, even for the same call
            call = event.get("call")
            if event.get("state") == AgentState.RESERVED.value and isinstance(call, str) and call:
                await self.screen_pop(call)
        elif kind == "ticket" and event.get("agent") == self.agent_id:
            await self.send({key: event.get(key) for key in _TICKET_EVENT_FIELDS})
        elif kind == "call_ended":
            uniqueid = event.get("uniqueid")
            if isinstance(uniqueid, str):
                self.sub.forget_call(uniqueid)
            await self.send({key: event.get(key) for key in _CALL_EVENT_FIELDS})

    async def screen_pop(self, uniqueid: str) -> None:
        if uniqueid == self.last_pop:
            return
        self.last_pop = uniqueid
        self.sub.track_call(uniqueid)
        await self.send(await build_screen_pop(self.redis, self.pool, uniqueid))

    # ---- desktop -> server --------------------------------------------------------------
    async def on_message(self, msg) -> None:
        if msg.type != WSMsgType.TEXT:
            await self.send({"type": "error", "error": "text messages (JSON) only"})
            return
        try:
            data = json.loads(msg.data)
        except ValueError:
            await self.send({"type": "error", "error": "message is not valid JSON"})
            return
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "ping":
            await self.send({"type": "pong"})
        elif kind == "state":
            await self.send_state()
        else:
            shown = _clip(kind) if isinstance(kind, str) else None
            await self.send({"type": "error", "error": f"unknown message type {shown!r}" if shown
                             else "a message is a JSON object with a \"type\""})


async def build_screen_pop(redis, pool: asyncpg.Pool, uniqueid: str) -> dict[str, Any]:
    """What the agent sees when the phone rings: the call, the IVR path, the caller's history."""
    data = await read_call(redis, uniqueid)
    call = call_view(uniqueid, data or {})
    ivr = await read_ivr_path(redis, uniqueid)
    history = None
    if call["caller"]:
        try:
            async with asyncio.timeout(HISTORY_TIMEOUT_S):
                history = await caller_history(pool, call["caller"])
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncio.TimeoutError) as exc:
            log.warning("screen pop %s: caller history unavailable: %s", uniqueid, str(exc) or type(exc).__name__)
    return {"type": "screen_pop", "call": call, "ivr": ivr, "history": history, "live": data is not None}


async def _refuse(ws: web.WebSocketResponse, code: int, reason: str) -> None:
    try:
        await ws.send_str(json.dumps({"type": "error", "error": reason}, ensure_ascii=False))
    except OSError:
        pass
    # A close reason is at most 123 bytes of UTF-8: cut on a character boundary.
    await ws.close(code=code, message=reason.encode("utf-8")[:120].decode("utf-8", "ignore").encode("utf-8"))


def _may_watch(principal: Principal, agent_id: str, team: Optional[str]) -> bool:
    if principal.role not in (Role.AGENT, Role.SUPERVISOR, Role.ADMIN) and not principal.service:
        return False
    return principal.may_see_agent(agent_id, team)


async def agent_socket(request: web.Request) -> web.StreamResponse:
    app = request.app
    allowed = app[ALLOWED_ORIGINS]
    if not same_origin(request, allowed):
        # (Another site's page must not even open it: it would read the callers' data.)
        log.warning("desktop WebSocket refused: Origin %s", request.headers.get("Origin"))
        return web.json_response({"error": "cross-site WebSocket refused (Origin)"}, status=403)
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=MAX_CLIENT_MESSAGE)
    await ws.prepare(request)
    principal: Optional[Principal] = request.get(PRINCIPAL)
    agent_id = request.match_info.get("agent_id", "")
    if principal is None:
        await _refuse(ws, CLOSE_UNSIGNED, "sign in first")
        return ws
    if not AGENT_ID.fullmatch(agent_id):
        await _refuse(ws, CLOSE_BAD_ID, f"bad agent id {_clip(agent_id, 20)!r}: digits only (the extension)")
        return ws
    if principal.role == Role.AGENT and agent_id != principal.agent_id:
        await _refuse(ws, CLOSE_FORBIDDEN, "an agent opens only their own desktop")
        return ws
    try:
        team = await app[REDIS].hget(Keys.agent(agent_id), "team")
    except (RedisError, OSError, asyncio.TimeoutError) as exc:
        log.warning("desktop %s: redis unavailable: %s", agent_id, exc)
        await _refuse(ws, CLOSE_UNAVAILABLE, "live state unavailable, try again shortly")
        return ws
    if team is not None and not _may_watch(principal, agent_id, team):
        await _refuse(ws, CLOSE_FORBIDDEN, f"not allowed to open the desktop of agent {agent_id}")
        return ws
    hub = app[HUB]
    sockets = app[SOCKETS]
    sub = hub.subscribe(agent_id)                # before reading the state: no event falls in between
    sockets.add(ws)
    desk = AgentDesk(ws, agent_id, app, sub)
    writer: Optional[asyncio.Task] = None
    guard: Optional[asyncio.Task] = None
    try:
        try:
            exists = await desk.send_state()
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            log.warning("desktop %s: redis unavailable: %s", agent_id, exc)
            await _refuse(ws, CLOSE_UNAVAILABLE, "live state unavailable, try again shortly")
            return ws
        if not exists:
            await _refuse(ws, CLOSE_UNKNOWN_AGENT, f"unknown agent {agent_id}")
            return ws
        log.info("desktop %s connected", agent_id)
        writer = asyncio.create_task(desk.forward_events(), name=f"cti-desktop-{agent_id}")
        if principal.session_id is not None:
            guard = asyncio.create_task(_session_guard(ws, app, principal.session_id), name=f"cti-guard-{agent_id}")
        async for msg in ws:
            if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE, WSMsgType.CLOSING):
                break
            try:
                await desk.on_message(msg)
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                if ws.closed:
                    break
                log.warning("desktop %s: %s", agent_id, exc)
            except Exception:  # noqa: BLE001 - a client message must never end the handler
                log.exception("desktop %s: message not handled", agent_id)
    finally:
        hub.unsubscribe(sub)
        sockets.discard(ws)
        for task in (writer, guard):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if not ws.closed:
            await ws.close()
        log.info("desktop %s disconnected", agent_id)
    return ws


async def _session_guard(ws: web.WebSocketResponse, app: web.Application, session_id: int) -> None:
    """A desktop lives as long as its session: signed out, disabled or expired, it is closed (4401).
    (PostgreSQL unreachable: the desktop stays open; the live data is Redis's.)"""
    while not ws.closed:
        await asyncio.sleep(app[SESSION_CHECK])
        try:
            alive = await app[SESSIONS].alive(session_id)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncio.TimeoutError):
            continue
        if not alive:
            log.info("desktop closed: its session %s has ended", session_id)
            await _refuse(ws, CLOSE_UNSIGNED, "the session has ended: sign in again")
            return


async def close_all(app: web.Application) -> None:
    """Close every open desktop (server going away): they reconnect to another instance."""
    open_sockets = app[SOCKETS]
    sockets = list(open_sockets)
    await asyncio.gather(*(ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
                           for ws in sockets if not ws.closed), return_exceptions=True)
