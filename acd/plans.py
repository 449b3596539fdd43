"""Which waiting-call buckets an agent may serve, worked out in Python from the shared bucket list
once per skill profile, and sent with each decision as the *plan* (acd/lua/offer.lua).

A bucket is one queue and exact requirement (acd/router.py ``bucket_id``). With skill expansion
(acd/queues.yaml) an agent may serve a bucket only from a wait on: the plan says from which.
Buckets are only ever added (``hotline:buckets``, versioned by ``hotline:buckets:version``), so a
plan is extended, never rebuilt, when the list grows; the offer script refuses a plan made from an
older version and the router re-reads the list.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional

from redis.asyncio import Redis

from hotline.keys import Keys
from hotline.lane import Packed
from hotline.model import parse_skills

from .queues import QueueBook

__all__ = ["Plans", "parse_bucket"]

log = logging.getLogger(__name__)


def parse_bucket(bid: str) -> tuple[str, dict[str, int]]:
    queue, skills = bid.split(":", 1)
    return queue, ({} if skills == "-" else parse_skills(skills))


class Plans:
    def __init__(self, redis: Redis, queues: Callable[[], QueueBook]) -> None:
        self.redis = redis
        self.queues = queues
        self.version: Optional[str] = None
        self.buckets: dict[str, tuple[str, dict[str, int]]] = {}
        self._plans: dict[tuple, list[tuple[str, float]]] = {}
        self._packed: dict[tuple, Packed] = {}        # plan as script arguments, per skill profile
        self._by_dict: dict[int, tuple[dict, Packed]] = {}   # the same, by the skills dict asking
        self._stages: dict[str, list] = {}

    def clear(self) -> None:
        """New queue rules: the plans made under the old ones go."""
        self._plans.clear()
        self._packed.clear()
        self._by_dict.clear()
        self._stages.clear()

    async def refresh(self) -> str:
        """Re-read the bucket list (another process may have added buckets); returns its version."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(Keys.buckets_version)
            pipe.smembers(Keys.buckets)
            version, members = await pipe.execute()
        added = {}
        for bid in members:
            if bid in self.buckets:
                continue
            try:
                added[bid] = parse_bucket(bid)
            except ValueError:
                log.warning("ignoring malformed bucket id %r", bid)
        self.buckets.update(added)
        self.version = version or "0"
        # Buckets are only ever added: extend the cached plans with the new ones.
        if added:
            self._packed.clear()
            self._by_dict.clear()
            for key, plan in self._plans.items():
                plan.extend(self._matches(dict(key), added))
        return self.version

    def plan(self, skills: dict[str, int]) -> list[tuple[str, float]]:
        """The buckets an agent with these skills may serve: (bucket, from which wait)."""
        key = tuple(sorted(skills.items()))
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._matches(skills, self.buckets)
        return plan

    def args(self, skills: dict[str, int]) -> Packed:
        """The plan as the offer script's arguments."""
        # The same dict (an agent's skills) asks again at every decision: found by identity first.
        seen = self._by_dict.get(id(skills))
        if seen is not None and seen[0] is skills:
            return seen[1]
        key = tuple(sorted(skills.items()))
        packed = self._packed.get(key)
        if packed is None:
            plan = self.plan(skills)
            expanding = [(i + 1, after) for i, (_, after) in enumerate(plan) if after > 0]
            flat: list[Any] = [len(plan), *(bid for bid, _ in plan), len(expanding)]
            for position, after in expanding:
                flat += [position, repr(after)]
            packed = self._packed[key] = Packed(*flat)
        if len(self._by_dict) > 100_000:
            self._by_dict.clear()
        self._by_dict[id(skills)] = (skills, packed)      # (holding the dict: its id is not reused)
        return packed

    def _matches(self, skills: dict[str, int], buckets) -> list[tuple[str, float]]:
        plan = []
        for bid, (queue, required) in buckets.items():
            stages = self._stages.get(bid)
            if stages is None:
                stages = self._stages[bid] = [
                    (after, tuple(stage.items())) for after, stage in self.queues().get(queue).stages(required)]
            for after, stage in stages:
                if all(skills.get(s, 0) >= level for s, level in stage):
                    plan.append((bid, after))
                    break
        return plan
