-- KEYS[1] the partner's inbox, KEYS[2] audit stream, KEYS[3] its quota hash;
-- ARGV[1] partner id, ARGV[2..] entry ids
-- Acknowledging a report is the partner saying it has it: that goes in the audit trail.
local acked = 0
for i = 2, #ARGV do
  local entry = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
  if redis.call('XACK', KEYS[1], 'tl', ARGV[i]) == 1 then
    acked = acked + 1
    local fields = {}
    if #entry == 1 then
      for j = 1, #entry[1][2], 2 do fields[entry[1][2][j]] = entry[1][2][j + 1] end
    end
    if fields['bytes'] then  -- no longer queued: off the partner's inbox quota
      redis.call('HINCRBY', KEYS[3], 'queued_reports', -1)
      redis.call('HINCRBY', KEYS[3], 'queued_bytes', -tonumber(fields['bytes']))
    end
    if fields['report'] and not fields['kind'] then
      redis.call('XADD', KEYS[2], '*', 'event', 'received', 'report', fields['report'],
                 'data', '{"partner":"' .. ARGV[1] .. '"}')
    end
  end
end
return acked
