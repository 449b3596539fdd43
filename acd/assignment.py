"""A routing decision carried out: the script reserved an agent for a call; remember it, explain it,
and ring the agent (``Redirect`` of the caller, or a call back to a caller on virtual hold). When
another node follows the call, the script told that node, and it rings the agent.
"""
from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import RedisError

from hotline.live import CallState
from hotline.tasks import Background

from .agent_service import AgentService
from .agents import Agent, AgentDirectory
from .callbacks import CallBacks
from .callbook import CallBook
from .callstore import CallStore
from .connector import ActionFailed, Connector
from .router import Decision

__all__ = ["Assignment", "DECISIONS_KEPT"]

log = logging.getLogger(__name__)

DECISIONS_KEPT = 200            # this node's latest explanations (GET /decisions when Redis is away)


class Assignment:
    def __init__(self, directory: AgentDirectory, agents: AgentService, book: CallBook, store: CallStore,
                 connector: Connector, callbacks: CallBacks, background: Background, *, node: str) -> None:
        self.directory = directory
        self.agents = agents
        self.book = book
        self.store = store
        self.connector = connector
        self.callbacks = callbacks
        self.background = background
        self.node = node
        self.decisions: list[dict[str, Any]] = []      # recent routing explanations
        self.handed_out = 0                             # our decisions for calls another node follows

    async def assigned(self, decision: Decision, decided_here: bool = True) -> None:
        agent = self.directory.agents.get(decision.agent)
        if agent is None:
            # Added by another process since we loaded: read it rather than lose the call.
            agent = await self.directory.reload(decision.agent) or self.directory.get(decision.agent)
        follower = decision.owner or self.node
        self.directory.reserved(agent.id, decision.call, decision.at, follower)
        explanation = decision.explain()
        if follower != self.node:
            self.handed_out += 1
            log.info("route call %s -> agent %s: %s; node %s rings it", decision.call, agent.id, decision.rule,
                     follower)
            self._explained(explanation)
            await self._history(agent, explanation)
            return
        waiting = self.book.waiting.pop(decision.call, None)
        live = self.book.get(decision.call)
        if live is not None:
            live.state, live.agent = CallState.RINGING, agent.id
        channel = waiting.channel if waiting else (live.channel if live else await self.store.channel(decision.call))
        if waiting is not None:
            explanation.update(queue=waiting.queue, priority=waiting.priority, skills=waiting.skills,
                               waited_s=round(decision.at - waiting.queued_at, 3))
        self._explained(explanation)
        log.info("route call %s -> agent %s: %s; candidates %s", decision.call, agent.id, decision.rule,
                 decision.candidates)
        self.background.spawn(self._ring(decision.call, channel or "", agent.id))
        if decided_here:                # (else the deciding node keeps the history and the explanation)
            await self._history(agent, explanation)

    def _explained(self, explanation: dict[str, Any]) -> None:
        self.decisions = (self.decisions + [explanation])[-DECISIONS_KEPT:]

    async def _history(self, agent: Agent, explanation: dict[str, Any]) -> None:
        try:
            await self.directory.record_claimed(agent, explanation)
        except (RedisError, OSError) as exc:
            log.warning("agent %s: reservation history not saved (%s)", agent.id, exc)

    async def _ring(self, uniqueid: str, channel: str, agent_id: str) -> None:
        live = self.book.get(uniqueid)
        if live is not None and live.callback and not live.leg:
            await self.callbacks.place(live, agent_id)
            return
        try:
            await self.connector.ring_agent(channel, agent_id)
        except ActionFailed as exc:
            # The caller hung up meanwhile (or Asterisk is gone): free the agent again.
            log.warning("redirect of %s to %s failed: %s", channel, agent_id, exc)
            await self.agents.release(agent_id, uniqueid)
