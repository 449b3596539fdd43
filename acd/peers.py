"""What an ACD node hears from the other nodes (acd/cluster.py) and does about them: their agent
changes (its copies follow), calls their routing handed to it (it rings the agent), wrap-up
extensions asked of them, and taking over when one of them is gone (recovery).
"""
from __future__ import annotations

import logging
from typing import Any

from redis.asyncio import Redis

from hotline.keys import Keys
from hotline.live import CallState
from hotline.model import AgentState, valid_name
from hotline.tasks import Background

from .agent_service import AgentService
from .agents import AgentDirectory
from .assignment import Assignment
from .callbook import CallBook
from .callstore import CallStore
from .ownership import Ownership
from .recovery import Recovery
from .router import Decision, Router

__all__ = ["Peers"]

log = logging.getLogger(__name__)


class Peers:
    def __init__(self, redis: Redis, directory: AgentDirectory, agents: AgentService, book: CallBook,
                 store: CallStore, router: Router, assignment: Assignment, recovery: Recovery,
                 ownership: Ownership, background: Background) -> None:
        self.redis = redis
        self.directory = directory
        self.agents = agents
        self.book = book
        self.store = store
        self.router = router
        self.assignment = assignment
        self.recovery = recovery
        self.ownership = ownership
        self.background = background
        self.handed_in = 0                              # calls another node's decision handed to us

    def on_agent(self, event: dict[str, Any]) -> None:
        """Another node changed an agent (or its profile): our copy follows."""
        agent_id = str(event.get("agent", ""))
        if event.get("type") == "agent_profile" or agent_id not in self.directory.agents:
            self.background.spawn(self._reload_agent(agent_id))     # new to us: Redis has it whole
            return
        self.directory.apply_peer_event(event)

    async def _reload_agent(self, agent_id: str) -> None:
        if valid_name(agent_id) and agent_id not in self.directory.dirty:
            agent = await self.directory.reload(agent_id)
            if agent is not None:
                await self.router.prepare([agent.skills])

    def on_gap(self) -> None:
        """Messages from the other nodes may have been missed: read the agents again."""
        self.background.spawn(self._reload_agents())

    async def _reload_agents(self) -> None:
        for agent_id in await self.redis.smembers(Keys.agents):
            if agent_id not in self.directory.dirty:
                await self.directory.reload(agent_id)

    def on_peers_lost(self, nodes: list[str]) -> None:
        """Nodes stopped renewing their lease: adopt their calls and agents (recovery)."""
        async def adopt() -> None:
            await self._reload_agents()         # what the lost nodes last wrote
            await self.recovery.recover()
        self.background.spawn(adopt())

    def on_lease_lost(self) -> None:
        """Our lease ran out (Redis was out of reach): calls another node adopted meanwhile are
        theirs now; let them go rather than follow them twice."""
        async def let_go() -> None:
            calls = list(self.book.followed_calls().values())
            if not calls:
                return
            owners = await self.store.owners([call.uniqueid for call in calls])
            for call, owner in zip(calls, owners):
                if owner and owner != self.ownership.node:
                    self.book.drop(call)
                    log.warning("call %s: adopted by node %s while our lease had run out: let go",
                                call.uniqueid, owner)
            await self._reload_agents()
        self.background.spawn(let_go())

    def on_handoff(self, event: dict[str, Any]) -> None:
        """Another node's routing script reserved an agent for a call this node follows: ring it
        (or another node extended the wrap-up this node times)."""
        if event.get("type") == "wrapup":
            try:
                until = float(event.get("until"))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                return
            self.agents.wrapups.extended(str(event.get("agent", "")), until)
            return
        uid, agent_id = str(event.get("call", "")), str(event.get("agent", ""))
        try:
            at = float(event.get("at"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return
        if agent_id not in self.directory.agents:
            self.background.spawn(self._reload_agent(agent_id))
            return
        self.directory.reserved(agent_id, uid, at, self.ownership.node)
        call = self.book.get(uid)
        if call is None or call.state != CallState.WAITING:
            # It ended (or moved on) meanwhile: the agent is free again.
            log.info("call %s handed over for agent %s is gone: agent ready again", uid, agent_id)
            self.background.spawn(self.agents.change(agent_id, AgentState.READY))
            return
        self.handed_in += 1
        decision = Decision(uid, agent_id, "agent_free", rule=f"agent free (decided by node {event.get('by')})",
                            bucket=str(event.get("bucket", "")), agent_ready_since=str(event.get("since", "")),
                            at=at, owner=self.ownership.node)
        self.background.spawn(self.assignment.assigned(decision, decided_here=False))
