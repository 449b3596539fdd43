-- A supervisor allows one more transfer of a live call (the 12345 rule: at most one otherwise).
-- KEYS: call hash. Returns the allowances now, or -1 when the call is not live.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('HINCRBY', KEYS[1], 'transfer_allowance', 1)
