"""Free agents offered the waiting calls, and every routing decision handed on to be rung.

The decisions themselves are the router's (acd/router.py: one atomic script each). This part
decides *when* to ask: an agent just freed is offered the best call it can serve (agents in the
order they were freed), and a routing pass offers every ready agent, longest idle first, once per
loop turn however many ask for it (a call ended, a skill expansion is due, Redis is back). Each
decision, from here or from a call's arrival (acd/queueing.py), an agent's ready step
(acd/agent_service.py) or another node, goes to ``on_decision`` (acd/assignment.py).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from redis.exceptions import RedisError

from hotline.model import AgentState
from hotline.tasks import Background

from .agents import AgentDirectory
from .router import Decision, Router
from .writeback import WriteBack

__all__ = ["Routing"]

log = logging.getLogger(__name__)


async def _unwired(decision: Decision) -> None:
    raise RuntimeError(f"routing decision {decision} made before the ACD was wired")


class Routing:
    def __init__(self, directory: AgentDirectory, router: Router, writeback: WriteBack,
                 background: Background) -> None:
        self.directory = directory
        self.router = router
        self.writeback = writeback
        self.background = background
        # Wired by acd/service.py: the step that rings the agent a decision reserved.
        self.on_decision: Callable[[Decision], Awaitable[None]] = _unwired
        self._to_offer: list[str] = []                  # agents just freed, offered in order
        self._offering = False
        self._pass_scheduled = False

    async def decided(self, decision: Decision) -> None:
        await self.on_decision(decision)

    def offer_agent(self, agent_id: str) -> None:
        """An agent became free: offer it the best waiting call (agents offered in the order freed)."""
        self._to_offer.append(agent_id)
        if not self._offering:
            self._offering = True
            self.background.spawn(self._offer_pending())

    async def _offer_pending(self) -> None:
        try:
            while self._to_offer:
                await self._offer(self._to_offer.pop(0))
        finally:
            self._offering = False

    async def _offer(self, agent_id: str) -> None:
        agent = self.directory.agents.get(agent_id)
        if agent is None or agent.state != AgentState.READY:
            return
        try:
            decision = await self.router.offer(agent_id, agent.skills)
        except (RedisError, OSError) as exc:
            log.warning("agent %s: routing failed (%s); again when Redis answers", agent_id, exc)
            self.writeback.failed()
            return
        if decision is not None:
            await self.decided(decision)

    def schedule(self) -> None:
        """A routing pass: every ready agent (longest idle first) offered once, on the next loop turn."""
        if not self._pass_scheduled:
            self._pass_scheduled = True
            self.background.spawn(self._pass())

    async def _pass(self) -> None:
        await asyncio.sleep(0)
        self._pass_scheduled = False
        ready = self.directory.ready_agents()
        try:
            if not ready or not await self.router.waiting_count():
                return
        except (RedisError, OSError):
            return
        for agent in ready:
            await self._offer(agent.id)
