"""What an ACD node does about the other nodes (acd/cluster.py): which calls and agents it acts
on, what it hears from them (agent changes, calls handed over, wrap-up extensions), what it
witnesses of the calls they follow, and taking over when one of them is gone.

Mixed into :class:`acd.distributor.Distributor`, whose state (``calls``, ``waiting``, ``agents``,
``cluster``, ``node``) it uses.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional

from hotline.keys import Keys
from hotline.model import AgentState, valid_name

from .router import Decision

__all__ = ["PeerHandling", "WITNESS_KEPT_S", "Witnessed"]

log = logging.getLogger(__name__)


@dataclass
class Witnessed:
    """What this node saw of a call another node follows (every node gets every AMI event): if that
    node dies, whoever adopts the call completes its record from this, not from guesses."""
    ring_attempts: int = 0
    answered_at: Optional[float] = None
    talk_ended_at: Optional[float] = None
    caller_hung_up: bool = False
    ended_at: Optional[float] = None
    cause: Optional[int] = None


WITNESS_KEPT_S = 120.0          # ended calls seen for another node, kept this long


class PeerHandling:
    """The Distributor's side of working beside other ACD nodes."""

    def owns(self, linkedid: str) -> bool:
        """Whether this node should follow (or act on) what happens under this Linkedid."""
        return self.cluster is None or self.cluster.owns(linkedid)

    def alive(self, node: str) -> bool:
        """A node that still follows its calls ("": a state written before nodes had names)."""
        return node == self.node or (self.cluster is not None and self.cluster.alive(node))

    def ours(self, node: str) -> bool:
        """Ours to act on: written by this node, by nobody, or by a node that is gone."""
        return node in ("", self.node) or not self.alive(node)

    def _witness(self, msg) -> Optional[Witnessed]:
        """The caller's channel of a call another node follows (none when this node is alone)."""
        uid = msg.get("Uniqueid", "")
        seen = self.witnessed.get(uid)
        if seen is not None or self.cluster is None or len(self.cluster.live) < 2:
            return seen
        if not uid or msg.get("Linkedid", uid) != uid:
            return None                     # an agent's leg or a local channel: not the caller
        if msg.get("Event") != "Newchannel" or msg.get("Context") not in self.inbound_contexts:
            return None
        seen = self.witnessed[uid] = Witnessed()
        return seen

    def _forget_witnessed(self, now: float) -> None:
        expiry = self._witness_expiry
        while expiry and expiry[0][0] < now:
            self.witnessed.pop(expiry.pop(0)[1], None)

    def follows(self, agent) -> bool:
        """Whether this node drives the agent's call-bound states (on call, wrap-up, repairs): it
        follows the agent's call, or the node that did is gone and the agent hashes to this one."""
        if agent.node in ("", self.node):
            return True
        return not self.alive(agent.node) and self.owns(f"agent:{agent.id}")

    def on_peer_agent(self, event: dict[str, Any]) -> None:
        """Another node changed an agent (or its profile): our copy follows."""
        agent_id = str(event.get("agent", ""))
        if event.get("type") == "agent_profile" or agent_id not in self.agents.agents:
            self._spawn(self._reload_agent(agent_id))     # new to us: Redis has it whole
            return
        self.agents.apply_peer_event(event)

    async def _reload_agent(self, agent_id: str) -> None:
        if valid_name(agent_id) and agent_id not in self.agents.dirty:
            agent = await self.agents.reload(agent_id)
            if agent is not None:
                await self.router.prepare([agent.skills])

    def on_peer_gap(self) -> None:
        """Messages from the other nodes may have been missed: read the agents again."""
        self._spawn(self._reload_agents())

    async def _reload_agents(self) -> None:
        for agent_id in await self.redis.smembers(Keys.agents):
            if agent_id not in self.agents.dirty:
                await self.agents.reload(agent_id)

    def on_peers_lost(self, nodes: list[str]) -> None:
        """Nodes stopped renewing their lease: adopt their calls and agents (recovery)."""
        async def adopt() -> None:
            await self._reload_agents()         # what the lost nodes last wrote
            await self.recover()
        self._spawn(adopt())

    def on_lease_lost(self) -> None:
        """Our lease ran out (Redis was out of reach): calls another node adopted meanwhile are
        theirs now; let them go rather than follow them twice."""
        async def let_go() -> None:
            uids = [uid for uid, call in self.calls.items() if uid == call.uniqueid]
            if not uids:
                return
            async with self.redis.pipeline(transaction=False) as pipe:
                for uid in uids:
                    pipe.hget(Keys.call(uid), "owner")
                owners = await pipe.execute()
            for uid, owner in zip(uids, owners):
                if owner and owner != self.node:
                    call = self.calls.pop(uid, None)
                    if call is not None and call.leg:
                        self.calls.pop(call.leg, None)
                    self.waiting.pop(uid, None)
                    log.warning("call %s: adopted by node %s while our lease had run out: let go", uid, owner)
            await self._reload_agents()
        self._spawn(let_go())

    def on_handoff(self, event: dict[str, Any]) -> None:
        """Another node's routing script reserved an agent for a call this node follows: ring it
        (or another node extended the wrap-up this node times)."""
        if event.get("type") == "wrapup":
            agent_id = str(event.get("agent", ""))
            try:
                until = float(event.get("until"))
            except (TypeError, ValueError):
                return
            if agent_id in self._wrapup_until:
                self._wrapup_until[agent_id] = max(self._wrapup_until[agent_id], until)
            return
        uid, agent_id = str(event.get("call", "")), str(event.get("agent", ""))
        try:
            at = float(event.get("at"))
        except (TypeError, ValueError):
            return
        agent = self.agents.agents.get(agent_id)
        if agent is None:
            self._spawn(self._reload_agent(agent_id))
            return
        agent.state, agent.state_since, agent.call, agent.reason, agent.node = (
            AgentState.RESERVED, at, uid, "", self.node)
        call = self.calls.get(uid)
        if call is None or call.state != "waiting":
            # It ended (or moved on) meanwhile: the agent is free again.
            log.info("call %s handed over for agent %s is gone: agent ready again", uid, agent_id)
            self._spawn(self._transition(agent_id, AgentState.READY))
            return
        self.handed_in += 1
        decision = Decision(uid, agent_id, "agent_free", rule=f"agent free (decided by node {event.get('by')})",
                            bucket=str(event.get("bucket", "")), agent_ready_since=str(event.get("since", "")),
                            at=at, owner=self.node)
        self._spawn(self._assigned(decision, decided_here=False))
