-- Keep a bucket's entry in the bucket heads (its first call's score), or drop it when empty.
local function set_head(heads, bkey, bid)
  local h = redis.call('ZRANGE', bkey, 0, 0, 'WITHSCORES')
  if h[1] then redis.call('ZADD', heads, h[2], bid) else redis.call('ZREM', heads, bid) end
end
