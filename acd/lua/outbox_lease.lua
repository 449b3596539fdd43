-- The outbox writer's lease (acd/outbox.py). Renewed only by its holder (never another's: a dead
-- holder's lease must run out).
-- KEYS: lease; ARGV: this writer, lease ms. Returns 1 when this writer holds the lease.
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]); return 1 end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
