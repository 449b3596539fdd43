"""Who answers whom: the choice of agent for a waiting call, and its atomic claim in Redis.

The choice is made in Python from the in-memory view (priority first, then the longest
wait; among agents that have every required skill, the longest idle). The claim is one Lua
script that succeeds only if the call is still waiting and the agent still ready, so
several ACD processes can never give one call to two agents or two calls to one agent.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Optional

from redis.asyncio import Redis

from hotline.keys import Keys
from hotline.model import AgentState

from .agents import Agent

__all__ = ["Router", "WaitingCall", "routing_score"]

log = logging.getLogger(__name__)

# KEYS: waiting zset, ready zset, call hash, agent hash
# ARGV: call uniqueid, agent id, now
CLAIM = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
if not redis.call('ZSCORE', KEYS[2], ARGV[2]) then return -1 end
if redis.call('HGET', KEYS[4], 'state') ~= 'ready' then return -1 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[3], 'state', 'ringing', 'agent', ARGV[2])
redis.call('HSET', KEYS[4], 'state', 'reserved', 'state_since', ARGV[3], 'call', ARGV[1], 'reason', '')
return 1
"""


def routing_score(priority: int, queued_at: float) -> float:
    """Lower is served first: higher priority, then earlier arrival in the queue."""
    return -priority * 1e11 + queued_at


@dataclass
class WaitingCall:
    uniqueid: str
    channel: str
    queue: str
    skills: dict[str, int]
    priority: int
    queued_at: float

    @property
    def score(self) -> float:
        return routing_score(self.priority, self.queued_at)


@dataclass
class Decision:
    call: WaitingCall
    agent: Agent
    candidates: list[str]


class Router:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._claim = redis.register_script(CLAIM)

    @staticmethod
    def choose(waiting: Iterable[WaitingCall], ready: list[Agent]) -> list[Decision]:
        """Pair waiting calls (best first) with ready agents (longest idle first)."""
        decisions = []
        free = list(ready)
        for call in sorted(waiting, key=lambda c: c.score):
            if not free:
                break
            candidates = [a for a in free if a.can_serve(call.skills)]
            if not candidates:
                continue
            agent = candidates[0]
            free.remove(agent)
            decisions.append(Decision(call, agent, [a.id for a in candidates]))
        return decisions

    async def claim(self, call: WaitingCall, agent: Agent, now: float) -> bool:
        result = await self._claim(
            keys=[Keys.waiting, Keys.ready, Keys.call(call.uniqueid), Keys.agent(agent.id)],
            args=[call.uniqueid, agent.id, repr(now)])
        if result == 1:
            agent.state, agent.state_since, agent.call, agent.reason = AgentState.RESERVED, now, call.uniqueid, ""
            return True
        return False
