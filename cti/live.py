"""What the CTI reads from Redis: agents, live calls, the waiting queue, IVR paths.

The layouts are the ACD's and the IVR's (``acd/agents.py`` ``Agent.to_redis``, the call hash of
:class:`hotline.live.LiveCall`, ``ivr/app.py`` ``IvrPath.to_dict``). The CTI only reads them,
and reads them defensively: a field that is missing or garbled gives a neutral value, never an
error page or a dead socket.
"""
from __future__ import annotations

import json
import time
from typing import Any, Iterable, Optional

from redis.asyncio import Redis

from hotline.keys import Keys
from hotline.live import LIVE_PHASES, CallState, LiveCall
from hotline.model import AgentState, SkillError, parse_skills

__all__ = [
    "CALL_STATES", "agent_order", "agent_view", "call_view", "ivr_view", "live_snapshot", "read_agent", "read_agents",
    "read_call", "read_ivr_path",
]

CALL_STATES = tuple(state.value for state in LIVE_PHASES)    # what the live view counts calls in
AGENT_STATES = tuple(state.value for state in AgentState)
MAX_IVR_STEPS = 50


def _float(value: Any) -> Optional[float]:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if result == result and abs(result) != float("inf") else None


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _skills(text: Any) -> dict[str, int]:
    """Agent skills (a JSON object) or call skills (``mandarin:1+enterprise:3``)."""
    if not text:
        return {}
    if isinstance(text, str) and text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): _int(v, 1) for k, v in data.items()}
    try:
        return parse_skills(str(text))
    except SkillError:
        return {}


def _state(value: Any, known: Iterable[str]) -> str:
    return value if value in known else "unknown"


def agent_view(agent_id: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "id": agent_id,
        "name": data.get("name") or agent_id,
        "team": data.get("team") or "default",
        "skills": _skills(data.get("skills")),
        "state": _state(data.get("state") or AgentState.LOGGED_OUT.value, AGENT_STATES),
        "state_since": _float(data.get("state_since")),
        "reason": data.get("reason") or "",
        "call": data.get("call") or "",
        "pending_reason": data.get("pending_reason") or "",
    }


def call_view(uniqueid: str, data: dict[str, str], now: Optional[float] = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    call = LiveCall.from_redis(data, uniqueid=uniqueid, lenient=True)
    wait_end = call.answered_at if call.answered_at is not None else now
    return {
        "uniqueid": uniqueid,
        "caller": call.caller,
        "line": call.line,
        "queue": call.queue,
        "priority": call.priority,
        "skills": _skills(call.skills),
        "state": call.state.value,
        "agent": call.agent,
        "arrived_at": call.arrived_at or None,          # (0: missing or garbled)
        "queued_at": call.queued_at,
        "answered_at": call.answered_at,
        "wait_s": round(max(0.0, wait_end - call.queued_at), 1) if call.queued_at is not None else None,
        "ring_attempts": call.ring_attempts,
    }


def ivr_view(raw: Optional[str]) -> Optional[dict[str, Any]]:
    """The caller's path through the IVR, reduced to what an agent reads on a screen pop."""
    if not raw:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    steps = []
    for step in doc.get("steps") or []:
        if not isinstance(step, dict):
            continue
        steps.append({key: step.get(key) for key in ("node", "prompt", "digits", "result")
                      if isinstance(step.get(key), (str, int, float)) or step.get(key) is None})
        if len(steps) >= MAX_IVR_STEPS:
            break
    scalars = {key: doc.get(key) for key in ("result", "queue", "skills", "priority", "lang", "hangup_node")
               if isinstance(doc.get(key), (str, int, float))}
    return {**scalars, "steps": steps}


async def read_agent(redis: Redis, agent_id: str) -> Optional[dict[str, Any]]:
    data = await redis.hgetall(Keys.agent(agent_id))
    return agent_view(agent_id, data) if data else None


def agent_order(agent_id: str) -> tuple[int, str]:
    return (int(agent_id), agent_id) if agent_id.isdigit() and len(agent_id) < 20 else (1 << 64, agent_id)


async def read_agents(redis: Redis) -> list[dict[str, Any]]:
    ids = sorted(await redis.smembers(Keys.agents), key=agent_order)
    if not ids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for agent_id in ids:
            pipe.hgetall(Keys.agent(agent_id))
        hashes = await pipe.execute()
    return [agent_view(agent_id, data) for agent_id, data in zip(ids, hashes) if data]


async def read_call(redis: Redis, uniqueid: str) -> Optional[dict[str, str]]:
    data = await redis.hgetall(Keys.call(uniqueid))
    return data or None


async def read_ivr_path(redis: Redis, uniqueid: str) -> Optional[dict[str, Any]]:
    return ivr_view(await redis.get(Keys.ivr_path(uniqueid)))


_CALL_FIELDS = ("state", "queue", "queued_at")


async def live_snapshot(redis: Redis, now: Optional[float] = None) -> dict[str, Any]:
    """The live picture: waiting calls per queue, longest wait, calls per state, agents per state.

    Waiting calls are the members of the waiting zset (what the router will serve); their
    queue and queue time come from the call hashes. Three round trips whatever the load.
    """
    now = time.time() if now is None else now
    async with redis.pipeline(transaction=False) as pipe:
        pipe.smembers(Keys.calls)
        pipe.zrange(Keys.waiting, 0, -1)
        pipe.smembers(Keys.agents)
        call_ids, waiting_ids, agent_ids = await pipe.execute()
    uids = sorted(set(call_ids) | set(waiting_ids))
    agent_ids = sorted(agent_ids)
    async with redis.pipeline(transaction=False) as pipe:
        for uid in uids:
            pipe.hmget(Keys.call(uid), *_CALL_FIELDS)
        for agent_id in agent_ids:
            pipe.hget(Keys.agent(agent_id), "state")
        results = await pipe.execute()
    calls = {uid: dict(zip(_CALL_FIELDS, values)) for uid, values in zip(uids, results)}
    agent_states = results[len(uids):]

    queues: dict[str, dict[str, Any]] = {}

    def queue_row(name: str) -> dict[str, Any]:
        return queues.setdefault(name, {"queue": name, "waiting": 0, "longest_wait_s": 0.0,
                                        "ringing": 0, "talking": 0})

    waiting_set = set(waiting_ids)
    by_state = {state: 0 for state in CALL_STATES}
    for uid in call_ids:
        state = CallState.read(calls[uid]["state"]).phase.value
        if uid in waiting_set:
            state = CallState.WAITING.value          # the zset is what the router serves
        if state in by_state:
            by_state[state] += 1
        if state in ("ringing", "talking") and calls[uid]["queue"]:
            queue_row(calls[uid]["queue"])[state] += 1

    longest = 0.0
    for uid in waiting_ids:
        fields = calls[uid]
        row = queue_row(fields["queue"] or "unknown")
        row["waiting"] += 1
        queued_at = _float(fields["queued_at"])
        if queued_at is not None:
            wait = max(0.0, now - queued_at)
            row["longest_wait_s"] = max(row["longest_wait_s"], round(wait, 1))
            longest = max(longest, wait)
    by_state["waiting"] = len(waiting_ids)

    agents = {state: 0 for state in AGENT_STATES}
    for state in agent_states:
        if state is None:
            continue
        key = _state(state, AGENT_STATES)
        agents[key] = agents.get(key, 0) + 1
    return {
        "at": now,
        "waiting": len(waiting_ids),
        "longest_wait_s": round(longest, 1),
        "queues": sorted(queues.values(), key=lambda row: row["queue"]),
        "calls": by_state,
        "agents": agents,
        "agents_logged_in": sum(n for state, n in agents.items() if state != AgentState.LOGGED_OUT.value),
    }
