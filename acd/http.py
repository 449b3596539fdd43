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
``POST /agents/{id}/not-ready``       ``{"reason": "break"}`` (break, meal, training, meeting)
``POST /agents/{id}/wrapup/extend``   ``{"seconds": 30}`` more wrap-up
``GET /decisions``                    the latest routing decisions with candidates and scores
====================================  ================================================================

Changes take effect at once in the running ACD (its routing indexes are updated in the
same step); errors are ``{"error": "one line"}`` with 400, 404 or 409.
"""
from __future__ import annotations

import csv
import io
import json
import logging
from typing import Any

import yaml
from aiohttp import web
from redis.exceptions import RedisError

from hotline.keys import Keys
from hotline.model import NOT_READY_REASONS, AgentState, SkillError, parse_skills

from .agents import Agent, AgentError
from .distributor import Distributor

__all__ = ["DISTRIBUTOR", "make_acd_app", "parse_agents_file", "start_acd_http"]

log = logging.getLogger(__name__)

DISTRIBUTOR = web.AppKey("distributor", Distributor)


def _agent_json(agent: Agent) -> dict[str, Any]:
    return {"id": agent.id, "name": agent.name, "team": agent.team, "skills": agent.skills,
            "state": agent.state.value, "state_since": agent.state_since, "reason": agent.reason,
            "call": agent.call}


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


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text=json.dumps({"error": "body must be JSON"}), content_type="application/json")
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": "body must be a JSON object"}),
                                 content_type="application/json")
    return data


def _agent_or_404(dist: Distributor, agent_id: str) -> Agent:
    agent = dist.agents.agents.get(agent_id)
    if agent is None:
        raise web.HTTPNotFound(text=json.dumps({"error": f"unknown agent {agent_id!r}"}),
                               content_type="application/json")
    return agent


async def list_agents(request: web.Request) -> web.Response:
    dist = request.app[DISTRIBUTOR]
    agents = sorted(dist.agents.agents.values(), key=lambda a: (len(a.id), a.id))
    return web.json_response([_agent_json(a) for a in agents])


async def get_agent(request: web.Request) -> web.Response:
    return web.json_response(_agent_json(_agent_or_404(request.app[DISTRIBUTOR], request.match_info["id"])))


async def put_agent(request: web.Request) -> web.Response:
    dist = request.app[DISTRIBUTOR]
    agent_id = request.match_info["id"]
    body = await _body(request)
    skills = body.get("skills") or {}
    try:
        if isinstance(skills, str):
            skills = parse_skills(skills)
        if not isinstance(skills, dict):
            raise AgentError("skills must be an object of skill: level")
        agent = await dist.agents.upsert(agent_id, str(body.get("name") or agent_id),
                                         str(body.get("team") or "default"), skills)
    except (AgentError, SkillError) as exc:
        return _error(400, str(exc))
    await dist.router.prepare([agent.skills])
    if agent.state == AgentState.READY:
        dist.offer_agent(agent_id)        # new skills may fit a waiting call
    return web.json_response(_agent_json(agent))


async def delete_agent(request: web.Request) -> web.Response:
    dist = request.app[DISTRIBUTOR]
    agent_id = request.match_info["id"]
    _agent_or_404(dist, agent_id)
    try:
        await dist.agents.remove(agent_id)
    except AgentError as exc:
        return _error(409, str(exc))
    return web.json_response({"deleted": agent_id})


async def import_agents(request: web.Request) -> web.Response:
    dist = request.app[DISTRIBUTOR]
    text = await request.text()
    kind = "csv" if "csv" in (request.content_type or "") or request.query.get("format") == "csv" else "yaml"
    try:
        rows = parse_agents_file(text, kind)
        for agent_id, name, team, skills in rows:
            await dist.agents.upsert(agent_id, name, team, skills)
    except (ValueError, AgentError) as exc:
        return _error(400, str(exc))
    await dist.router.prepare(skills for _, _, _, skills in rows)
    return web.json_response({"imported": len(rows)})


async def _state_change(request: web.Request, action: str) -> web.Response:
    dist = request.app[DISTRIBUTOR]
    agent_id = request.match_info["id"]
    agent = _agent_or_404(dist, agent_id)
    body = await _body(request)
    try:
        if action in ("login", "ready"):
            reason = str(body.get("reason") or "")
            if action == "login" and agent.state != AgentState.LOGGED_OUT:
                raise AgentError(f"agent {agent_id} is already logged in ({agent.state.value})")
            if reason:
                if reason not in NOT_READY_REASONS:
                    raise AgentError(f"reason must be one of {', '.join(NOT_READY_REASONS)}")
                await dist.agents.transition(agent_id, AgentState.NOT_READY, reason=reason)
            else:
                await dist.free_agent(agent_id)
        elif action == "logout":
            await dist.agents.transition(agent_id, AgentState.LOGGED_OUT)
        elif action == "not-ready":
            reason = str(body.get("reason") or "")
            if reason not in NOT_READY_REASONS:
                raise AgentError(f"reason must be one of {', '.join(NOT_READY_REASONS)}")
            await dist.agents.transition(agent_id, AgentState.NOT_READY, reason=reason)
        elif action == "extend":
            seconds = body.get("seconds", 30)
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= 3600:
                raise AgentError("seconds must be a number, 0..3600")
            until = await dist.extend_wrapup(agent_id, float(seconds))
            return web.json_response({**_agent_json(agent), "wrapup_until": until})
    except AgentError as exc:
        return _error(409, str(exc))
    except (RedisError, OSError) as exc:
        return _error(503, f"redis: {exc}")
    return web.json_response(_agent_json(dist.agents.get(agent_id)))


async def decisions(request: web.Request) -> web.Response:
    dist = request.app[DISTRIBUTOR]
    try:
        limit = max(1, min(500, int(request.query.get("limit", "50"))))
    except ValueError:
        return _error(400, "limit must be an integer")
    try:
        rows = [json.loads(r) for r in await dist.redis.lrange(Keys.decisions, 0, limit - 1)]
    except (RedisError, OSError):
        rows = list(reversed(dist.decisions))[:limit]     # this process's own, when Redis is away
    return web.json_response(rows)


def _action(action: str):
    async def handler(request: web.Request) -> web.Response:
        return await _state_change(request, action)
    return handler


def make_acd_app(distributor: Distributor) -> web.Application:
    app = web.Application()
    app[DISTRIBUTOR] = distributor
    app.router.add_get("/agents", list_agents)
    app.router.add_post("/agents/import", import_agents)
    app.router.add_get("/agents/{id}", get_agent)
    app.router.add_put("/agents/{id}", put_agent)
    app.router.add_delete("/agents/{id}", delete_agent)
    for action in ("login", "logout", "ready", "not-ready"):
        app.router.add_post(f"/agents/{{id}}/{action}", _action(action))
    app.router.add_post("/agents/{id}/wrapup/extend", _action("extend"))
    app.router.add_get("/decisions", decisions)
    return app


async def start_acd_http(distributor: Distributor, host: str, port: int) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(make_acd_app(distributor), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1] if port == 0 else port
    log.info("ACD API on http://%s:%s", host, bound)
    return runner, bound
