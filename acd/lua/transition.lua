-- One agent transition (acd/agents.py), applied only if Redis still holds the state the change
-- was checked against (another ACD node, or a concurrent request, may have changed it meanwhile).
-- KEYS: agent hash, ready, outbox, busy-today hash
-- ARGV: expected "state|since" ("" to skip the check), new state, since, reason, call, node,
--       skill-index prefix, history row, events channel, event, busy seconds, agent id
-- Returns {1}, or {0, state, since} when Redis holds another state.
local cur = redis.call('HMGET', KEYS[1], 'state', 'state_since')
if ARGV[1] ~= '' and cur[1] and (cur[1] .. '|' .. (cur[2] or '')) ~= ARGV[1] then
  local st, since = string.match(ARGV[1], '^([^|]*)|(.*)$')
  if cur[1] ~= st or tonumber(cur[2]) ~= tonumber(since) then return {0, cur[1], cur[2] or '0'} end
end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'state_since', ARGV[3], 'reason', ARGV[4], 'call', ARGV[5],
           'node', ARGV[6])
local ok, skills = pcall(cjson.decode, redis.call('HGET', KEYS[1], 'skills') or '{}')
if not ok or type(skills) ~= 'table' then skills = {} end
local agent = ARGV[12]
if ARGV[2] == 'ready' then
  redis.call('ZADD', KEYS[2], ARGV[3], agent)
  for name, level in pairs(skills) do redis.call('ZADD', ARGV[7] .. name, level, agent) end
else
  redis.call('ZREM', KEYS[2], agent)
  for name, _ in pairs(skills) do redis.call('ZREM', ARGV[7] .. name, agent) end
end
if tonumber(ARGV[11]) > 0 then
  redis.call('HINCRBYFLOAT', KEYS[4], agent, ARGV[11])
  redis.call('EXPIRE', KEYS[4], 259200)
end
redis.call('RPUSH', KEYS[3], ARGV[8])
redis.call('PUBLISH', ARGV[9], ARGV[10])
return {1}
