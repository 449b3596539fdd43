"""/api/v1/agents: the agents, their states (changed through the ACD), their profiles (admins).

An agent reads and changes only their own seat; a supervisor the agents of their teams (all, with
no teams set); admins and ops read every agent; only admins add, change or remove agents. A change
of an agent's state by someone else is on the audit trail.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from hotline.auth.roles import Principal, Role
from hotline.web.api import ApiError, Request
from hotline.web.security import client_address

from ..appkeys import ACD, AUDIT, REDIS
from ..live import agent_order, read_agent, read_agents
from .base import API, decode_cursor, encode_cursor, json_answer
from .schemas import (AgentChanged, AgentPath, AgentProfile, AgentsPage, AgentsQuery, AgentStateChange, AgentView,
                      Decisions, DecisionsQuery, Imported, WrapupExtension)

READERS = (Role.AGENT, Role.SUPERVISOR, Role.OPS, Role.ADMIN)
CHANGERS = (Role.AGENT, Role.SUPERVISOR, Role.ADMIN)
MAX_IMPORT = 1024 * 1024


async def _agent_for(request: Request, agent_id: str, *, change: bool) -> dict[str, Any]:
    """The agent, if the one asking may see (or change) it: 404 if unknown, 403 if not theirs."""
    user: Principal = request.user
    if user.role == Role.AGENT and agent_id != user.agent_id:
        raise ApiError(403, "an agent sees and changes only their own seat")
    agent = await read_agent(request.app[REDIS], agent_id)
    if agent is None:
        raise ApiError(404, f"unknown agent {agent_id}")
    allowed = user.may_change_agent(agent_id, agent["team"]) if change else user.may_see_agent(agent_id, agent["team"])
    if not allowed:
        raise ApiError(403, f"agent {agent_id} is not in your teams")
    return agent


@API.endpoint("GET", "/agents", roles=READERS, tag="agents", query=AgentsQuery, response=AgentsPage,
              summary="Agents by id, paged (an agent: themself; a supervisor: their teams)")
async def list_agents(request: Request) -> web.Response:
    q: AgentsQuery = request.query
    user = request.user
    after = decode_cursor(q.cursor, (str,))
    rows = [a for a in await read_agents(request.app[REDIS])
            if user.may_see_agent(a["id"], a["team"]) and (q.team is None or a["team"] == q.team)
            and (q.state is None or a["state"] == q.state)]
    if after is not None:                   # (read_agents gives them in agent_order)
        rows = [a for a in rows if agent_order(a["id"]) > agent_order(after[0])]
    page = rows[:q.limit]
    return json_answer({"agents": page,
                        "next_cursor": encode_cursor(page[-1]["id"]) if len(rows) > q.limit else None})


@API.endpoint("GET", "/agents/{agent_id}", roles=READERS, tag="agents", path_model=AgentPath, response=AgentView,
              summary="One agent", statuses=(404,))
async def get_agent(request: Request) -> web.Response:
    return json_answer(await _agent_for(request, request.path.agent_id, change=False))


@API.endpoint("POST", "/agents/{agent_id}/state", roles=CHANGERS, tag="agents", path_model=AgentPath,
              body=AgentStateChange, response=AgentChanged, statuses=(202, 404, 409, 503),
              summary="Log in, ready, not ready (with a reason), log out")
async def change_state(request: Request) -> web.Response:
    agent_id, body = request.path.agent_id, request.body
    agent = await _agent_for(request, agent_id, change=True)
    action = {"logged_in": "login", "ready": "ready", "not_ready": "not-ready", "logged_out": "logout"}[body.state]
    if body.state == "not_ready" and body.reason is None:
        raise ApiError(400, "field 'reason': required to be not ready", field="reason")
    if body.after_call and body.state not in ("not_ready", "ready"):
        raise ApiError(400, "field 'after_call': only with not_ready or ready", field="after_call")
    payload: dict[str, Any] = {"reason": body.reason} if body.reason else {}
    if body.after_call:
        payload["after_call"] = True
    user = request.user
    status, answer = await request.app[ACD].call("POST", f"/agents/{agent_id}/{action}", user.name,
                                                 body=payload or None)
    if user.agent_id != agent_id:
        await request.app[AUDIT].write("agent_state", actor=user.name, target=agent_id, address=client_address(
            request.http), detail={"from": agent["state"], "to": body.state, "reason": body.reason,
                                   **({"after_call": True} if body.after_call else {})})
    return json_answer({"stored": status != 202, **answer}, status=status)


@API.endpoint("POST", "/agents/{agent_id}/wrapup/extend", roles=CHANGERS, tag="agents", path_model=AgentPath,
              body=WrapupExtension, statuses=(404, 409, 503), summary="More wrap-up to finish the ticket")
async def extend_wrapup(request: Request) -> web.Response:
    agent_id = request.path.agent_id
    await _agent_for(request, agent_id, change=True)
    _, answer = await request.app[ACD].call("POST", f"/agents/{agent_id}/wrapup/extend", request.user.name,
                                            body={"seconds": request.body.seconds})
    return json_answer(answer)


@API.endpoint("POST", "/agents/{agent_id}/wrapup/end", roles=CHANGERS, tag="agents", path_model=AgentPath,
              response=AgentChanged, statuses=(202, 404, 409, 503),
              summary="Wrap-up over now: ready, offered the best waiting call (or not ready, if asked after the call)")
async def end_wrapup(request: Request) -> web.Response:
    agent_id, user = request.path.agent_id, request.user
    agent = await _agent_for(request, agent_id, change=True)
    status, answer = await request.app[ACD].call("POST", f"/agents/{agent_id}/wrapup/end", user.name)
    if user.agent_id != agent_id:
        await request.app[AUDIT].write("agent_state", actor=user.name, target=agent_id, address=client_address(
            request.http), detail={"from": agent["state"], "to": "wrapup_end"})
    return json_answer({"stored": status != 202, **answer}, status=status)


@API.endpoint("PUT", "/agents/{agent_id}", roles=(Role.ADMIN,), tag="agents", path_model=AgentPath,
              body=AgentProfile, response=AgentView, statuses=(503,),
              summary="Add an agent or change one's name, team and skills")
async def put_agent(request: Request) -> web.Response:
    agent_id, body = request.path.agent_id, request.body
    _, answer = await request.app[ACD].call("PUT", f"/agents/{agent_id}", request.user.name,
                                            body=body.model_dump())
    await request.app[AUDIT].write("agent_saved", actor=request.user.name, target=agent_id,
                                   address=client_address(request.http), detail=body.model_dump())
    return json_answer(answer)


@API.endpoint("DELETE", "/agents/{agent_id}", roles=(Role.ADMIN,), tag="agents", path_model=AgentPath,
              statuses=(404, 409, 503), summary="Remove a logged-out agent (their history stays)")
async def delete_agent(request: Request) -> web.Response:
    agent_id = request.path.agent_id
    _, answer = await request.app[ACD].call("DELETE", f"/agents/{agent_id}", request.user.name)
    await request.app[AUDIT].write("agent_removed", actor=request.user.name, target=agent_id,
                                   address=client_address(request.http))
    return json_answer(answer)


@API.endpoint("POST", "/agents/import", roles=(Role.ADMIN,), tag="agents", raw_body="text/csv", max_body=MAX_IMPORT,
              response=Imported, statuses=(503,),
              summary="Many agents at once: CSV (id,name,team,skills with skills mandarin:5+english:2)")
async def import_agents(request: Request) -> web.Response:
    text: str = request.body
    _, answer = await request.app[ACD].call("POST", "/agents/import", request.user.name, text=text,
                                            content_type="text/csv")
    await request.app[AUDIT].write("agents_imported", actor=request.user.name, address=client_address(request.http),
                                   detail={"imported": answer.get("imported")})
    return json_answer(answer)


@API.endpoint("GET", "/decisions", roles=(Role.SUPERVISOR, Role.ADMIN), tag="floor", query=DecisionsQuery,
              response=Decisions, statuses=(503,),
              summary="The latest routing decisions (the ACD keeps 500), newest first, with candidates and scores")
async def decisions(request: Request) -> web.Response:
    q: DecisionsQuery = request.query
    after = decode_cursor(q.cursor, (int,))
    _, answer = await request.app[ACD].call("GET", "/decisions?limit=500", request.user.name)
    rows = [d for d in answer if isinstance(d, dict) and (q.agent is None or d.get("agent") == q.agent)
            and (q.call is None or d.get("call") == q.call)]
    start = after[0] if after else 0
    page = rows[start:start + q.limit]
    more = len(rows) > start + q.limit
    return json_answer({"decisions": page, "next_cursor": encode_cursor(start + q.limit) if more else None})
