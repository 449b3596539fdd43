-- Agent free: reserve the best waiting call it can serve (acd/router.py Router.offer).
-- KEYS: waiting, ready, buckets version, bucket heads, outbox, busy-today hash
-- ARGV: 1 agent, 2 now, 3 version, 4-7 skill-index, agent, bucket and call prefixes,
--       8-12 when the agent becomes ready in the same step: the state Redis must still hold
--       ("state|since", "*" for no check; "" when the agent is ready already), history row, event channel, event,
--       busy seconds to add (the agent's READY transition and the decision, one round trip),
--       13 this node, 14 prefix of the nodes' channels (a call another node follows is handed to it),
--       15 "1" when returning callers are on (queues.yaml), then the plan (worked out by Router.plan from the
--       bucket list at that version): n, n bucket ids, m, then m pairs: position in the plan, seconds of waiting
--       from which the agent may serve that bucket (skill expansion; the wait of a bucket's first call decides
--       for it).
-- A returning caller waiting for this agent (bucket "returning:prefer-agent-<agent>:1", see
-- preference_skill) is taken before anything in the plan. (With returning callers off nobody
-- waits there: a caller left in such a bucket by a crash is queued again by recovery.)
-- Returns {1, call, bucket, score, agent's previous state_since, node following the call}, {0} for
-- no call, {-1} agent not ready, {-2} stale bucket list, {-3, state, since} agent changed meanwhile.
-- An agent that becomes ready and is reserved at once never enters the ready indexes.
--#include reserve
--#include head
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
