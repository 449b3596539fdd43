-- Call arrived: reserve the best ready agent by the queue's strategy, or queue the call
-- (acd/router.py Router.arrive).
-- KEYS: waiting, bucket, ready, call hash, busy-today hash, bucket set, buckets version, bucket heads
-- ARGV: uid, score, now, strategy, skill-index prefix, agent prefix, bucket id, number of
--       requirement sets, then per set: n, skill, level, ... (any set met is enough)
-- Returns {0, 0} queued, or {1, candidates, agent's previous state_since, then up to five pairs
-- agent, score, best first}.
--#include reserve
--#include head
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
