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
from hotline.model import format_skills, parse_skills

from .agents import busy_day
from .cluster import node_channel
from hotline.lane import Packed, bulk, open_lane, pack
from .queues import QueueBook

__all__ = ["AgentChanged", "Decision", "RETURNING_QUEUE", "Router", "WaitingCall", "bucket_id", "parse_bucket",
           "preference_skill", "routing_score"]

log = logging.getLogger(__name__)

# Routing scores are whole milliseconds: Redis keeps a small sorted set (a queue bucket) as a
# list of strings and parses every score it passes while inserting; an integer score is kept as an
# integer and read without parsing (fractional seconds made strtod the routing scripts' top cost).
PRIORITY_WEIGHT = 4_000_000_000_000     # ms (~126 years): any higher priority beats any wait; 999 of
                                        # them plus the epoch in ms stay below 2**53 (exact in a double)

# Every agent change is published in the script that makes it, so that the other ACD nodes (and
# the desktops) hear of the changes in the order Redis made them. ("now" is a float's repr, kept
# as written: cjson would round it to 14 digits.)
_PUBLISH = """
local function published(agent, uid, now, owner)
  redis.call('PUBLISH', '@EVENTS@', '{"type": "agent", "agent": ' .. cjson.encode(agent) ..
    ', "state": "reserved", "reason": "", "call": ' .. cjson.encode(uid) .. ', "at": ' .. now ..
    ', "node": ' .. cjson.encode(owner) .. '}')
end
""".replace("@EVENTS@", Keys.events)

_RESERVE = _PUBLISH + """
local function reserve(agent, uid, now, ready_key, skp, agp, callkey)
  local akey = agp .. agent
  local since = redis.call('HGET', akey, 'state_since') or ''
  redis.call('ZREM', ready_key, agent)
  local raw = redis.call('HGET', akey, 'skills')
  if raw then
    local ok, skills = pcall(cjson.decode, raw)
    if ok and type(skills) == 'table' then
      for name, _ in pairs(skills) do redis.call('ZREM', skp .. name, agent) end
    end
  end
  -- the agent follows its call: the node following the call drives its states from here
  local owner = redis.call('HGET', callkey, 'owner') or ''
  redis.call('HSET', akey, 'state', 'reserved', 'state_since', now, 'call', uid, 'reason', '', 'node', owner)
  redis.call('HSET', callkey, 'state', 'ringing', 'agent', agent)
  published(agent, uid, now, owner)
  return since, owner
end
"""

_HEAD = """
local function set_head(heads, bkey, bid)
  local h = redis.call('ZRANGE', bkey, 0, 0, 'WITHSCORES')
  if h[1] then redis.call('ZADD', heads, h[2], bid) else redis.call('ZREM', heads, bid) end
end
"""

# KEYS: waiting, ready, buckets version, bucket heads, outbox, busy-today hash
# ARGV: 1 agent, 2 now, 3 version, 4-7 skill-index, agent, bucket and call prefixes,
#       8-12 when the agent becomes ready in the same step: the state Redis must still hold
#       ("state|since", "*" for no check; "" when the agent is ready already), history row, event channel, event,
#       busy seconds to add (the agent's READY transition and the decision, one round trip),
#       13 this node, 14 prefix of the nodes' channels (a call another node follows is handed to it),
#       15 "1" when returning callers are on (queues.yaml), then the plan (worked out by Router.plan from the bucket list at that version): n, n bucket
#       ids, m, then m pairs: position in the plan, seconds of waiting from which the agent may
#       serve that bucket (skill expansion; the wait of a bucket's first call decides for it).
# A returning caller waiting for this agent (bucket "returning:prefer-agent-<agent>:1", see
# preference_skill) is taken before anything in the plan. (With returning callers off nobody
# waits there: a caller left in such a bucket by a crash is queued again by recovery.)
# Returns {1, call, bucket, score, agent's previous state_since, node following the call}, {0} for
# no call, {-1} agent not ready, {-2} stale bucket list, {-3, state, since} agent changed meanwhile.
# An agent that becomes ready and is reserved at once never enters the ready indexes.
OFFER = _RESERVE + _HEAD + """
local v = redis.call('GET', KEYS[3]) or '0'
if v ~= ARGV[3] then return {-2} end
local P = 16
local agent = ARGV[1]
local becoming = ARGV[8] ~= ''
local akey = ARGV[5] .. agent
if becoming then
  local cur = redis.call('HMGET', akey, 'state', 'state_since')
  if cur[1] and ARGV[8] ~= '*' then
    local st, at = string.match(ARGV[8], '^([^|]*)|(.*)$')
    if cur[1] ~= st or tonumber(cur[2]) ~= tonumber(at) then return {-3, cur[1], cur[2] or '0'} end
  end
  redis.call('RPUSH', KEYS[5], ARGV[9])
  if tonumber(ARGV[12]) > 0 then
    redis.call('HINCRBYFLOAT', KEYS[6], agent, ARGV[12])
    redis.call('EXPIRE', KEYS[6], 259200)
  end
elseif not redis.call('ZSCORE', KEYS[2], agent) then return {-1} end
local now = tonumber(ARGV[2])
local n = tonumber(ARGV[P])
local after = {}
local m = tonumber(ARGV[P + n + 1] or '0')
for k = 1, m do
  local at = P + n + 2 * k
  after[tonumber(ARGV[at])] = tonumber(ARGV[at + 1])
end
local best, bestscore, bestraw, ties
local bid, uid
-- A returning caller waiting for this very agent comes first: its own bucket, which no plan holds.
local own = 'returning:prefer-agent-' .. agent .. ':1'
local mine = {}
if ARGV[15] == '1' then mine = redis.call('ZRANGE', ARGV[6] .. own, 0, 0, 'WITHSCORES') end
if mine[1] then
  bid, uid, bestraw = own, mine[1], mine[2]
else
  local from = 1
  while from <= n do
    local to = math.min(n, from + 999)
    local scores = redis.call('ZMSCORE', KEYS[4], unpack(ARGV, P + from, P + to))
    for j = from, to do
      local raw = scores[j - from + 1]
      if raw then
        local sc = tonumber(raw)
        local ok = true
        if after[j] then
          local p = 0
          if sc < 0 then p = math.ceil(-sc / @WEIGHT@) end
          ok = now - (sc + p * @WEIGHT@) / 1000 >= after[j]
        end
        if ok then
          if best == nil or sc < bestscore then best, bestscore, bestraw, ties = j, sc, raw, nil
          elseif sc == bestscore then ties = ties or {best}; ties[#ties + 1] = j end
        end
      end
    end
    from = to + 1
  end
  if not best then
    if becoming then
      -- (Ready is announced only when the agent stays ready: reserved at once, the reservation
      -- is the news. Every node and desktop hears every agent change; the history has both.)
      redis.call('PUBLISH', ARGV[10], ARGV[11])
      redis.call('HSET', akey, 'state', 'ready', 'state_since', ARGV[2], 'reason', '', 'call', '', 'node', ARGV[13])
      redis.call('ZADD', KEYS[2], ARGV[2], agent)
      local ok, skills = pcall(cjson.decode, redis.call('HGET', akey, 'skills') or '{}')
      if ok and type(skills) == 'table' then
        for name, level in pairs(skills) do redis.call('ZADD', ARGV[4] .. name, level, agent) end
      end
    end
    return {0}
  end
  bid = ARGV[P + best]
  uid = redis.call('ZRANGE', ARGV[6] .. bid, 0, 0)[1]
  if ties then
    for _, j in ipairs(ties) do
      local other = redis.call('ZRANGE', ARGV[6] .. ARGV[P + j], 0, 0)[1]
      if other and other < uid then uid, bid = other, ARGV[P + j] end
    end
  end
end
redis.call('ZREM', ARGV[6] .. bid, uid)
redis.call('ZREM', KEYS[1], uid)
set_head(KEYS[4], ARGV[6] .. bid, bid)
local since, owner
if becoming then
  -- ready and reserved in one step: out of the ready indexes if it was still in them (ready again)
  if redis.call('ZREM', KEYS[2], agent) == 1 then
    local ok, skills = pcall(cjson.decode, redis.call('HGET', akey, 'skills') or '{}')
    if ok and type(skills) == 'table' then
      for name, _ in pairs(skills) do redis.call('ZREM', ARGV[4] .. name, agent) end
    end
  end
  owner = redis.call('HGET', ARGV[7] .. uid, 'owner') or ''
  redis.call('HSET', akey, 'state', 'reserved', 'state_since', ARGV[2], 'call', uid, 'reason', '', 'node', owner)
  redis.call('HSET', ARGV[7] .. uid, 'state', 'ringing', 'agent', agent)
  published(agent, uid, ARGV[2], owner)
  since = ARGV[2]
else
  since, owner = reserve(agent, uid, ARGV[2], KEYS[2], ARGV[4], ARGV[5], ARGV[7] .. uid)
end
if owner ~= '' and owner ~= ARGV[13] then
  -- another node follows this call: it rings the agent (it will see the call's events)
  redis.call('PUBLISH', ARGV[14] .. owner, cjson.encode({call = uid, agent = agent, since = since, bucket = bid,
    score = bestraw, at = ARGV[2], by = ARGV[13]}))
end
return {1, uid, bid, bestraw, since, owner}
""".replace("@WEIGHT@", str(PRIORITY_WEIGHT))

# KEYS: waiting, bucket, bucket heads; ARGV: uid, bucket id (the caller hung up)
WITHDRAW = _HEAD + """
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('ZREM', KEYS[2], ARGV[1]) == 1 then set_head(KEYS[3], KEYS[2], ARGV[2]) end
return 1
"""

# KEYS: waiting, bucket, ready, call hash, busy-today hash, bucket set, buckets version, bucket heads
# ARGV: uid, score, now, strategy, skill-index prefix, agent prefix, bucket id, number of
#       requirement sets, then per set: n, skill, level, ... (any set met is enough)
ARRIVE = _RESERVE + _HEAD + """
local uid, strategy, skp, agp = ARGV[1], ARGV[4], ARGV[5], ARGV[6]
local nsets = tonumber(ARGV[8])
local i = 9
local seen = {}
local ncand = 0
local top = {}          -- best five: {agent, key, idle}
local function better(a, b)
  if a[2] ~= b[2] then return a[2] < b[2] end
  if a[3] ~= b[3] then return a[3] < b[3] end
  return a[1] < b[1]
end
for s = 1, nsets do
  local n = tonumber(ARGV[i]); i = i + 1
  local req = {}
  -- (the level also as given: a Lua number passed to Redis is formatted with sprintf)
  for k = 1, n do req[k] = {ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 1]}; i = i + 2 end
  local agents
  if n == 0 then agents = redis.call('ZRANGE', KEYS[3], 0, -1)
  else
    -- scan the smallest index: the needed skill fewest ready agents hold at the level
    local pick, least = 1, nil
    if n > 1 then
      for k = 1, n do
        local c = redis.call('ZCOUNT', skp .. req[k][1], req[k][3], '+inf')
        if least == nil or c < least then least, pick = c, k end
      end
    end
    -- (while callers queue, nobody ready has the skill: no range to read)
    if least == 0 then agents = {}
    else agents = redis.call('ZRANGEBYSCORE', skp .. req[pick][1], req[pick][3], '+inf') end
  end
  for _, a in ipairs(agents) do
    if not seen[a] then
      local ok, total = true, 0
      for k = 1, n do
        local lvl = redis.call('ZSCORE', skp .. req[k][1], a)
        if not lvl or tonumber(lvl) < req[k][2] then ok = false; break end
        total = total + tonumber(lvl)
      end
      local idle = ok and redis.call('ZSCORE', KEYS[3], a)
      if idle then
        seen[a] = true
        idle = tonumber(idle)
        local key = idle
        if strategy == 'least_occupied' then key = tonumber(redis.call('HGET', KEYS[5], a) or '0')
        elseif strategy == 'best_skill' then key = -total end
        ncand = ncand + 1
        local entry = {a, key, idle}
        local pos = #top + 1
        while pos > 1 and better(entry, top[pos - 1]) do pos = pos - 1 end
        if pos <= 5 then
          table.insert(top, pos, entry)
          if #top > 5 then table.remove(top) end
        end
      end
    end
  end
end
if ncand == 0 then
  redis.call('ZADD', KEYS[1], ARGV[2], uid)
  redis.call('ZADD', KEYS[2], ARGV[2], uid)
  redis.call('ZADD', KEYS[8], 'LT', ARGV[2], ARGV[7])      -- the bucket's head, if it comes first
  redis.call('HSET', KEYS[4], 'state', 'waiting', 'agent', '')
  if redis.call('SADD', KEYS[6], ARGV[7]) == 1 then redis.call('INCR', KEYS[7]) end
  return {0, 0}
end
redis.call('ZREM', KEYS[1], uid)
if redis.call('ZREM', KEYS[2], uid) == 1 then set_head(KEYS[8], KEYS[2], ARGV[7]) end
local since = reserve(top[1][1], uid, ARGV[3], KEYS[3], skp, agp, KEYS[4])
local out = {1, ncand, since}
for _, e in ipairs(top) do
  table.insert(out, e[1]); table.insert(out, tostring(e[2]))
end
return out
"""

_NO_LIMIT = "1e300"


def routing_score(priority: int, queued_at: float) -> int:
    """Lower is served first: higher priority, then earlier arrival in the queue (to the
    millisecond; calls queued in the same millisecond go by their unique id).

    Priorities are 0..999 and queue times epoch seconds, so both can be read back from the score."""
    return -min(max(priority, 0), 999) * PRIORITY_WEIGHT + round(queued_at * 1000)


def bucket_id(queue: str, skills: dict[str, int]) -> str:
    return f"{queue}:{format_skills(skills) or '-'}"


def parse_bucket(bid: str) -> tuple[str, dict[str, int]]:
    queue, skills = bid.split(":", 1)
    return queue, ({} if skills == "-" else parse_skills(skills))


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
        self.version: Optional[str] = None
        self.buckets: dict[str, tuple[str, dict[str, int]]] = {}
        self._plans: dict[tuple, list[tuple[str, float]]] = {}
        self._packed: dict[tuple, Packed] = {}        # plan as script arguments, per skill profile
        self._by_dict: dict[int, tuple[dict, Packed]] = {}   # the same, by the skills dict asking
        self._stages: dict[tuple, list] = {}
        self._rules: dict[str, str] = {}              # bucket -> its part of the explanation
        self._arrivals: dict[str, tuple] = {}         # bucket -> what its arrivals send alike
        # "EVALSHA <sha> 6 <the first five keys>": the same at every decision, encoded once.
        self._offer_call = Packed("EVALSHA", self._offer.sha, 6, Keys.waiting, Keys.ready, Keys.buckets_version,
                                  Keys.bucket_heads, Keys.outbox)
        self._offer_prefixes = Packed(Keys.ready_skill(""), Keys.agent(""), Keys.bucket(""), Keys.call(""))
        self._node_args = self._node_arguments()
        # arguments of an offer: those above, busy key, agent, now, version, 5 of becoming ready, the plan's
        self._offer_count = self._offer_call.count + 4 + self._offer_prefixes.count + 5 + self._node_args.count
        self._busy_minute, self._busy = None, ""
        self.stale_retries = 0

    @property
    def queues(self) -> QueueBook:
        return self._queues

    @queues.setter
    def queues(self, queues: QueueBook) -> None:
        self.set_queues(queues)

    def _node_arguments(self) -> Packed:
        return Packed(self.node, node_channel(""), "1" if self._queues.returning.enabled else "0")

    def set_queues(self, queues: QueueBook) -> None:
        """New queue rules: the plans and per-bucket arguments made under the old ones go."""
        self._queues = queues
        self._node_args = self._node_arguments()
        self._plans.clear()
        self._packed.clear()
        self._by_dict.clear()
        self._stages.clear()
        self._rules.clear()
        self._arrivals.clear()

    async def aclose(self) -> None:
        """Close the lean connection (the redis-py client stays the caller's)."""
        if self.lane is not None:
            await self.lane.aclose()

    async def refresh(self) -> None:
        """Re-read the bucket list (another process may have added buckets)."""
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

    def plan(self, skills: dict[str, int]) -> list[tuple[str, float]]:
        """The buckets an agent with these skills may serve: (bucket, from which wait)."""
        key = tuple(sorted(skills.items()))
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._matches(skills, self.buckets)
        return plan

    def _plan_args(self, skills: dict[str, int]) -> Packed:
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
                    (after, tuple(stage.items())) for after, stage in self.queues.get(queue).stages(required)]
            for after, stage in stages:
                if all(skills.get(s, 0) >= level for s, level in stage):
                    plan.append((bid, after))
                    break
        return plan

    async def prepare(self, skill_sets) -> None:
        """Work out the plans of these agents now rather than on their first decision."""
        await self.refresh()
        for skills in skill_sets:
            self._plan_args(skills)

    async def withdraw(self, pipe, uniqueid: str, bucket: str) -> None:
        """Add to ``pipe``: the call leaves its queue (it hung up)."""
        await self._withdraw(keys=[Keys.waiting, Keys.bucket(bucket), Keys.bucket_heads], args=[uniqueid, bucket],
                       client=pipe)

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
                    becoming_ready: Optional[tuple[str, str, float]] = None) -> Optional[Decision]:
        """The agent is free: reserve the best waiting call it can serve, if any.

        ``becoming_ready`` (expected state, history row, event, busy seconds; from
        ``AgentDirectory.ready_step``) makes the agent ready in the same script, at ``now``; if Redis
        no longer holds the expected state, :class:`AgentChanged` is raised and nothing is written."""
        for _ in range(6):
            if self.version is None:
                await self.refresh()
            now = self.clock() if now is None else now
            stamp = repr(now)
            busy_key = self._busy_key(now)
            if becoming_ready is not None:
                expected, row, event, busy = becoming_ready
                ready = [expected or "*", row, Keys.events, event, repr(busy)]
            else:
                ready = ["", "", "", "", "0"]
            plan = self._plan_args(skills)
            if self.lane is not None:
                # (Written out part by part: this runs on every decision.)
                command = b"".join((b"*%d\r\n" % (self._offer_count + plan.count), self._offer_call.data,
                                    bulk(busy_key), bulk(agent_id), bulk(stamp), bulk(self.version),
                                    self._offer_prefixes.data, *map(bulk, ready), self._node_args.data,
                                    plan.data))
                result = await self.lane.evalsha(self._offer.sha, OFFER, command)
            else:
                result = await self._offer(
                    keys=[Keys.waiting, Keys.ready, Keys.buckets_version, Keys.bucket_heads, Keys.outbox, busy_key],
                    args=[agent_id, stamp, self.version, Keys.ready_skill(""), Keys.agent(""), Keys.bucket(""),
                          Keys.call(""), *ready, *_unpack(self._node_args), *_unpack(plan)])
            if result[0] == -2:
                self.stale_retries += 1
                await self.refresh()
                continue
            if result[0] == -3:
                raise AgentChanged(agent_id, result[1], result[2])
            if result[0] != 1:
                return None
            uid, bid, score, since, owner = result[1], result[2], float(result[3]), result[4], result[5]
            rule = self._rules.get(bid)
            if rule is None:
                queue, required = self.buckets.get(bid) or parse_bucket(bid)
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
        if self.version is None:
            await self.refresh()
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
