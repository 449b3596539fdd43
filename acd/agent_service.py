"""The agent service: every change of an agent goes through here, whoever asks for it.

- **Verbs** (the HTTP API, the phone's feature codes, the desktop): log in, log out, ready, not
  ready with a reason, extend wrap-up, add or change, import, remove. A change the state machine
  refuses raises :class:`AgentError`.
- **The ACD's own steps** (a call answered, ended, not answered, recovery's repairs): the same
  state machine; a refusal is logged, not raised (the event that asked came too late).

On every path the change is checked by the state machine of ``acd/agents.py`` (compare-and-set in
Redis). With Redis down it is kept in memory and written back when Redis answers again
(acd/writeback.py); the result says so (``stored``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterable

from redis.exceptions import RedisError

from hotline.model import NOT_READY_REASONS, AgentState

from .agents import TRANSITIONS, Agent, AgentDirectory, AgentError
from .router import AgentChanged, Router
from .routing import Routing
from .wrapups import Wrapups
from .writeback import WriteBack

__all__ = ["AgentChange", "AgentService"]

log = logging.getLogger(__name__)


@dataclass
class AgentChange:
    agent: Agent
    stored: bool = True             # False: kept in memory until Redis answers again


class AgentService:
    def __init__(self, directory: AgentDirectory, router: Router, routing: Routing, writeback: WriteBack,
                 wrapups: Wrapups, *, clock: Callable[[], float]) -> None:
        self.directory = directory
        self.router = router
        self.routing = routing
        self.writeback = writeback
        self.wrapups = wrapups
        self.clock = clock

    # ---- verbs ---------------------------------------------------------------------------
    async def login(self, agent_id: str, reason: str = "") -> AgentChange:
        """Log in ready (offered the best waiting call at once), or not ready for ``reason``."""
        agent = self.directory.get(agent_id)
        if agent.state != AgentState.LOGGED_OUT:
            raise AgentError(f"agent {agent_id} is already logged in ({agent.state.value})")
        if reason:
            return await self.not_ready(agent_id, reason)
        return await self.ready(agent_id)

    async def ready(self, agent_id: str) -> AgentChange:
        agent = self.directory.get(agent_id)
        if AgentState.READY not in TRANSITIONS[agent.state] and agent.state != AgentState.READY:
            raise AgentError(f"agent {agent_id}: {agent.state.value} -> ready is not allowed")
        stored = await self.free(agent_id)
        return AgentChange(self.directory.get(agent_id), stored)

    async def not_ready(self, agent_id: str, reason: str) -> AgentChange:
        if reason not in NOT_READY_REASONS:
            raise AgentError(f"reason must be one of {', '.join(NOT_READY_REASONS)}")
        return await self._change(agent_id, AgentState.NOT_READY, reason=reason)

    async def logout(self, agent_id: str) -> AgentChange:
        return await self._change(agent_id, AgentState.LOGGED_OUT)

    async def extend_wrapup(self, agent_id: str, seconds: float) -> float:
        """Longer wrap-up (the agent finishes the ticket); returns its new end."""
        return await self.wrapups.extend(agent_id, seconds)

    async def save(self, agent_id: str, name: str, team: str, skills: dict[str, int]) -> Agent:
        """Add an agent or change one's name, team and skills; the routing indexes follow at once."""
        agent = await self.directory.upsert(agent_id, name, team, skills)
        await self.router.prepare([agent.skills])
        if agent.state == AgentState.READY:
            self.routing.offer_agent(agent_id)        # new skills may fit a waiting call
        return agent

    async def import_agents(self, rows: Iterable[tuple[str, str, str, dict[str, int]]]) -> int:
        rows = list(rows)
        for agent_id, name, team, skills in rows:
            await self.directory.upsert(agent_id, name, team, skills)
        await self.router.prepare(skills for _, _, _, skills in rows)
        return len(rows)

    async def remove(self, agent_id: str) -> None:
        await self.directory.remove(agent_id)

    async def _change(self, agent_id: str, state: AgentState, *, reason: str = "", call: str = "") -> AgentChange:
        try:
            agent = await self.directory.transition(agent_id, state, reason=reason, call=call)
        except (RedisError, OSError) as exc:
            log.warning("agent %s -> %s kept in memory until Redis is back: %s", agent_id, state.value, exc)
            self.writeback.failed()
            return AgentChange(self.directory.get(agent_id), stored=False)
        finally:
            if state == AgentState.READY:
                self.routing.offer_agent(agent_id)
        return AgentChange(agent)

    # ---- the ACD's own steps -------------------------------------------------------------
    async def change(self, agent_id: str, state: AgentState, *, reason: str = "", call: str = "") -> bool:
        """As the calls ask (answered: on call; not answered: not ready; ...). A change the state
        machine refuses is logged; False when it is kept in memory until Redis answers."""
        try:
            return (await self._change(agent_id, state, reason=reason, call=call)).stored
        except AgentError as exc:
            log.warning("%s", exc)
            return True

    async def free(self, agent_id: str, _again: bool = True) -> bool:
        """The agent becomes ready and is offered the best waiting call, in one script (a
        returning caller waiting for this agent is taken first). False: kept in memory."""
        now = self.clock()
        try:
            step = self.directory.ready_step(agent_id, now)
        except AgentError as exc:
            log.warning("%s", exc)
            return True
        try:
            decision = await self.router.offer(agent_id, self.directory.get(agent_id).skills, now,
                                               becoming_ready=step)
        except AgentChanged as exc:
            # Another node (or request) changed the agent since our copy: check again with Redis's.
            log.info("%s; ready checked again", exc)
            if _again and await self.directory.reload(agent_id) is not None:
                return await self.free(agent_id, _again=False)
            return True
        except (RedisError, OSError):
            return await self.change(agent_id, AgentState.READY)      # kept in memory, saved later
        self.directory.became_ready(agent_id, now)
        if decision is not None:
            await self.routing.decided(decision)
        return True

    async def release(self, agent_id: str, call: str) -> None:
        """The agent reserved for this call is free again (the call ended or moved on, or ringing
        the agent failed)."""
        agent = self.directory.agents.get(agent_id)
        if agent is not None and agent.state == AgentState.RESERVED and agent.call == call:
            await self.change(agent_id, AgentState.READY)

    async def start_wrapup(self, agent_id: str) -> None:
        """The agent's leg of the call ended: wrap-up, then ready when it runs out."""
        await self.change(agent_id, AgentState.WRAPUP)
        if await self.wrapups.run(self.directory.get(agent_id)):
            await self.free(agent_id)

    def wrapup_for(self, agent_id: str) -> float:
        return self.wrapups.seconds_for(agent_id)
