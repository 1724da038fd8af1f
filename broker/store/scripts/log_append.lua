-- Append each document not yet in the log, in order; return the log's size.
-- KEYS[1] the log list, KEYS[2] its index; ARGV pairs of (SHA-256 hex, document bytes)
local n = redis.call('LLEN', KEYS[1])
for i = 1, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 0 then
    n = redis.call('RPUSH', KEYS[1], ARGV[i + 1])
    redis.call('HSET', KEYS[2], ARGV[i], n - 1)
  end
end
return n
