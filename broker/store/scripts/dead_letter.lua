-- KEYS[1] a partner's dead letters, KEYS[2] its inbox, KEYS[3] audit stream, KEYS[4] its quota
-- ARGV: entry id, partner, reason, report id, then the dead letter's field/value pairs
if redis.call('XACK', KEYS[2], 'tl', ARGV[1]) == 0 then return false end
release(KEYS[2], KEYS[4], ARGV[1])  -- set aside: no longer queued
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
local dead_id = redis.call('XADD', KEYS[1], '*', unpack(fields))
local data = cjson.encode({partner = ARGV[2], entry = ARGV[1], reason = ARGV[3],
                           dead_letter = dead_id})
redis.call('XADD', KEYS[3], '*', 'event', 'dead_lettered', 'report', ARGV[4], 'data', data)
return dead_id
