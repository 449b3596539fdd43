-- Rows written to PostgreSQL leave the outbox, only while this writer still holds the lease.
-- KEYS: lease, outbox; ARGV: this writer, rows written
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('LTRIM', KEYS[2], tonumber(ARGV[2]), -1)
return 1
