-- A transfer noted by transfer.lua that Asterisk then refused: its entry leaves the call hash (it
-- did not happen, and must not count against the 12345 rule), and the call is the transferer's
-- conversation again (a reserved target agent is freed by the caller).
-- KEYS: call hash; ARGV: the entry's id, the transferer. Returns 1 when removed.
local raw = redis.call('HGET', KEYS[1], 'transfers')
if not raw or raw == '' then return 0 end
local ok, list = pcall(cjson.decode, raw)
if not ok or type(list) ~= 'table' then return 0 end
local kept, removed = {}, 0
for _, entry in ipairs(list) do
  if type(entry) == 'table' and entry['id'] == ARGV[1] then removed = 1 else kept[#kept + 1] = entry end
end
if removed == 0 then return 0 end
if #kept == 0 then redis.call('HDEL', KEYS[1], 'transfers')
else redis.call('HSET', KEYS[1], 'transfers', cjson.encode(kept)) end
redis.call('HSET', KEYS[1], 'agent', ARGV[2], 'state', 'talking')
return 1
