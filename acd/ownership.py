"""Which calls and agents this ACD node acts on, beside the other nodes (acd/cluster.py).

Alone, a node follows every call and drives every agent. With peers, it follows the calls whose
Linkedid hashes to it, and drives the agents whose call it follows (or whose node is gone and
whose id hashes to it).
"""
from __future__ import annotations

from typing import Optional

from .agents import Agent
from .cluster import Cluster

__all__ = ["Ownership"]


class Ownership:
    def __init__(self, node: str, cluster: Optional[Cluster] = None) -> None:
        self.node = node
        self.cluster = cluster

    def owns(self, key: str) -> bool:
        """Whether this node should follow (or act on) what happens under this Linkedid (or key)."""
        return self.cluster is None or self.cluster.owns(key)

    def alive(self, node: str) -> bool:
        """A node that still follows its calls (this one included)."""
        return node == self.node or (self.cluster is not None and self.cluster.alive(node))

    def ours(self, node: str) -> bool:
        """Ours to act on: written by this node, by nobody ("": before nodes had names), or by a
        node that is gone."""
        return node in ("", self.node) or not self.alive(node)

    def follows(self, agent: Agent) -> bool:
        """Whether this node drives the agent's call-bound states (on call, wrap-up, repairs): it
        follows the agent's call, or the node that did is gone and the agent hashes to this one."""
        if agent.node in ("", self.node):
            return True
        return not self.alive(agent.node) and self.owns(f"agent:{agent.id}")

    @property
    def watching(self) -> bool:
        """Other nodes are live: this one witnesses the callers they follow."""
        return self.cluster is not None and len(self.cluster.live) >= 2
