-- KEYS[1] a partner's inbox, KEYS[2] audit stream, KEYS[3] its quota; ARGV entry id, report id,
-- audit data. The entry will never be deliverable under the policy that refused it.
if redis.call('XACK', KEYS[1], 'tl', ARGV[1]) == 1 then release(KEYS[1], KEYS[3], ARGV[1]) end
redis.call('XADD', KEYS[2], '*', 'event', 'withheld', 'report', ARGV[2], 'data', ARGV[3])
