-- The first node to write a new call's hash follows it (two nodes' views of the membership may
-- differ for a moment); a node adopting a dead node's call takes it over only from that node.
-- KEYS: call hash, live calls set; ARGV: this node, the node it must still be ("" for a new call),
-- uniqueid, then field/value pairs. Returns 1 when this node follows the call, 0 otherwise.
local owner = redis.call('HGET', KEYS[1], 'owner') or ''
if owner ~= '' and owner ~= ARGV[1] and owner ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('HSET', KEYS[1], 'owner', ARGV[1])
redis.call('SADD', KEYS[2], ARGV[3])
return 1
