-- Append a chunk of audit entries to their reports' lists, once.
-- KEYS[1] the index's cursor, KEYS[2..] one list per report; ARGV[1] the cursor the chunk was
--   read after, ARGV[2] the chunk's last entry id, then per list: how many ids, the ids
-- When another indexer moved the cursor first, it indexed this chunk: nothing is written.
if (redis.call('GET', KEYS[1]) or '0-0') ~= ARGV[1] then return 0 end
local a = 3
for k = 2, #KEYS do
  local n = tonumber(ARGV[a])
  redis.call('RPUSH', KEYS[k], unpack(ARGV, a + 1, a + n))
  a = a + n + 1
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
