"""Who answers whom: routing decisions made and claimed atomically in Redis.

Indexes (names in :mod:`hotline.keys`), so that no decision scans every call and agent:

- waiting calls are grouped in *buckets*, one sorted set per queue and exact requirement
  ``queue:skills`` (``hotline:wq:general:mandarin:1``), scored by the routing score
  (priority first, then arrival); ``hotline:buckets:heads`` holds each bucket's best score;
  ``hotline:waiting`` keeps all of them for the CTI;
- ready agents are indexed per skill (``hotline:ready:skill:<skill>``, scored by level)
  beside ``hotline:ready`` (scored by the time they became ready: longest idle first).

Two decisions, each one Lua script, so that several ACD processes can route at once and
never give one call to two agents or two calls to one agent:

- **agent free** (:meth:`Router.offer`): which buckets an agent can serve (and from which
  wait on, for skill expansion) is worked out in Python from the shared bucket list, once per
  skill profile, and sent with the decision as the *plan* (encoded once); the script reads the
  heads of those buckets in one ``ZMSCORE``, takes the best (priority, then longest wait) and
  reserves both. If the bucket list changed since Python read it (``hotline:buckets:version``),
  the script refuses and Python re-reads it. When a wrap-up ends, the agent's READY transition
  is made by the same script (reserved at once, the agent never enters the ready indexes, and
  only the reservation is published: the history keeps both).
- **call arrived** (:meth:`Router.arrive`): the script collects ready agents that meet the
  requirement (from the smallest needed skill index, by ``ZCOUNT``), scores them by the queue's strategy
  (``longest_idle``, ``least_occupied`` today, ``best_skill``), ties going to the longest
  idle then the lowest id, and reserves the best; with no candidate the call joins its bucket.

Decisions go over a lean connection (:mod:`hotline.lane`: one EVALSHA, ~20 µs of Python
instead of redis-py's ~100 µs) when the client allows; else through redis-py.

Every decision returns its explanation (candidates and their scores) for the logs and
``GET /decisions``.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from redis.asyncio import Redis

from hotline.keys import Keys
from hotline.model import format_skills

from . import scripts
from .agents import busy_day
from hotline.lane import Packed, bulk, open_lane, pack
from .plans import Plans, parse_bucket
from .queues import QueueBook

__all__ = ["AgentChanged", "Decision", "RETURNING_QUEUE", "Router", "WaitingCall", "bucket_id", "parse_bucket",
           "preference_skill", "routing_score"]

log = logging.getLogger(__name__)

# Routing scores are whole milliseconds: Redis keeps a small sorted set (a queue bucket) as a
# list of strings and parses every score it passes while inserting; an integer score is kept as an
# integer and read without parsing (fractional seconds made strtod the routing scripts' top cost).
PRIORITY_WEIGHT = 4_000_000_000_000     # ms (~126 years): any higher priority beats any wait; 999 of
                                        # them plus the epoch in ms stay below 2**53 (exact in a double)

# The decisions, each one atomic script (acd/lua/offer.lua, arrive.lua; their arguments are
# documented there).
OFFER = scripts.load("offer", EVENTS=Keys.events, WEIGHT=PRIORITY_WEIGHT)
ARRIVE = scripts.load("arrive", EVENTS=Keys.events)
WITHDRAW = scripts.load("withdraw")

_NO_LIMIT = "1e300"


def routing_score(priority: int, queued_at: float) -> int:
    """Lower is served first: higher priority, then earlier arrival in the queue (to the
    millisecond; calls queued in the same millisecond go by their unique id).

    Priorities are 0..999 and queue times epoch seconds, so both can be read back from the score."""
    return -min(max(priority, 0), 999) * PRIORITY_WEIGHT + round(queued_at * 1000)


def bucket_id(queue: str, skills: dict[str, int]) -> str:
    return f"{queue}:{format_skills(skills) or '-'}"


class AgentChanged(Exception):
    """The agent's state in Redis is not the one its READY transition was checked against."""

    def __init__(self, agent: str, state: str, since: str) -> None:
        super().__init__(f"agent {agent} is {state} in Redis (since {since})")
        self.state, self.since = state, since


RETURNING_QUEUE = "returning"


def preference_skill(agent_id: str) -> str:
    """The requirement of a returning caller's own bucket: no agent has it, so no plan holds the
    bucket; only this agent's offers look at it, first (the OFFER script)."""
    return f"prefer-agent-{agent_id}"


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

    @property
    def bucket(self) -> str:
        return bucket_id(self.queue, self.skills)


@dataclass
class Decision:
    call: str
    agent: str
    kind: str                          # "agent_free" or "call_arrived"
    rule: str
    bucket: str = ""
    agent_ready_since: str = ""        # the agent's state_since before the reservation
    owner: str = ""                    # the ACD node following the call (it rings the agent)
    candidates: list[tuple[str, float]] = field(default_factory=list)
    candidate_count: int = 0
    at: float = 0.0

    def explain(self) -> dict[str, Any]:
        return {"at": self.at, "kind": self.kind, "call": self.call, "agent": self.agent, "bucket": self.bucket,
                "rule": self.rule, "candidate_count": self.candidate_count,
                "candidates": [{"agent": a, "score": s} for a, s in self.candidates]}


_RULES = {
    "longest_idle": "ready agents with the skills; the one idle longest (score: ready since, lowest wins)",
    "least_occupied": "ready agents with the skills; the least busy today (score: busy seconds today, "
                      "lowest wins; ties: idle longest)",
    "best_skill": "ready agents with the skills; the best levels (score: minus the sum of the required "
                  "levels, lowest wins; ties: idle longest)",
}


class Router:
    """Routing decisions; each one EVALSHA on a lean connection (:mod:`hotline.lane`) when the
    client allows one (else through redis-py). Call :meth:`aclose` when done with it."""

    def __init__(self, redis: Redis, queues: Optional[QueueBook] = None, *, clock=time.time,
                 lean: bool = True, node: str = "") -> None:
        self.redis = redis
        self.node = node
        self._queues = queues or QueueBook()
        self.clock = clock
        self._offer = redis.register_script(OFFER)
        self._arrive = redis.register_script(ARRIVE)
        self._withdraw = redis.register_script(WITHDRAW)
        self.lane = open_lane(redis) if lean else None
        self.plans = Plans(redis, lambda: self._queues)
        self._rules: dict[str, str] = {}              # bucket -> its part of the explanation
        self._arrivals: dict[str, tuple] = {}         # bucket -> what its arrivals send alike
        # "EVALSHA <sha> 6 <the first five keys>": the same at every decision, encoded once.
        self._offer_call = Packed("EVALSHA", self._offer.sha, 6, Keys.waiting, Keys.ready, Keys.buckets_version,
                                  Keys.bucket_heads, Keys.outbox)
        self._offer_prefixes = Packed(Keys.ready_skill(""), Keys.agent(""), Keys.bucket(""), Keys.call(""))
        self._node_args = self._node_arguments()
        # arguments of an offer: those above, busy key, agent, now, version, 5 of becoming ready, the plan's
        self._offer_count = self._offer_call.count + 4 + self._offer_prefixes.count + 5 + self._node_args.count
        self._busy_minute: Optional[int] = None
        self._busy = ""
        self.stale_retries = 0

    @property
    def queues(self) -> QueueBook:
        return self._queues

    @queues.setter
    def queues(self, queues: QueueBook) -> None:
        self.set_queues(queues)

    def _node_arguments(self) -> Packed:
        return Packed(self.node, Keys.acd_node(""), "1" if self._queues.returning.enabled else "0")

    def set_queues(self, queues: QueueBook) -> None:
        """New queue rules: the plans and per-bucket arguments made under the old ones go."""
        self._queues = queues
        self._node_args = self._node_arguments()
        self.plans.clear()
        self._rules.clear()
        self._arrivals.clear()

    async def aclose(self) -> None:
        """Close the lean connection (the redis-py client stays the caller's)."""
        if self.lane is not None:
            await self.lane.aclose()

    async def prepare(self, skill_sets) -> None:
        """Work out the plans of these agents now rather than on their first decision."""
        await self.plans.refresh()
        for skills in skill_sets:
            self.plans.args(skills)

    async def withdraw(self, pipe, uniqueid: str, bucket: str) -> None:
        """Add to ``pipe``: the call leaves its queue (it hung up)."""
        await self._withdraw(keys=[Keys.waiting, Keys.bucket(bucket), Keys.bucket_heads], args=[uniqueid, bucket],
                       client=pipe)

    async def waiting_count(self) -> int:
        """Calls waiting for an agent, across ACD processes."""
        return await self.redis.zcard(Keys.waiting)

    async def queue_length(self, queue: str) -> int:
        """Calls waiting in this queue (every bucket of it), across ACD processes."""
        buckets = [b for b in await self.redis.smembers(Keys.buckets) if b.split(":", 1)[0] == queue]
        if not buckets:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for bucket in buckets:
                pipe.zcard(Keys.bucket(bucket))
            return sum(await pipe.execute())

    def waits_that_matter(self, call: WaitingCall) -> list[float]:
        """Waits at which this call's requirement widens (when ready agents should look again)."""
        return [after for after, _ in self.queues.get(call.queue).stages(call.skills)[1:]]

    def _busy_key(self, now: float) -> str:
        # Local days change on a whole minute (UTC offsets are whole minutes): one look-up a minute.
        minute = int(now // 60)
        if minute != self._busy_minute:
            self._busy_minute, self._busy = minute, Keys.busy(busy_day(now))
        return self._busy

    async def offer(self, agent_id: str, skills: dict[str, int], now: Optional[float] = None,
                    becoming_ready: Optional[tuple[str, str, str, float]] = None) -> Optional[Decision]:
        """The agent is free: reserve the best waiting call it can serve, if any.

        ``becoming_ready`` (expected state, history row, event, busy seconds; from
        ``AgentDirectory.ready_step``) makes the agent ready in the same script, at ``now``; if Redis
        no longer holds the expected state, :class:`AgentChanged` is raised and nothing is written."""
        for _ in range(6):
            version = self.plans.version if self.plans.version is not None else await self.plans.refresh()
            now = self.clock() if now is None else now
            stamp = repr(now)
            busy_key = self._busy_key(now)
            if becoming_ready is not None:
                expected, row, event, busy = becoming_ready
                ready = [expected or "*", row, Keys.events, event, repr(busy)]
            else:
                ready = ["", "", "", "", "0"]
            plan = self.plans.args(skills)
            if self.lane is not None:
                # (Written out part by part: this runs on every decision.)
                command = b"".join((b"*%d\r\n" % (self._offer_count + plan.count), self._offer_call.data,
                                    bulk(busy_key), bulk(agent_id), bulk(stamp), bulk(version),
                                    self._offer_prefixes.data, *map(bulk, ready), self._node_args.data,
                                    plan.data))
                result = await self.lane.evalsha(self._offer.sha, OFFER, command)
            else:
                result = await self._offer(
                    keys=[Keys.waiting, Keys.ready, Keys.buckets_version, Keys.bucket_heads, Keys.outbox, busy_key],
                    args=[agent_id, stamp, version, Keys.ready_skill(""), Keys.agent(""), Keys.bucket(""),
                          Keys.call(""), *ready, *_unpack(self._node_args), *_unpack(plan)])
            if result[0] == -2:
                self.stale_retries += 1
                await self.plans.refresh()
                continue
            if result[0] == -3:
                raise AgentChanged(agent_id, result[1], result[2])
            if result[0] != 1:
                return None
            uid, bid, score, since, owner = result[1], result[2], float(result[3]), result[4], result[5]
            rule = self._rules.get(bid)
            if rule is None:
                queue, required = self.plans.buckets.get(bid) or parse_bucket(bid)
                rule = self._rules[bid] = (
                    "a returning caller waiting for this agent" if queue == RETURNING_QUEUE else
                    f"queue {queue}, needs {format_skills(required) or 'nothing'}")
            priority = math.ceil(-score / PRIORITY_WEIGHT) if score < 0 else 0
            wait = now - (score + priority * PRIORITY_WEIGHT) / 1000
            return Decision(uid, agent_id, "agent_free", bucket=bid, agent_ready_since=since, at=now, owner=owner,
                            rule=f"agent free: best waiting call it can serve (priority {priority}, waited "
                                 f"{wait:.1f}s, {rule})")
        log.warning("agent %s: bucket list kept changing; routing again later", agent_id)
        return None

    def _arrival(self, bucket: str, queue_name: str, skills: dict[str, int]):
        """What every arrival in this bucket sends alike, encoded once: (strategy, the command's
        start up to the call's key, keys after the busy key, script arguments after ``now``,
        [(wait, set)])."""
        entry = self._arrivals.get(bucket)
        if entry is None:
            queue = self.queues.get(queue_name)
            stages = []
            for after, stage in queue.stages(skills):
                flat: list[Any] = [len(stage)]
                for skill, level in stage.items():
                    flat += [skill, level]
                stages.append((after, Packed(*flat)))
            entry = self._arrivals[bucket] = (
                queue.strategy, Packed("EVALSHA", self._arrive.sha, 8, Keys.waiting, Keys.bucket(bucket), Keys.ready),
                Packed(Keys.buckets, Keys.buckets_version, Keys.bucket_heads),
                Packed(queue.strategy, Keys.ready_skill(""), Keys.agent(""), bucket), stages)
        return entry

    async def offer_many(self, offers) -> list[Optional[Decision]]:
        """Several agents free at once (``(agent, skills, now, becoming_ready)`` each, in the order
        freed): on the lean connection their scripts are written together, one round trip, and run
        in this order; each is still its own atomic decision."""
        if self.plans.version is None:
            await self.plans.refresh()
        return list(await asyncio.gather(*(self.offer(agent, skills, now, becoming_ready=step)
                                           for agent, skills, now, step in offers)))

    async def arrive(self, call: WaitingCall, now: Optional[float] = None) -> Optional[Decision]:
        """The call is waiting: give it the best ready agent by its queue's strategy, or queue it."""
        now = self.clock() if now is None else now
        bucket = call.bucket
        command = self._arrive_command(call, bucket, now)
        if self.lane is not None:
            result = await self.lane.evalsha(self._arrive.sha, ARRIVE, command)
        else:
            flat = _unpack(Packed.raw(command))[3:]
            result = await self._arrive(keys=flat[:8], args=flat[8:])
        return self._arrived(call, bucket, now, result)

    async def arrive_many(self, calls: list[WaitingCall], now: Optional[float] = None) -> list[Optional[Decision]]:
        """Several calls waiting at once (a burst of callers reaching the queue), in this order: on
        the lean connection their scripts are written together, one round trip; each is still its
        own atomic decision. If one failed, that error is raised after all were answered."""
        now = self.clock() if now is None else now
        if self.lane is None:
            return [await self.arrive(call, now) for call in calls]
        buckets = [call.bucket for call in calls]
        replies = await self.lane.evalsha_many(self._arrive.sha, ARRIVE, [
            self._arrive_command(call, bucket, now) for call, bucket in zip(calls, buckets)])
        failed = next((r for r in replies if isinstance(r, Exception)), None)
        if failed is not None:
            raise failed
        return [self._arrived(call, bucket, now, result) for call, bucket, result in zip(calls, buckets, replies)]

    def _arrive_command(self, call: WaitingCall, bucket: str, now: float) -> bytes:
        _, lead, keys_b, fixed, stages = self._arrival(bucket, call.queue, call.skills)
        wait = now - call.queued_at
        sets = [stage for after, stage in stages if after <= wait]
        return pack(lead, Keys.call(call.uniqueid), self._busy_key(now), keys_b, call.uniqueid, repr(call.score),
                    repr(now), fixed, len(sets), *sets)

    def _arrived(self, call: WaitingCall, bucket: str, now: float, result: list) -> Optional[Decision]:
        if result[0] != 1:
            return None
        count, since = int(result[1]), result[2]
        tail = result[3:]
        candidates = [(tail[i], float(tail[i + 1])) for i in range(0, len(tail), 2)]
        strategy = self._arrival(bucket, call.queue, call.skills)[0]
        return Decision(call.uniqueid, candidates[0][0], "call_arrived", rule=_RULES[strategy], bucket=bucket,
                        agent_ready_since=since, candidates=candidates, candidate_count=count, at=now)


def _unpack(packed: Packed) -> list[str]:
    """The arguments of a :class:`Packed` back as strings (for the redis-py path)."""
    out, data, i = [], packed.data, 0
    while i < len(data):
        end = data.index(b"\r\n", i)
        size = int(data[i + 1:end])
        out.append(data[end + 2:end + 2 + size].decode())
        i = end + 4 + size
    return out
