-- A transfer from the desktop, checked and noted in one step (acd/transfers.py has the rules): the
-- call is still the transferer's conversation, the 12345 rule "at most one transfer" (unless a
-- supervisor allowed more) holds, and a target agent is still ready (then reserved for the call).
-- Two concurrent transfers of one call cannot both pass: Redis runs one script at a time.
-- KEYS: call hash, target agent hash (the call hash again when no agent), ready
-- ARGV: transferer agent, entry (JSON), limit, target agent ("" for none), now, skill-index prefix,
--       agent-hash prefix, uniqueid
-- Returns {1, owner} or {0, why, detail}: why is gone, not_talking, once or agent.
--#include reserve
local call = redis.call('HMGET', KEYS[1], 'agent', 'state', 'transfers', 'transfer_allowance', 'owner')
if not call[2] then return {0, 'gone', ''} end
if call[1] ~= ARGV[1] or call[2] ~= 'talking' then return {0, 'not_talking', call[1] or ''} end
local done = {}
if call[3] and call[3] ~= '' then
  local ok, list = pcall(cjson.decode, call[3])
  if ok and type(list) == 'table' then done = list end
end
if #done >= tonumber(ARGV[3]) + tonumber(call[4] or '0') then return {0, 'once', tostring(#done)} end
if ARGV[4] ~= '' then
  local state = redis.call('HGET', KEYS[2], 'state')
  if state ~= 'ready' then return {0, 'agent', state or 'unknown'} end
  reserve(ARGV[4], ARGV[8], ARGV[5], KEYS[3], ARGV[6], ARGV[7], KEYS[1])
end
-- (appended as text: cjson would round the entry's times and re-encode an empty list as {})
local entries = '[' .. ARGV[2] .. ']'
if #done > 0 then entries = string.sub(call[3], 1, -2) .. ',' .. ARGV[2] .. ']' end
redis.call('HSET', KEYS[1], 'transfers', entries)
return {1, call[5] or ''}
