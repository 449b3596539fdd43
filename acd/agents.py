"""Agents: their skills, and the state machine of their availability, kept in Redis.

Every transition is checked against :data:`TRANSITIONS` and written to the outbox, from
which it reaches PostgreSQL's ``agent_states`` table (occupancy and time-in-state reports).
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any, Optional

from redis.asyncio import Redis

from hotline.keys import Keys
from hotline.model import AgentState, valid_name

from . import scripts

__all__ = ["Agent", "AgentDirectory", "AgentError", "TRANSITIONS"]

log = logging.getLogger(__name__)

S = AgentState
# Which state may follow which. Anything else is refused (and logged), never silently applied.
TRANSITIONS: dict[AgentState, set[AgentState]] = {
    S.LOGGED_OUT: {S.READY, S.NOT_READY},
    S.READY: {S.RESERVED, S.NOT_READY, S.LOGGED_OUT},
    S.RESERVED: {S.ON_CALL, S.READY, S.NOT_READY, S.LOGGED_OUT},
    S.ON_CALL: {S.WRAPUP, S.LOGGED_OUT},
    S.WRAPUP: {S.READY, S.NOT_READY, S.LOGGED_OUT},
    S.NOT_READY: {S.READY, S.LOGGED_OUT, S.NOT_READY},
}


class AgentError(ValueError):
    pass


@dataclass
class Agent:
    id: str
    name: str
    team: str = "default"
    skills: dict[str, int] = field(default_factory=dict)
    state: AgentState = AgentState.LOGGED_OUT
    state_since: float = 0.0
    reason: str = ""
    call: str = ""
    node: str = ""          # the ACD node following its call or wrap-up (acd/cluster.py)
    pending_reason: str = ""  # not ready after this call: the reason applied when wrap-up ends

    def can_serve(self, required: dict[str, int]) -> bool:
        return all(self.skills.get(skill, 0) >= level for skill, level in required.items())

    def to_redis(self) -> dict[str, str]:
        return {"name": self.name, "team": self.team, "skills": json.dumps(self.skills),
                "state": self.state.value, "state_since": repr(self.state_since),
                "reason": self.reason, "call": self.call, "node": self.node}

    @classmethod
    def from_redis(cls, agent_id: str, data: dict[str, str]) -> "Agent":
        return cls(agent_id, data.get("name", agent_id), data.get("team", "default"),
                   json.loads(data.get("skills") or "{}"), AgentState(data.get("state", "logged_out")),
                   float(data.get("state_since") or 0), data.get("reason", ""), data.get("call", ""),
                   data.get("node", ""), data.get("pending_reason", ""))

    @property
    def expected(self) -> str:
        """What Redis must still hold for a change made from this copy to apply ("state|since")."""
        return f"{self.state.value}|{self.state_since!r}"


def _move(agent: Agent, state: AgentState, since: float, reason: str, call: str, node: str) -> None:
    """The one place an agent's copy changes state: after the state machine let it (or Redis's
    scripts, whose changes every copy follows)."""
    agent.state, agent.state_since, agent.reason, agent.call, agent.node = state, since, reason, call, node


def busy_day(now: float) -> str:
    """The local day whose busy seconds the ``least_occupied`` strategy compares."""
    return time.strftime("%Y%m%d", time.localtime(now))


# History rows carry an id that makes writing them to PostgreSQL idempotent. uuid4() reads the
# kernel's random source each time (a system call on every routing decision); a random prefix per
# process (new in a forked child) and a counter are as unique here.
_event_prefix = os.urandom(8).hex()
_event_counter = itertools.count()


def _new_event_ids() -> None:
    global _event_prefix, _event_counter
    _event_prefix, _event_counter = os.urandom(8).hex(), itertools.count()


os.register_at_fork(after_in_child=_new_event_ids)


def event_id() -> str:
    """A unique id for one history row (32 hex digits)."""
    return f"{_event_prefix}{next(_event_counter):016x}"


def outbox_row(kind: str, **fields: Any) -> str:
    return json.dumps({"kind": kind, **fields}, ensure_ascii=False)


# One agent transition, compare-and-set in Redis (acd/lua/transition.lua).
TRANSITION = scripts.load("transition")


class AgentDirectory:
    """Agents as Redis holds them; the ACD keeps an in-memory copy for fast routing."""

    def __init__(self, redis: Redis, *, node: str = "", clock=time.time) -> None:
        self.redis = redis
        self.node = node
        self.clock = clock
        self._transition = redis.register_script(TRANSITION)
        self.agents: dict[str, Agent] = {}
        self.dirty: set[str] = set()            # agents whose state Redis has not got yet
        self._readying: dict[str, tuple] = {}   # agent -> (copy, state, since) its ready_step was made from
        self.unsaved_rows: list[str] = []       # their history rows

    async def load(self) -> None:
        ids = await self.redis.smembers(Keys.agents)
        self.agents = {}
        for agent_id in ids:
            data = await self.redis.hgetall(Keys.agent(agent_id))
            if data:
                self.agents[agent_id] = Agent.from_redis(agent_id, data)

    async def reload(self, agent_id: str) -> Optional[Agent]:
        """Read one agent from Redis (added or changed by another process or the API)."""
        data = await self.redis.hgetall(Keys.agent(agent_id))
        if not data:
            self.agents.pop(agent_id, None)
            return None
        agent = Agent.from_redis(agent_id, data)
        self.agents[agent_id] = agent
        return agent

    async def upsert(self, agent_id: str, name: str, team: str, skills: dict[str, int]) -> Agent:
        if not valid_name(agent_id) or not agent_id.isdigit():
            raise AgentError(f"agent id must be the agent's numeric extension, got {agent_id!r}")
        for skill, level in skills.items():
            if not valid_name(skill) or isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 10:
                raise AgentError(f"agent {agent_id}: skill {skill!r} must be a name with a level 1..10, got {level!r}")
        if not valid_name(team):
            raise AgentError(f"agent {agent_id}: team must be letters, digits, '-' or '_', got {team!r}")
        existing = self.agents.get(agent_id)
        # Memory changes only once Redis has it: a failed write leaves the agent as it was.
        agent = replace(existing, name=name, team=team, skills=dict(skills)) if existing is not None else \
            Agent(agent_id, name, team, dict(skills), state_since=self.clock())
        old_skills = set(existing.skills) if existing is not None else set()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.sadd(Keys.agents, agent_id)
            pipe.hset(Keys.agent(agent_id), mapping=agent.to_redis())
            for skill in old_skills - set(skills):      # the skill indexes follow at once, no restart
                pipe.zrem(Keys.ready_skill(skill), agent_id)
            self._write_state(pipe, agent)
            pipe.rpush(Keys.outbox, outbox_row("agent", id=agent_id, name=name, team=team, skills=skills))
            pipe.publish(Keys.events, json.dumps({"type": "agent_profile", "agent": agent_id, "node": self.node}))
            await pipe.execute()
        if existing is None or self.agents.get(agent_id) is not existing:
            self.agents[agent_id] = agent
            return agent
        existing.name, existing.team, existing.skills = name, team, agent.skills
        return existing

    async def remove(self, agent_id: str) -> None:
        """Delete an agent who is logged out (its history stays in PostgreSQL)."""
        agent = self.get(agent_id)
        if agent.state != AgentState.LOGGED_OUT:
            raise AgentError(f"agent {agent_id} is {agent.state.value}: log the agent out first")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.srem(Keys.agents, agent_id)
            pipe.delete(Keys.agent(agent_id))
            pipe.zrem(Keys.ready, agent_id)
            for skill in agent.skills:
                pipe.zrem(Keys.ready_skill(skill), agent_id)
            pipe.publish(Keys.events, json.dumps({"type": "agent_profile", "agent": agent_id, "node": self.node}))
            await pipe.execute()
        self.agents.pop(agent_id, None)

    def get(self, agent_id: str) -> Agent:
        agent = self.agents.get(agent_id)
        if agent is None:
            raise AgentError(f"unknown agent {agent_id!r}")
        return agent

    @staticmethod
    def _write_state(pipe, agent: Agent) -> None:
        pipe.hset(Keys.agent(agent.id), mapping={
            "state": agent.state.value, "state_since": repr(agent.state_since), "reason": agent.reason,
            "call": agent.call, "node": agent.node})
        if agent.state == AgentState.READY:
            pipe.zadd(Keys.ready, {agent.id: agent.state_since})
            for skill, level in agent.skills.items():
                pipe.zadd(Keys.ready_skill(skill), {agent.id: level})
        else:
            pipe.zrem(Keys.ready, agent.id)
            for skill in agent.skills:
                pipe.zrem(Keys.ready_skill(skill), agent.id)

    async def save_dirty(self) -> bool:
        """Write states that Redis missed during an outage; True when nothing is left."""
        if not self.dirty and not self.unsaved_rows:
            return True
        async with self.redis.pipeline(transaction=True) as pipe:
            for agent_id in self.dirty:
                self._write_state(pipe, self.agents[agent_id])
            if self.unsaved_rows:
                pipe.rpush(Keys.outbox, *self.unsaved_rows)
            await pipe.execute()
        log.info("re-saved %d agent state(s) after a Redis outage", len(self.dirty))
        self.dirty.clear()
        self.unsaved_rows.clear()
        return True

    async def transition(self, agent_id: str, new: AgentState, *, reason: str = "", call: str = "") -> Agent:
        """Move an agent to ``new`` if the state machine allows it; log it to the outbox.

        Checked against this copy and applied only if Redis still holds the same state; if another
        node changed it meanwhile, the copy is refreshed and the change checked again."""
        for _ in range(3):
            agent = self.get(agent_id)
            if new not in TRANSITIONS[agent.state] and new != agent.state:
                raise AgentError(f"agent {agent_id}: {agent.state.value} -> {new.value} is not allowed")
            now = self.clock()
            busy = now - agent.state_since if agent.state in (AgentState.ON_CALL, AgentState.WRAPUP) else 0.0
            row = outbox_row("agent_state", event_id=event_id(), agent_id=agent_id, state=new.value,
                             reason=reason or None, call_uniqueid=call or None, at=now)
            event = json.dumps({"type": "agent", "agent": agent_id, "state": new.value, "reason": reason,
                                "call": call, "at": now, "node": self.node})
            # Memory is the truth for an agent Redis missed during an outage: no check then.
            expected = "" if agent_id in self.dirty else agent.expected
            before = (agent.state, agent.state_since)
            try:
                result = await self._transition(
                    keys=[Keys.agent(agent_id), Keys.ready, Keys.outbox, Keys.busy(busy_day(now))],
                    args=[expected, new.value, repr(now), reason, call, self.node, Keys.ready_skill(""), row,
                          Keys.events, event, repr(busy), agent_id])
            except Exception:
                # Memory is the truth now; write it (and the history row) to Redis when it is back.
                _move(agent, new, now, reason, call, self.node)
                self.unsaved_rows.append(row)
                self.dirty.add(agent_id)
                raise
            if result[0] == 1:
                if self.agents.get(agent_id) is not agent or (agent.state, agent.state_since) != before:
                    # Changed while the reply was on its way: by a decision Redis made after this
                    # write (a routing script reserved the agent just made ready). That one is newer.
                    log.info("agent %s -> %s overtaken by a newer change (%s)", agent_id, new.value,
                             self.get(agent_id).state.value)
                    return self.get(agent_id)
                _move(agent, new, now, reason, call, self.node)
                log.info("agent %s -> %s%s", agent_id, new.value, f" ({reason})" if reason else "")
                return agent
            log.info("agent %s changed elsewhere (now %s): checking %s again", agent_id, result[1], new.value)
            await self.reload(agent_id)
        raise AgentError(f"agent {agent_id}: state kept changing; {new.value} not applied")

    def apply_peer_event(self, event: dict[str, Any]) -> Optional[Agent]:
        """Another ACD node changed this agent (its published transition): update our copy. Changes
        are published by the script that makes them, so they arrive in the order Redis made them
        (no comparison of timestamps, which come from different hosts' clocks)."""
        agent = self.agents.get(str(event.get("agent", "")))
        if agent is None or agent.id in self.dirty:
            return None
        try:
            state, at = AgentState(event.get("state")), float(str(event.get("at")))
        except ValueError:
            return None
        _move(agent, state, at, str(event.get("reason") or ""), str(event.get("call") or ""),
              str(event.get("node") or ""))
        return agent

    def ready_step(self, agent_id: str, now: float) -> tuple[str, str, str, float]:
        """What the router's script checks and writes when it makes the agent ready (the state
        Redis must still hold, history row, event, busy seconds); refused like :meth:`transition`
        if READY may not follow."""
        agent = self.get(agent_id)
        if AgentState.READY not in TRANSITIONS[agent.state] and agent.state != AgentState.READY:
            raise AgentError(f"agent {agent_id}: {agent.state.value} -> ready is not allowed")
        busy = now - agent.state_since if agent.state in (AgentState.ON_CALL, AgentState.WRAPUP) else 0.0
        # (On every decision's path: the history row and the event written out directly.)
        at = repr(now)
        row = (f'{{"kind": "agent_state", "event_id": "{event_id()}", "agent_id": {json.dumps(agent_id)}, '
               f'"state": "ready", "reason": null, "call_uniqueid": null, "at": {at}}}')
        event = (f'{{"type": "agent", "agent": {json.dumps(agent_id)}, "state": "ready", "reason": "", "call": "", '
                 f'"at": {at}, "node": {json.dumps(self.node)}}}')
        self._readying[agent_id] = (agent, agent.state, agent.state_since)
        return ("" if agent_id in self.dirty else agent.expected), row, event, busy

    def became_ready(self, agent_id: str, now: float) -> Agent:
        """The router's script made the agent ready (and may have reserved it at once)."""
        agent = self.get(agent_id)
        made_from = self._readying.pop(agent_id, None)
        if made_from is None or made_from[0] is not agent or made_from[1:] != (agent.state, agent.state_since):
            # Changed while the script's reply was on its way (reserved by a later decision): keep that.
            return agent
        _move(agent, AgentState.READY, now, "", "", self.node)
        log.info("agent %s -> ready", agent_id)
        return agent

    def reserved(self, agent_id: str, call: str, at: float, node: str) -> Agent:
        """A routing script reserved the agent for this call in Redis (here, or on the node that
        decided; ``node`` follows the call and drives the agent from here)."""
        agent = self.get(agent_id)
        _move(agent, AgentState.RESERVED, at, "", call, node)
        return agent

    def driven_by(self, agent_id: str, node: str) -> None:
        """This node now follows the agent's call (recovery adopted it)."""
        self.get(agent_id).node = node

    async def record_claimed(self, agent: Agent, explanation: Optional[dict] = None) -> None:
        """The routing script reserved this agent in Redis (and published it); keep its history
        (and why) complete."""
        async with self.redis.pipeline(transaction=False) as pipe:
            if explanation is not None:
                pipe.lpush(Keys.decisions, json.dumps(explanation, ensure_ascii=False))
                pipe.ltrim(Keys.decisions, 0, 499)
            pipe.rpush(Keys.outbox, outbox_row(
                "agent_state", event_id=event_id(), agent_id=agent.id, state=agent.state.value,
                reason=None, call_uniqueid=agent.call or None, at=agent.state_since))
            await pipe.execute()

    def ready_agents(self) -> list[Agent]:
        """Ready agents, longest idle first."""
        ready = [a for a in self.agents.values() if a.state == AgentState.READY]
        ready.sort(key=lambda a: a.state_since)
        return ready
