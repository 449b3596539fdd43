-- The call leaves its queue (it hung up, overflowed, or moved to another bucket).
-- KEYS: waiting, bucket, bucket heads; ARGV: uid, bucket id
--#include head
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('ZREM', KEYS[2], ARGV[1]) == 1 then set_head(KEYS[3], KEYS[2], ARGV[2]) end
return 1
