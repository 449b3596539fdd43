"""Wrap-up timing: how long an agent's wrap-up lasts (``wrapup_s``, or the team's in
``acd/queues.yaml``), the timer of the node that drives the agent, and extensions asked of any
node (the end is kept in the agent's hash, ``wrapup_until``, and the timing node is told).
"""
from __future__ import annotations

import asyncio
import json
from typing import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from hotline.keys import Keys
from hotline.model import AgentState

from .agents import Agent, AgentDirectory, AgentError
from .ownership import Ownership
from .queues import QueueBook

__all__ = ["Wrapups"]


class Wrapups:
    def __init__(self, redis: Redis, directory: AgentDirectory, ownership: Ownership, *,
                 queues: Callable[[], QueueBook], wrapup_s: float = 5.0, clock: Callable[[], float]) -> None:
        self.redis = redis
        self.directory = directory
        self.ownership = ownership
        self.queues = queues
        self.wrapup_s = wrapup_s
        self.clock = clock
        self.until: dict[str, float] = {}           # agent -> when the wrap-up this node times ends
        self._woken: dict[str, asyncio.Event] = {}  # agent -> set when its wrap-up ended early

    def seconds_for(self, agent_id: str) -> float:
        agent = self.directory.agents.get(agent_id)
        team = agent.team if agent is not None else ""
        return self.queues().wrapup_s.get(team, self.wrapup_s)

    def timing(self, agent_id: str) -> bool:
        return agent_id in self.until

    async def run(self, agent: Agent) -> bool:
        """Time the wrap-up the agent has just begun; True when it ran out with nothing else
        happening to the agent meanwhile (log-out, not ready, ...): the agent is then free."""
        agent_id, since = agent.id, agent.state_since
        self.until[agent_id] = since + self.seconds_for(agent_id)
        try:
            await self.redis.hset(Keys.agent(agent_id), "wrapup_until", repr(self.until[agent_id]))
        except (RedisError, OSError):
            pass                            # only extensions asked of other nodes need it
        woken = self._woken[agent_id] = asyncio.Event()
        try:
            while True:
                left = self.until[agent_id] - self.clock()
                if left > 0:
                    try:
                        await asyncio.wait_for(woken.wait(), left)
                    except asyncio.TimeoutError:
                        pass
                current = self.directory.agents.get(agent_id)
                if current is None or current.state != AgentState.WRAPUP or current.state_since != since:
                    return False
                if self.until[agent_id] <= self.clock():
                    return True
        finally:
            if self._woken.get(agent_id) is woken:
                del self._woken[agent_id]
            current = self.directory.agents.get(agent_id)
            if agent_id in self.until and current is not None and current.state_since == since:
                del self.until[agent_id]

    def wake(self, agent_id: str) -> None:
        """The wrap-up this node times ended early (the agent ended it): its timer stops now."""
        woken = self._woken.get(agent_id)
        if woken is not None:
            woken.set()

    async def extend(self, agent_id: str, seconds: float) -> float:
        """The agent needs longer to finish the ticket: push the end of wrap-up back (also when
        another node times this wrap-up: the end is in Redis and that node is told)."""
        agent = self.directory.get(agent_id)
        local = agent_id in self.until
        if agent.state != AgentState.WRAPUP or not (local or self.ownership.alive(agent.node)):
            raise AgentError(f"agent {agent_id} is {agent.state.value}, not in wrap-up")
        if not await self.redis.hexists(Keys.agent(agent_id), "wrapup_until"):
            raise AgentError(f"agent {agent_id}: wrap-up end not known yet; try again")
        until = float(await self.redis.hincrbyfloat(Keys.agent(agent_id), "wrapup_until", seconds))
        if local:
            self.until[agent_id] = max(self.until[agent_id], until)
        else:
            await self.redis.publish(Keys.acd_node(agent.node), json.dumps(
                {"type": "wrapup", "agent": agent_id, "until": until}))
        return until

    def extended(self, agent_id: str, until: float) -> None:
        """Another node extended the wrap-up this node times."""
        if agent_id in self.until:
            self.until[agent_id] = max(self.until[agent_id], until)
