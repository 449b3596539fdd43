"""The ACD's HTTP API for call control (acd/call_control.py), beside acd/http.py's agents:

====================================  ================================================================
``GET /transfer-targets``             queues, policy specialists, emergency numbers
``POST /calls/{id}/hangup``           hang up the agent's leg (the caller goes on to the survey)
``POST /calls/{id}/transfer``         ``{"kind": "queue"|"agent"|"specialist"|"emergency", "target": "...",
                                      "mode": "blind", "skills": "mandarin:1"}`` (skills: queue only)
``POST /calls/{id}/transfer/allow``   one more transfer of this call (supervisors, admins)
====================================  ================================================================

An agent acts only on the call that is theirs now (the call hash's ``agent``); a supervisor on the
calls of their teams' agents; admins and the service (the CTI, which checked its user) on any.
Refusals are ``{"error": "one line"}``: 400 bad target, 403, 404 no live call, 409 (the 12345 rule
"来电最多转接一次", a target agent not ready, the call not in conversation, Asterisk refusing).
"""
from __future__ import annotations

from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

from hotline.auth.roles import Principal, Role

from .call_control import CallControl
from .transfers import TransferError

__all__ = ["CALL_CONTROL", "add_call_control_routes"]

CALL_CONTROL = web.AppKey("call_control", CallControl)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _allowed(request: web.Request, *roles: Role) -> tuple[CallControl, Principal, str, dict[str, str]]:
    """The call, if the one asking may act on it (raises the refusal as a TransferError)."""
    from .http import _principal          # (one definition of who asks; http imports this module)
    principal = _principal(request, *roles)
    control = request.app[CALL_CONTROL]
    uniqueid = request.match_info["id"]
    data = await control.call(uniqueid)
    agent_id = data.get("agent") or ""
    agent = control.directory.agents.get(agent_id)
    if not principal.service and principal.role != Role.ADMIN and \
            (agent is None or not principal.may_change_agent(agent_id, agent.team)):
        raise TransferError(403, f"call {uniqueid} is not yours (nor your teams')")
    return control, principal, uniqueid, data


async def _json_body(request: web.Request) -> dict[str, Any]:
    from .http import _body
    return await _body(request)


async def transfer_targets(request: web.Request) -> web.Response:
    from .http import _principal
    _principal(request)
    return web.json_response(request.app[CALL_CONTROL].targets())


async def hangup(request: web.Request) -> web.Response:
    try:
        control, _, uniqueid, _ = await _allowed(request)
        return web.json_response(await control.hangup(uniqueid))
    except TransferError as exc:
        return _error(exc.status, str(exc))
    except (RedisError, OSError) as exc:
        return _error(503, f"redis: {exc}; nothing changed")


async def transfer(request: web.Request) -> web.Response:
    try:
        control, principal, uniqueid, _ = await _allowed(request)
        body = await _json_body(request)
        kind, target, mode, skills = (body.get("kind"), body.get("target"), body.get("mode", "blind"),
                                      body.get("skills"))
        if not isinstance(kind, str) or not isinstance(target, str) or not isinstance(mode, str) \
                or skills is not None and not isinstance(skills, str):
            raise TransferError(400, "kind, target and mode must be strings (skills too, if given)")
        return web.json_response(await control.transfer(uniqueid, kind, target, by=principal.username, mode=mode,
                                                        skills=skills))
    except TransferError as exc:
        return _error(exc.status, str(exc))
    except (RedisError, OSError) as exc:
        return _error(503, f"redis: {exc}; nothing changed")


async def allow(request: web.Request) -> web.Response:
    try:
        control, principal, uniqueid, _ = await _allowed(request, Role.SUPERVISOR, Role.ADMIN)
        return web.json_response({"call": uniqueid, "allowed_more": await control.allow(uniqueid),
                                  "by": principal.username})
    except TransferError as exc:
        return _error(exc.status, str(exc))
    except (RedisError, OSError) as exc:
        return _error(503, f"redis: {exc}; nothing changed")


def add_call_control_routes(app: web.Application, control: CallControl) -> None:
    app[CALL_CONTROL] = control
    app.router.add_get("/transfer-targets", transfer_targets)
    app.router.add_post("/calls/{id}/hangup", hangup)
    app.router.add_post("/calls/{id}/transfer", transfer)
    app.router.add_post("/calls/{id}/transfer/allow", allow)
