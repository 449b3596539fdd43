-- Reserve a ready agent for a call: out of the ready indexes, reserved, the call ringing; the agent
-- follows its call (its node becomes the call's owner). Returns the agent's previous state_since
-- and the call's owner.
--#include publish
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
