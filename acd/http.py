"""The ACD's HTTP API (setting ``acd_port``): agents, their states, and why calls went where.

====================================  ================================================================
``GET /agents``                       every agent (as Redis holds them)
``GET /agents/{id}``                  one agent
``PUT /agents/{id}``                  add or change: ``{"name", "team", "skills": {"mandarin": 5}}``
``DELETE /agents/{id}``               remove a logged-out agent
``POST /agents/import``               many at once: YAML (a list of agents) or CSV
                                      (``id,name,team,skills`` with skills ``mandarin:5+english:2``)
``POST /agents/{id}/login``           log in: ready, or ``{"reason": "training"}`` to start not ready
``POST /agents/{id}/logout``          log out
``POST /agents/{id}/ready``           ready (offered the best waiting call at once)
``POST /agents/{id}/not-ready``       ``{"reason": "break"}`` (break, meal, training, meeting); with
                                      ``"after_call": true``: when this call's wrap-up ends
``POST /agents/{id}/ready``           with ``{"after_call": true}``: that not-ready-after-call withdrawn
``POST /agents/{id}/wrapup/extend``   ``{"seconds": 30}`` more wrap-up
``POST /agents/{id}/wrapup/end``      wrap-up over now (ready, or the reason asked after the call)
``GET /decisions``                    the latest routing decisions with candidates and scores
====================================  ================================================================

It listens on loopback by default (``acd_host``): the CTI reaches it with the service token the two
share, for a signed-in user it names (``X-Hotline-Actor``). A user's own access token (POST
/api/v1/auth/sign-in of the CTI) works too: an agent reads and changes only their own seat, a
supervisor the agents of their teams, only admins add, change or remove agents. Anonymous: 401;
not allowed: 403. Bodies are JSON (``Content-Type: application/json``; an import CSV or YAML), so
that no cross-site form can drive the API.

Changes take effect at once in the running ACD (its routing indexes are updated in the
same step); errors are ``{"error": "one line"}`` with 400, 404 or 409. A state change made while
Redis is down is kept by the ACD and written when Redis answers again: 202, with ``"stored": false``.
Every verb goes to the agent service (acd/agent_service.py), as the phone's feature codes do.
"""
from __future__ import annotations

import csv
import io
import json
import logging
from typing import Any, Optional

import yaml
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from hotline.auth.roles import Principal, Role
from hotline.auth.sessions import SessionStore
from hotline.keys import Keys
from hotline.model import SkillError, parse_skills
from hotline.web.api import PRINCIPAL
from hotline.web.security import Authenticator

from .agent_service import AgentChange, AgentService
from .agents import Agent, AgentError
from .assignment import Assignment
from .call_control import CallControl
from .http_calls import add_call_control_routes

__all__ = ["make_acd_app", "parse_agents_file", "start_acd_http"]

log = logging.getLogger(__name__)

MAX_IMPORT_ROWS = 5000          # a floor is hundreds of agents: a bigger file is a mistake

AGENTS = web.AppKey("agents", AgentService)
ASSIGNMENT = web.AppKey("assignment", Assignment)
REDIS = web.AppKey("redis", Redis)


def _agent_json(agent: Agent) -> dict[str, Any]:
    return {"id": agent.id, "name": agent.name, "team": agent.team, "skills": agent.skills,
            "state": agent.state.value, "state_since": agent.state_since, "reason": agent.reason,
            "call": agent.call, "pending_reason": agent.pending_reason}


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def parse_agents_file(text: str, kind: str) -> list[tuple[str, str, str, dict[str, int]]]:
    """Agents from a YAML list or a CSV (``id,name,team,skills``); one-line ValueError otherwise."""
    rows: list[dict[str, Any]]
    if kind == "csv":
        reader = csv.DictReader(io.StringIO(text))
        missing = {"id", "skills"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"CSV header must name id, name, team, skills (missing {', '.join(sorted(missing))})")
        rows = list(reader)
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ValueError("not valid YAML") from None
        if isinstance(data, dict) and "agents" in data:
            data = data["agents"]
        if not isinstance(data, list):
            raise ValueError("YAML must be a list of agents (id, name, team, skills)")
        rows = data
    if len(rows) > MAX_IMPORT_ROWS:
        raise ValueError(f"at most {MAX_IMPORT_ROWS} agents per import, got {len(rows)}")
    agents = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or not row.get("id"):
            raise ValueError(f"agent {number}: needs an id")
        skills = row.get("skills") or {}
        try:
            skills = parse_skills(skills) if isinstance(skills, str) else {str(k): v for k, v in skills.items()}
        except (SkillError, AttributeError) as exc:
            raise ValueError(f"agent {row['id']}: {exc}") from None
        agents.append((str(row["id"]), str(row.get("name") or row["id"]), str(row.get("team") or "default"), skills))
    return agents


def _principal(request: web.Request, *roles: Role) -> Principal:
    """Who asks: 401 if nobody signed, 403 if not one of ``roles`` (a service may do anything)."""
    principal = request.get(PRINCIPAL)
    if principal is None:
        raise web.HTTPUnauthorized(text=json.dumps({"error": "a token is required (the service token, or a "
                                                             "signed-in user's)"}), content_type="application/json")
    if roles and not principal.has(*roles):
        raise web.HTTPForbidden(text=json.dumps({"error": "not allowed for this role"}), content_type="application/json")
    return principal


def _forbidden(message: str) -> web.HTTPForbidden:
    return web.HTTPForbidden(text=json.dumps({"error": message}), content_type="application/json")


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text=json.dumps({"error": "the body must be JSON (application/json)"}),
                                           content_type="application/json")
    try:
        data = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text=json.dumps({"error": "body must be JSON"}), content_type="application/json")
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": "body must be a JSON object"}),
                                 content_type="application/json")
    return data


def _agent_or_404(agents: AgentService, agent_id: str) -> Agent:
    agent = agents.directory.agents.get(agent_id)
    if agent is None:
        raise web.HTTPNotFound(text=json.dumps({"error": f"unknown agent {agent_id!r}"}),
                               content_type="application/json")
    return agent


async def list_agents(request: web.Request) -> web.Response:
    principal = _principal(request)
    agents = sorted(request.app[AGENTS].directory.agents.values(), key=lambda a: (len(a.id), a.id))
    return web.json_response([_agent_json(a) for a in agents if principal.may_see_agent(a.id, a.team)])


async def get_agent(request: web.Request) -> web.Response:
    principal = _principal(request)
    agent = _agent_or_404(request.app[AGENTS], request.match_info["id"])
    if not principal.may_see_agent(agent.id, agent.team):
        raise _forbidden(f"not allowed to see agent {agent.id}")
    return web.json_response(_agent_json(agent))


async def put_agent(request: web.Request) -> web.Response:
    _principal(request, Role.ADMIN)
    agent_id = request.match_info["id"]
    body = await _body(request)
    skills = body.get("skills") or {}
    try:
        if isinstance(skills, str):
            skills = parse_skills(skills)
        if not isinstance(skills, dict):
            raise AgentError("skills must be an object of skill: level")
        agent = await request.app[AGENTS].save(agent_id, str(body.get("name") or agent_id),
                                               str(body.get("team") or "default"), skills)
    except (AgentError, SkillError) as exc:
        return _error(400, str(exc))
    except (RedisError, OSError) as exc:
        return _error(503, f"redis: {exc}; nothing changed")
    return web.json_response(_agent_json(agent))


async def delete_agent(request: web.Request) -> web.Response:
    _principal(request, Role.ADMIN)
    agents = request.app[AGENTS]
    agent_id = request.match_info["id"]
    _agent_or_404(agents, agent_id)
    try:
        await agents.remove(agent_id)
    except AgentError as exc:
        return _error(409, str(exc))
    except (RedisError, OSError) as exc:
        return _error(503, f"redis: {exc}; nothing changed")
    return web.json_response({"deleted": agent_id})


async def import_agents(request: web.Request) -> web.Response:
    _principal(request, Role.ADMIN)
    media = request.content_type
    if media not in ("text/csv", "application/yaml", "application/x-yaml", "text/yaml"):
        raise web.HTTPUnsupportedMediaType(text=json.dumps({"error": "an import is text/csv or application/yaml"}),
                                           content_type="application/json")
    text = await request.text()
    kind = "csv" if media == "text/csv" else "yaml"
    try:
        imported = await request.app[AGENTS].import_agents(parse_agents_file(text, kind))
    except (ValueError, AgentError) as exc:
        return _error(400, str(exc))
    except (RedisError, OSError) as exc:
        return _error(503, f"redis: {exc}")
    return web.json_response({"imported": imported})


def _changed(change: AgentChange) -> web.Response:
    if change.stored:
        return web.json_response(_agent_json(change.agent))
    return web.json_response({**_agent_json(change.agent), "stored": False}, status=202)


async def _state_change(request: web.Request, action: str) -> web.Response:
    principal = _principal(request)
    agents = request.app[AGENTS]
    agent_id = request.match_info["id"]
    agent = _agent_or_404(agents, agent_id)
    if not principal.may_change_agent(agent_id, agent.team):
        raise _forbidden(f"not allowed to change agent {agent_id}")
    body = await _body(request)
    try:
        if action == "login":
            return _changed(await agents.login(agent_id, str(body.get("reason") or "")))
        after_call = body.get("after_call") is True
        if action == "ready" and after_call:
            return web.json_response(_agent_json(await agents.cancel_after_call(agent_id)))
        if action == "ready":
            return _changed(await agents.ready(agent_id))
        if action == "logout":
            return _changed(await agents.logout(agent_id))
        if action == "not-ready" and after_call:
            return web.json_response(_agent_json(await agents.not_ready_after_call(
                agent_id, str(body.get("reason") or ""))))
        if action == "not-ready":
            return _changed(await agents.not_ready(agent_id, str(body.get("reason") or "")))
        if action == "end":
            return _changed(await agents.end_wrapup(agent_id))
        seconds = body.get("seconds", 30)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= 3600:
            raise AgentError("seconds must be a number, 0..3600")
        until = await agents.extend_wrapup(agent_id, float(seconds))
        return web.json_response({**_agent_json(agent), "wrapup_until": until})
    except AgentError as exc:
        return _error(409, str(exc))
    except (RedisError, OSError) as exc:
        return _error(503, f"redis: {exc}")


async def decisions(request: web.Request) -> web.Response:
    _principal(request, Role.SUPERVISOR, Role.ADMIN)
    try:
        limit = max(1, min(500, int(request.query.get("limit", "50"))))
    except ValueError:
        return _error(400, "limit must be an integer")
    try:
        rows = [json.loads(r) for r in await request.app[REDIS].lrange(Keys.decisions, 0, limit - 1)]
    except (RedisError, OSError):
        rows = list(reversed(request.app[ASSIGNMENT].decisions))[:limit]     # this process's own, when Redis is away
    return web.json_response(rows)


def _action(action: str):
    async def handler(request: web.Request) -> web.Response:
        return await _state_change(request, action)
    return handler


def make_acd_app(agents: AgentService, assignment: Assignment, redis: Redis,
                 authenticator: Authenticator, call_control: Optional[CallControl] = None) -> web.Application:
    app = web.Application(middlewares=[authenticator.middleware], client_max_size=2 * 1024 * 1024)
    app[AGENTS] = agents
    app[ASSIGNMENT] = assignment
    app[REDIS] = redis
    app.router.add_get("/agents", list_agents)
    app.router.add_post("/agents/import", import_agents)
    app.router.add_get("/agents/{id}", get_agent)
    app.router.add_put("/agents/{id}", put_agent)
    app.router.add_delete("/agents/{id}", delete_agent)
    for action in ("login", "logout", "ready", "not-ready"):
        app.router.add_post(f"/agents/{{id}}/{action}", _action(action))
    app.router.add_post("/agents/{id}/wrapup/extend", _action("extend"))
    app.router.add_post("/agents/{id}/wrapup/end", _action("end"))
    app.router.add_get("/decisions", decisions)
    if call_control is not None:
        add_call_control_routes(app, call_control)      # acd/http_calls.py
    return app


async def start_acd_http(agents: AgentService, assignment: Assignment, redis: Redis, host: str, port: int, *,
                         sessions: SessionStore, service_token: Optional[str],
                         call_control: Optional[CallControl] = None) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(make_acd_app(agents, assignment, redis, Authenticator(sessions, service_token=service_token),
                                        call_control), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1] if port == 0 else port
    log.info("ACD API on http://%s:%s", host, bound)
    return runner, bound
