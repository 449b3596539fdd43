"""/api/v1/calls/{call_id}/...: call control from the desktop, through the ACD (acd/call_control.py).

An agent acts only on the call that is theirs now (the live call's agent); a supervisor on the calls
of their teams' agents; admins on any. A transfer is refused once the call was transferred
("来电最多转接一次") unless a supervisor allowed one more (``.../transfer/allow``, audited).
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from hotline.auth.roles import Principal, Role
from hotline.web.api import ApiError, Request
from hotline.web.security import client_address

from ..appkeys import ACD, AUDIT, REDIS
from ..live import read_agent, read_call
from .base import API, json_answer
from .schemas import CallControlDone, CallPath, TransferRequest, TransferTargets

CONTROLLERS = (Role.AGENT, Role.SUPERVISOR, Role.ADMIN)


async def _call_for(request: Request, call_id: str) -> dict[str, Any]:
    """The live call, if the one asking may act on it: 404 if not live, 403 if not theirs."""
    user: Principal = request.user
    call = await read_call(request.app[REDIS], call_id)
    if call is None:
        raise ApiError(404, f"no live call {call_id}")
    agent_id = call.get("agent") or ""
    if user.role == Role.ADMIN:
        return call
    if user.role == Role.AGENT:
        if not agent_id or agent_id != user.agent_id:
            raise ApiError(403, "an agent acts only on their own call")
        return call
    agent = await read_agent(request.app[REDIS], agent_id) if agent_id else None
    if agent is None or not user.may_change_agent(agent_id, agent["team"]):
        raise ApiError(403, f"call {call_id} is not with an agent of your teams")
    return call


async def _audit(request: Request, action: str, call_id: str, call: dict[str, Any], **detail: Any) -> None:
    user = request.user
    if user.agent_id and user.agent_id == call.get("agent"):
        return                          # an agent's own call: not someone else's doing
    await request.app[AUDIT].write(action, actor=user.name, target=call_id, address=client_address(request.http),
                                   detail={"agent": call.get("agent"), **detail})


@API.endpoint("GET", "/transfer-targets", roles=CONTROLLERS, tag="calls", response=TransferTargets,
              statuses=(503,), summary="Where a call may be transferred: queues, policy specialists, emergency lines")
async def transfer_targets(request: Request) -> web.Response:
    _, answer = await request.app[ACD].call("GET", "/transfer-targets", request.user.name)
    return json_answer(answer)


@API.endpoint("POST", "/calls/{call_id}/hangup", roles=CONTROLLERS, tag="calls", path_model=CallPath,
              response=CallControlDone, statuses=(404, 409, 503),
              summary="Hang up the agent's leg (the caller goes on to the satisfaction survey)")
async def hangup(request: Request) -> web.Response:
    call_id = request.path.call_id
    call = await _call_for(request, call_id)
    _, answer = await request.app[ACD].call("POST", f"/calls/{call_id}/hangup", request.user.name)
    await _audit(request, "call_hangup", call_id, call)
    return json_answer(answer)


@API.endpoint("POST", "/calls/{call_id}/transfer", roles=CONTROLLERS, tag="calls", path_model=CallPath,
              body=TransferRequest, response=CallControlDone, statuses=(404, 409, 503),
              summary="Transfer the caller to a queue, an agent, a policy specialist or an emergency line "
                      "(at most once, unless a supervisor allowed one more: else 409)")
async def transfer(request: Request) -> web.Response:
    call_id, body = request.path.call_id, request.body
    call = await _call_for(request, call_id)
    _, answer = await request.app[ACD].call("POST", f"/calls/{call_id}/transfer", request.user.name,
                                            body=body.model_dump(exclude_none=True))
    await _audit(request, "call_transfer", call_id, call, kind=body.kind, to=body.target, mode=body.mode)
    return json_answer(answer)


@API.endpoint("POST", "/calls/{call_id}/transfer/allow", roles=(Role.SUPERVISOR, Role.ADMIN), tag="calls",
              path_model=CallPath, response=CallControlDone, statuses=(404, 503),
              summary="Allow one more transfer of this call (the 12345 rule allows one)")
async def allow_transfer(request: Request) -> web.Response:
    call_id = request.path.call_id
    call = await _call_for(request, call_id)
    _, answer = await request.app[ACD].call("POST", f"/calls/{call_id}/transfer/allow", request.user.name)
    await request.app[AUDIT].write("call_transfer_allowed", actor=request.user.name, target=call_id,
                                   address=client_address(request.http),
                                   detail={"agent": call.get("agent"), "allowed_more": answer.get("allowed_more")})
    return json_answer(answer)
